//! Small builders for planner tests: manifests and a spec in, remediations out.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use crate::api::{MeshReadinessSpec, RemediationMode, RemediationStatus};
use crate::checks::{self, CheckRequest, Finding};
use crate::remediation::{
    FindingKey, Kind, MeshReadinessKey, MeshReadinessRef, PlanRequest, Remediation, mitigated_by,
    plan,
};
use crate::snapshot::Snapshot;

/// Mesh-wide STRICT; in the injected namespace `shop`, Deployment `api` is meshed and
/// Deployment `legacy` opts out and calls it in plaintext: an Error MR301 on `api`.
pub const SHOP_STRICT_FROM_MESH: &str = "
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec: {containers: [{name: api, image: shop/api, ports: [{containerPort: 8080}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: legacy, namespace: shop}
spec:
  selector: {matchLabels: {app: legacy}}
  template:
    metadata: {labels: {app: legacy, sidecar.istio.io/inject: \"false\"}}
    spec: {containers: [{name: legacy, image: shop/legacy}]}
";

/// Service `cart` in `shop` (HTTP, app idle timeout 60s by annotation): a Warning MR601 and a
/// Warning MR701.
pub const CART_WITH_TIMEOUT: &str = "
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop, annotations: {meshreadiness.io/app-idle-timeout: 60s}}
spec: {selector: {app: cart}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  template:
    metadata: {labels: {app: cart}}
    spec: {containers: [{name: cart, image: shop/cart, ports: [{containerPort: 8080}]}]}
";

/// Mode Apply with every kind allowed, other settings at their defaults.
pub fn all_kinds() -> MeshReadinessSpec {
    let mut spec = MeshReadinessSpec::default();
    spec.remediation.mode = RemediationMode::Apply;
    spec.remediation.permissive_mtls = true;
    spec.remediation.idle_timeout = true;
    spec.remediation.reset_retries = true;
    spec
}

pub fn snapshot_of(yaml: &str) -> Snapshot {
    checks::testing::snapshot(yaml)
}

/// The check request a MeshReadiness with `spec` makes for `namespaces`.
fn request_for(
    spec: &MeshReadinessSpec,
    namespaces: std::collections::BTreeSet<String>,
) -> CheckRequest {
    CheckRequest {
        app_idle_timeouts: spec
            .app_idle_timeouts
            .iter()
            .flat_map(|t| {
                namespaces.iter().map(move |ns| {
                    (
                        (ns.clone(), t.service.clone()),
                        std::time::Duration::from(t.timeout),
                    )
                })
            })
            .collect(),
        disabled: spec.checks.disabled.iter().copied().collect(),
        namespaces,
    }
}

/// Every checkable namespace of `snapshot` owned by `key`.
pub fn owners_all(
    snapshot: &Snapshot,
    key: &MeshReadinessKey,
) -> BTreeMap<String, MeshReadinessKey> {
    snapshot
        .checkable_namespaces()
        .into_iter()
        .map(|ns| (ns, key.clone()))
        .collect()
}

pub fn now() -> Timestamp {
    Timestamp::from_second(1_767_225_600).expect("2026-01-01")
}

// A test helper: every input of a plan, spelled out.
#[allow(clippy::too_many_arguments)]
fn run(
    snapshot: &Snapshot,
    findings: Option<&[Finding]>,
    checks: &CheckRequest,
    spec: &MeshReadinessSpec,
    key: &MeshReadinessKey,
    uid: Option<&str>,
    owners: &BTreeMap<String, MeshReadinessKey>,
    now: Timestamp,
    previous: &[RemediationStatus],
) -> Vec<Remediation> {
    let computed;
    let findings = match findings {
        Some(findings) => findings,
        None => {
            computed = checks::run(snapshot, checks);
            &computed
        }
    };
    plan(&PlanRequest {
        snapshot,
        findings,
        checks,
        mesh_readiness: MeshReadinessRef { key, uid, spec },
        owners,
        now,
        previous,
    })
}

/// Plans for MeshReadiness `shop/ready`, owner of every namespace, at [`now`].
pub fn plan_for(yaml: &str, spec: &MeshReadinessSpec) -> Vec<Remediation> {
    let snapshot = snapshot_of(yaml);
    let key = MeshReadinessKey::new("shop", "ready");
    plan_with(&snapshot, spec, &key, None, &owners_all(&snapshot, &key))
}

pub fn plan_with(
    snapshot: &Snapshot,
    spec: &MeshReadinessSpec,
    key: &MeshReadinessKey,
    uid: Option<&str>,
    owners: &BTreeMap<String, MeshReadinessKey>,
) -> Vec<Remediation> {
    let checks = request_for(spec, snapshot.checkable_namespaces());
    run(snapshot, None, &checks, spec, key, uid, owners, now(), &[])
}

/// Plans at `now`, with the last status `previous`.
pub fn plan_at(
    snapshot: &Snapshot,
    spec: &MeshReadinessSpec,
    now: Timestamp,
    previous: &[RemediationStatus],
) -> Vec<Remediation> {
    let key = MeshReadinessKey::new("shop", "ready");
    let checks = request_for(spec, snapshot.checkable_namespaces());
    let owners = owners_all(snapshot, &key);
    run(
        snapshot, None, &checks, spec, &key, None, &owners, now, previous,
    )
}

/// Plans from given findings, for a MeshReadiness covering (and owning) their namespaces.
pub fn plan_with_findings(
    snapshot: &Snapshot,
    findings: &[Finding],
    spec: &MeshReadinessSpec,
    key: &MeshReadinessKey,
) -> Vec<Remediation> {
    let namespaces = findings
        .iter()
        .map(|f| f.object.namespace.clone())
        .collect();
    let checks = request_for(spec, namespaces);
    let owners = checks
        .namespaces
        .iter()
        .map(|ns| (ns.clone(), key.clone()))
        .collect();
    run(
        snapshot,
        Some(findings),
        &checks,
        spec,
        key,
        None,
        &owners,
        now(),
        &[],
    )
}

/// `State Kind namespace/name` of each remediation.
pub fn names(plan: &[Remediation]) -> Vec<String> {
    plan.iter()
        .map(|r| format!("{:?} {} {}/{}", r.state, r.kind, r.namespace, r.name))
        .collect()
}

pub fn kinds(plan: &[Remediation]) -> Vec<Kind> {
    plan.iter().map(|r| r.kind).collect()
}

pub fn find(plan: &[Remediation], kind: Kind) -> &Remediation {
    plan.iter()
        .find(|r| r.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} in {plan:#?}"))
}

pub fn mitigated(plan: &[Remediation]) -> BTreeMap<FindingKey, String> {
    mitigated_by(plan)
}
