//! One reconcile: read the watch caches, run the checks, write status and Events only when
//! something changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use crate::api::k8s::Time;
use crate::api::{MeshReadiness, MeshReadinessStatus, keys};
use crate::checks::{self, CheckRequest};
use crate::operator::context::Context;
use crate::operator::error::{Error, Result};
use crate::operator::events;
use crate::operator::status::{self, Outcome, reasons};
use crate::snapshot::{BuildOptions, IstioObject, Meta, Snapshot, scope};

/// How soon to look again while Istio's CRDs are missing: they are picked up without a restart.
const ISTIO_RECHECK: Duration = Duration::from_secs(10);
/// After a failed reconcile.
const ERROR_REQUEUE: Duration = Duration::from_secs(30);

/// What the reconcile concluded, before any write.
fn evaluate(mr: &MeshReadiness, namespace: &str, ctx: &Context) -> Result<Outcome> {
    let spec = &mr.spec;
    if spec.suspend {
        return Ok(Outcome::NotChecked {
            reason: reasons::SUSPENDED,
            message: "spec.suspend is true: not checking; the findings shown are the last ones."
                .to_string(),
        });
    }
    if let Some(selector) = &spec.namespace_selector {
        if namespace != ctx.operator_namespace {
            return Ok(Outcome::NotChecked {
                reason: reasons::SELECTOR_NOT_ALLOWED,
                message: format!(
                    "namespaceSelector is honoured only in the operator's namespace {}; remove it to check {namespace} alone, or move this object there.",
                    ctx.operator_namespace
                ),
            });
        }
        if let Some(problem) = scope::selector_problem(selector) {
            return Ok(Outcome::NotChecked {
                reason: reasons::INVALID_SPEC,
                message: problem,
            });
        }
    }
    if !ctx.stores.istio.detected() {
        return Ok(Outcome::NotChecked {
            reason: reasons::ISTIO_NOT_DETECTED,
            message: "Istio's CRDs (security.istio.io, networking.istio.io) are not served in this cluster: install Istio; checking starts on its own.".to_string(),
        });
    }
    let options = BuildOptions {
        assume_injected: false,
        native_sidecars: Some(ctx.stores.native_sidecars()),
        ..BuildOptions::default()
    };
    let snapshot = Snapshot::build(ctx.stores.objects(&ctx.mesh_readiness), &options)?;
    let info = IstioObject {
        meta: Meta {
            namespace: namespace.to_string(),
            name: mr.name_any(),
            ..Meta::default()
        },
        spec: spec.clone(),
    };
    let namespaces = scope::covered(&snapshot, &info, &ctx.operator_namespace);
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
    let findings = checks::run(&snapshot, &request);
    Ok(Outcome::Checked {
        namespaces: request.namespaces.len() as i32,
        findings,
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
    let outcome = evaluate(&mr, &namespace, &ctx)?;
    let previous = mr.status.as_ref();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let desired = status::desired(&mr.spec, mr.metadata.generation, &outcome, previous, &now);
    let changed = status::changed(previous, &desired);
    tracing::debug!(%namespace, %name, changed, ready = ?status::ready(&desired).map(|c| &c.reason), "evaluated");
    // Leadership may have been lost while evaluating: a former leader never writes.
    if !ctx.is_leader() {
        return Ok(Action::requeue(SYNC_WAIT));
    }
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
        _ => Action::requeue(mr.spec.interval.into()),
    })
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
