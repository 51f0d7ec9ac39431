//! One reconcile: read the watch caches, run the checks, plan the remediations, bring the
//! cluster to the plan, and write status and Events only when something changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use k8s_openapi::jiff::Timestamp;

use crate::api::k8s::Time;
use crate::api::{MeshReadiness, MeshReadinessStatus, RemediationMode, keys};
use crate::checks::{self, CheckRequest, Finding};
use crate::operator::context::Context;
use crate::operator::error::{Error, Result};
use crate::operator::status::{self, Outcome, reasons};
use crate::operator::{events, remediate};
use crate::remediation::{self, MeshReadinessKey, MeshReadinessRef, PlanRequest, Remediation};
use crate::snapshot::{IstioObject, Meta, ObjectRef, scope};

/// How soon to look again while Istio's CRDs are missing: they are picked up without a restart.
const ISTIO_RECHECK: Duration = Duration::from_secs(10);
/// After a failed reconcile.
const ERROR_REQUEUE: Duration = Duration::from_secs(30);

/// What the reconcile concluded, before any write.
enum Evaluation {
    Checked {
        findings: Vec<Finding>,
        namespaces: i32,
        /// What the planner calls for, before anything is written.
        plan: Vec<Remediation>,
        /// meshready's objects of this MeshReadiness that the plan no longer wants.
        stale: Vec<ObjectRef>,
    },
    NotChecked {
        reason: &'static str,
        message: String,
    },
}

fn not_checked(reason: &'static str, message: String) -> Result<Evaluation> {
    Ok(Evaluation::NotChecked { reason, message })
}

async fn evaluate(
    mr: &MeshReadiness,
    namespace: &str,
    ctx: &Context,
    now: Timestamp,
) -> Result<Evaluation> {
    let spec = &mr.spec;
    if spec.suspend {
        return not_checked(
            reasons::SUSPENDED,
            "spec.suspend is true: not checking; the findings shown are the last ones, and \
             remediations stay as they are."
                .to_string(),
        );
    }
    if let Some(selector) = &spec.namespace_selector {
        if namespace != ctx.operator_namespace {
            return not_checked(
                reasons::SELECTOR_NOT_ALLOWED,
                format!(
                    "namespaceSelector is honoured only in the operator's namespace {}; remove it to check {namespace} alone, or move this object there.",
                    ctx.operator_namespace
                ),
            );
        }
        if let Some(problem) = scope::selector_problem(selector) {
            return not_checked(reasons::INVALID_SPEC, problem);
        }
    }
    if !ctx.stores.istio.detected() {
        return not_checked(
            reasons::ISTIO_NOT_DETECTED,
            "Istio's CRDs (security.istio.io, networking.istio.io) are not served in this cluster: install Istio; checking starts on its own.".to_string(),
        );
    }
    let built = ctx
        .snapshots
        .current(&ctx.stores, &ctx.mesh_readiness)
        .await?;
    let snapshot = built.snapshot();
    let info = IstioObject {
        meta: Meta {
            namespace: namespace.to_string(),
            name: mr.name_any(),
            ..Meta::default()
        },
        spec: spec.clone(),
    };
    let namespaces = scope::covered(snapshot, &info, &ctx.operator_namespace);
    let request = CheckRequest {
        app_idle_timeouts: spec
            .app_idle_timeouts
            .iter()
            .flat_map(|t| {
                namespaces
                    .iter()
                    .map(move |ns| ((ns.clone(), t.service.clone()), Duration::from(t.timeout)))
            })
            .collect(),
        disabled: spec.checks.disabled.iter().copied().collect(),
        namespaces,
    };
    let findings = checks::run_indexed(snapshot, built.index(), &request);
    let key = MeshReadinessKey::new(namespace, mr.name_any());
    let owners = remediation::owners(
        &snapshot.mesh_readiness,
        snapshot,
        &request.namespaces,
        &ctx.operator_namespace,
    )
    .into_iter()
    .map(|(ns, owner)| (ns, MeshReadinessKey::of(owner)))
    .collect();
    let previous = mr
        .status
        .as_ref()
        .map(|s| s.remediations.as_slice())
        .unwrap_or_default();
    let plan = remediation::plan(&PlanRequest {
        snapshot,
        findings: &findings,
        checks: &request,
        mesh_readiness: MeshReadinessRef {
            key: &key,
            uid: mr.metadata.uid.as_deref(),
            spec,
        },
        owners: &owners,
        now,
        previous,
    });
    // Outside Apply nothing of ours should exist: every object is stale.
    let kept: &[Remediation] = if spec.remediation.mode == RemediationMode::Apply {
        &plan
    } else {
        &[]
    };
    let stale = remediation::stale(snapshot, &key, kept);
    Ok(Evaluation::Checked {
        namespaces: request.namespaces.len() as i32,
        findings,
        plan,
        stale,
    })
}

async fn write_status(
    ctx: &Context,
    namespace: &str,
    name: &str,
    status: &MeshReadinessStatus,
) -> Result<()> {
    let api: Api<MeshReadiness> = Api::namespaced(ctx.client.clone(), namespace);
    // Only apiVersion, kind and status: the fields this manager owns on the status subresource.
    let patch = serde_json::json!({
        "apiVersion": MeshReadiness::api_version(&()),
        "kind": MeshReadiness::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(keys::FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::WriteStatus {
        object: format!("{namespace}/{name}"),
        source,
    })?;
    ctx.metrics.write("MeshReadiness", "patch");
    Ok(())
}

/// How soon to retry while the watch caches are still filling.
const SYNC_WAIT: Duration = Duration::from_millis(500);

pub async fn reconcile(mr: Arc<MeshReadiness>, ctx: Arc<Context>) -> Result<Action> {
    // A standby keeps its caches warm and looks again soon, to take over quickly.
    if !ctx.is_synced() || !ctx.is_leader() {
        return Ok(Action::requeue(SYNC_WAIT));
    }
    let _timer = ctx.metrics.time_reconcile();
    let name = mr.name_any();
    let namespace = mr
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(name.clone()))?;
    if mr.metadata.deletion_timestamp.is_some() {
        // Only a finalizer of ours (or someone else's) keeps it here: clean up and let go.
        remediate::finalize(&ctx, &mr).await?;
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    let evaluation = evaluate(&mr, &namespace, &ctx, now).await?;
    // Leadership may have been lost while evaluating: a former leader never writes.
    if !ctx.is_leader() {
        return Ok(Action::requeue(SYNC_WAIT));
    }
    let outcome = match evaluation {
        Evaluation::Checked {
            findings,
            namespaces,
            plan,
            stale,
        } => Outcome::Checked {
            remediations: remediate::sync(&ctx, &mr, plan, stale).await?,
            findings,
            namespaces,
        },
        Evaluation::NotChecked { reason, message } => {
            // A suspended object is left as it is. Otherwise it covers nothing it can check,
            // so nothing it created is wanted any more (a PERMISSIVE policy above all).
            if reason != reasons::SUSPENDED {
                let key = MeshReadinessKey::new(namespace.as_str(), name.as_str());
                let stale = remediate::owned_by(&ctx, &key);
                remediate::sync(&ctx, &mr, Vec::new(), stale).await?;
            }
            Outcome::NotChecked { reason, message }
        }
    };
    let previous = mr.status.as_ref();
    let now = Time(now);
    let desired = status::desired(&mr.spec, mr.metadata.generation, &outcome, previous, &now);
    let changed = status::changed(previous, &desired);
    tracing::debug!(%namespace, %name, changed, ready = ?status::ready(&desired).map(|c| &c.reason), "evaluated");
    if changed {
        write_status(&ctx, &namespace, &name, &desired).await?;
    }
    if let Outcome::Checked { findings, .. } = &outcome {
        let now_reported = events::keyed(findings);
        let before = {
            let mut reported = ctx
                .reported
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let key = (namespace.clone(), name.clone());
            let seeded = || {
                let from_status: Vec<checks::Finding> =
                    previous.map(seen_in_status).unwrap_or_default();
                events::keyed(&from_status)
            };
            let before = reported.remove(&key).unwrap_or_else(seeded);
            reported.insert(key, now_reported.clone());
            // Forget MeshReadiness objects that are gone.
            reported.retain(|(ns, name), _| {
                ctx.mesh_readiness
                    .get(&kube::runtime::reflector::ObjectRef::new(name).within(ns))
                    .is_some()
            });
            before
        };
        let transitions = events::transitions(&before, &now_reported, previous, &desired);
        events::publish(&ctx, &mr, &transitions).await;
    } else if status::changed(previous, &desired) {
        let transitions =
            events::transitions(&BTreeMap::new(), &BTreeMap::new(), previous, &desired);
        events::publish(&ctx, &mr, &transitions).await;
    }
    Ok(match outcome {
        Outcome::NotChecked { reason, .. } if reason == reasons::SUSPENDED => {
            Action::await_change()
        }
        Outcome::NotChecked { reason, .. } if reason == reasons::ISTIO_NOT_DETECTED => {
            Action::requeue(ISTIO_RECHECK)
        }
        Outcome::Checked { remediations, .. } => {
            Action::requeue(next_visit(mr.spec.interval.into(), &remediations, now.0))
        }
        Outcome::NotChecked { .. } => Action::requeue(mr.spec.interval.into()),
    })
}

/// The interval, or sooner when a PERMISSIVE policy expires before it: the TTL is kept to the
/// second, not to the next interval.
fn next_visit(interval: Duration, remediations: &[Remediation], now: Timestamp) -> Duration {
    remediations
        .iter()
        .filter(|r| r.state == crate::api::RemediationState::Applied)
        .filter_map(|r| r.expires.as_ref())
        .filter_map(|at| Duration::try_from(at.0.duration_since(now)).ok())
        .map(|left| left + Duration::from_secs(1))
        .fold(interval, Duration::min)
}

/// The findings a status lists, as findings (their messages are what was reported).
fn seen_in_status(status: &MeshReadinessStatus) -> Vec<checks::Finding> {
    status
        .findings
        .iter()
        .map(|f| checks::Finding {
            code: f.code,
            severity: f.severity,
            object: crate::snapshot::ObjectRef::new(
                f.kind.clone(),
                f.namespace.clone(),
                f.name.clone(),
            ),
            message: f.message.clone(),
        })
        .collect()
}

pub fn error_policy(mr: Arc<MeshReadiness>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(name = %mr.name_any(), namespace = mr.namespace().unwrap_or_default(), %error, category = error.category(), "reconcile failed");
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[error.category()])
        .inc();
    Action::requeue(ERROR_REQUEUE)
}
