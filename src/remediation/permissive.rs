//! MR301: a namespace-wide PERMISSIVE PeerAuthentication, `meshreadiness-permissive`, lets
//! plaintext callers reach workloads that are STRICT only because of the mesh-wide policy.
//!
//! Istio composes policies workload > namespace > mesh, and within one scope the oldest wins. A
//! namespace-wide policy of ours therefore outranks the mesh-wide one, but never a user's
//! namespace-wide policy (theirs is older; even one with mode UNSET takes the namespace's place)
//! nor a workload policy. Those cases are `Blocked`, with the patch to their policy.
//!
//! It is a security downgrade: time-boxed by `permissiveMtlsTtl` (then `Expired`), never in the
//! root namespace or a system namespace.

use std::collections::BTreeMap;

use serde_json::json;

use crate::api::RemediationState;
use crate::api::istio::{MtlsMode, PeerAuthentication, PeerAuthenticationSpec, PeerMtls};
use crate::api::k8s::Time;
use crate::checks::{Code, Context, Finding};
use crate::istio::duration::format_duration;
use crate::istio::mtls::Scope;
use crate::remediation::{
    DesiredObject, FindingKey, Kind, PlanRequest, Reason, Remediation, objects_phrase, patch,
};
use crate::snapshot::{PeerAuthenticationInfo, Workload};

/// The name of meshready's PERMISSIVE PeerAuthentication, one per namespace.
pub const PERMISSIVE_NAME: &str = "meshreadiness-permissive";

/// Why one MR301 finding cannot be mitigated by a namespace-wide policy of ours.
struct Obstacle<'a> {
    finding: FindingKey,
    /// The user's policy that decides the mode.
    policy: &'a PeerAuthenticationInfo,
    /// Container ports of the workload, for a `portLevelMtls` alternative.
    ports: Vec<i32>,
    scope: Scope,
}

pub(super) fn plan(request: &PlanRequest, cx: &Context) -> Vec<Remediation> {
    let snapshot = request.snapshot;
    let mut by_namespace: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for finding in request.findings_of(Code::MR301) {
        by_namespace
            .entry(finding.object.namespace.as_str())
            .or_default()
            .push(finding);
    }
    let mut out = Vec::new();
    for (namespace, findings) in by_namespace {
        // Never the root namespace (it would be the mesh-wide policy) nor a system namespace.
        if snapshot.is_system_namespace(namespace) || namespace == snapshot.mesh.root_namespace {
            continue;
        }
        let mut mitigated = Vec::new();
        let mut obstacles = Vec::new();
        for finding in findings {
            let Some(workload) = workload_of(cx, finding) else {
                continue;
            };
            let labels = &workload.template.labels;
            let effective = cx.mtls.effective(namespace, labels, None);
            let key = FindingKey::from(finding);
            let decided_by = match effective.scope {
                // From the mesh, ours outranks it unless a user's namespace-wide policy holds
                // the namespace (one with mode UNSET inherits the mesh's STRICT): theirs, older,
                // would win over ours.
                Scope::Mesh | Scope::Namespace => cx
                    .mtls
                    .namespace_policy(namespace)
                    .map(|p| (p, Scope::Namespace)),
                Scope::Workload | Scope::Port => cx
                    .mtls
                    .workload_policy(namespace, labels)
                    .map(|p| (p, Scope::Workload)),
                // Not STRICT: MR301 would not have fired.
                Scope::Default => continue,
            };
            match decided_by {
                None => mitigated.push(key),
                Some((policy, scope)) => obstacles.push(Obstacle {
                    finding: key,
                    policy,
                    ports: container_ports(workload),
                    scope,
                }),
            }
        }
        if mitigated.is_empty() && obstacles.is_empty() {
            continue;
        }
        out.push(remediation(request, namespace, mitigated, obstacles));
    }
    out
}

fn remediation(
    request: &PlanRequest,
    namespace: &str,
    mitigated: Vec<FindingKey>,
    obstacles: Vec<Obstacle>,
) -> Remediation {
    let object = PeerAuthentication {
        metadata: request.metadata(namespace, PERMISSIVE_NAME),
        ..PeerAuthentication::new(
            PERMISSIVE_NAME,
            PeerAuthenticationSpec {
                selector: None,
                mtls: Some(PeerMtls {
                    mode: MtlsMode::Permissive,
                }),
                port_level_mtls: BTreeMap::new(),
            },
        )
    };
    let ttl = format_duration(ttl(request));
    let blocked = blocked_phrase(&obstacles);
    let (state, reason, message, mitigates) = if mitigated.is_empty() {
        let reason = format!(
            "MR301 on {}: {blocked}",
            objects_phrase(obstacles.iter().map(|o| &o.finding))
        );
        let addressed = obstacles.into_iter().map(|o| o.finding).collect();
        (
            RemediationState::Blocked,
            Reason::UserPolicyOutranks,
            reason,
            addressed,
        )
    } else {
        let mut reason = format!(
            "MR301 on {}: STRICT comes from the mesh-wide PeerAuthentication, which a \
             namespace-wide PERMISSIVE policy outranks. It lets plaintext callers in for \
             permissiveMtlsTtl ({ttl}); then it is removed and MR301 is reported again. This \
             weakens mTLS in {namespace}: inject the callers instead where you can.",
            objects_phrase(&mitigated)
        );
        if !obstacles.is_empty() {
            reason.push_str(&format!(
                " Not for {}: {blocked}",
                objects_phrase(obstacles.iter().map(|o| &o.finding))
            ));
        }
        (
            RemediationState::Planned,
            Reason::MitigatesFindings,
            reason,
            mitigated,
        )
    };
    Remediation {
        kind: Kind::PeerAuthentication,
        namespace: namespace.to_string(),
        name: PERMISSIVE_NAME.to_string(),
        state,
        reason,
        message,
        object: DesiredObject::PeerAuthentication(object),
        mitigates,
        expires: None,
    }
}

/// What blocks, once per deciding policy, and the patch to make to it.
fn blocked_phrase(obstacles: &[Obstacle]) -> String {
    let mut by_policy: BTreeMap<(&str, &str), Vec<&Obstacle>> = BTreeMap::new();
    for o in obstacles {
        by_policy
            .entry((&o.policy.meta.namespace, &o.policy.meta.name))
            .or_default()
            .push(o);
    }
    let mut parts = Vec::new();
    for ((ns, name), obstacles) in by_policy {
        let permissive = patch::merge(
            Kind::PeerAuthentication,
            ns,
            name,
            &json!({"spec": {"mtls": {"mode": "PERMISSIVE"}}}),
        );
        let part = match obstacles[0].scope {
            Scope::Workload | Scope::Port => {
                let mut ports: Vec<i32> = obstacles.iter().flat_map(|o| o.ports.clone()).collect();
                ports.sort_unstable();
                ports.dedup();
                let by_port = if ports.is_empty() {
                    String::new()
                } else {
                    let entries: serde_json::Map<String, serde_json::Value> = ports
                        .iter()
                        .map(|p| (p.to_string(), json!({"mode": "PERMISSIVE"})))
                        .collect();
                    let port_patch = patch::merge(
                        Kind::PeerAuthentication,
                        ns,
                        name,
                        &json!({"spec": {"portLevelMtls": entries}}),
                    );
                    format!(
                        " Or keep STRICT and allow plaintext only on the ports the callers use \
                         (container ports): {port_patch}"
                    )
                };
                format!(
                    "STRICT comes from the workload PeerAuthentication {ns}/{name}, which a \
                     namespace-wide policy cannot outrank (workload beats namespace). Patch \
                     yours: {permissive}{by_port}"
                )
            }
            _ => {
                let mode = obstacles[0]
                    .policy
                    .spec
                    .mtls
                    .as_ref()
                    .map_or(MtlsMode::Unset, |m| m.mode);
                let workloads = objects_phrase(obstacles.iter().map(|o| &o.finding));
                let mut ports: Vec<i32> = obstacles.iter().flat_map(|o| o.ports.clone()).collect();
                ports.sort_unstable();
                ports.dedup();
                let on_ports = if ports.is_empty() {
                    String::new()
                } else {
                    let ports: Vec<String> = ports.iter().map(i32::to_string).collect();
                    format!(" on container ports {}", ports.join(", "))
                };
                format!(
                    "the namespace-wide PeerAuthentication {ns}/{name} (mode {}) holds the \
                     namespace, and a second namespace-wide policy could not outrank it (the \
                     oldest wins). Patch yours: {permissive} Or, narrower, add a workload \
                     PeerAuthentication selecting the pods of {workloads} with portLevelMtls \
                     PERMISSIVE{on_ports}.",
                    mode.as_str()
                )
            }
        };
        parts.push(part);
    }
    parts.join(" ")
}

fn workload_of<'a>(cx: &Context<'a>, finding: &Finding) -> Option<&'a Workload> {
    cx.snapshot.workloads.iter().find(|w| {
        w.kind == finding.object.kind
            && w.meta.namespace == finding.object.namespace
            && w.meta.name == finding.object.name
    })
}

fn container_ports(workload: &Workload) -> Vec<i32> {
    workload
        .template
        .spec
        .containers
        .iter()
        .filter(|c| c.name != crate::api::keys::PROXY_CONTAINER)
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.protocol.as_deref().is_none_or(|p| p != "UDP"))
        .map(|p| p.container_port)
        .collect()
}

fn ttl(request: &PlanRequest) -> std::time::Duration {
    let ttl = request.mesh_readiness.spec.remediation.permissive_mtls_ttl;
    if ttl.is_negative() {
        std::time::Duration::ZERO
    } else {
        ttl.into()
    }
}

/// A planned policy lives `permissiveMtlsTtl` from its creation (meshready's own object in the
/// snapshot, by creationTimestamp), or from `now` before it exists. Past that, or when the last
/// status already said `Expired`, it is `Expired`: the operator deletes it and MR301 counts again.
pub(super) fn apply_ttl(request: &PlanRequest, remediation: &mut Remediation) {
    let ttl = ttl(request);
    let existing = request
        .snapshot
        .owned
        .peer_authentications
        .iter()
        .find(|pa| pa.meta.namespace == remediation.namespace && pa.meta.name == PERMISSIVE_NAME);
    let created = existing
        .and_then(|pa| pa.meta.creation.as_ref())
        .map(|t| t.0);
    let expires = created.unwrap_or(request.now).checked_add(ttl).ok();
    let remembered = request.previous.iter().any(|s| {
        s.kind == Kind::PeerAuthentication.as_str()
            && s.namespace == remediation.namespace
            && s.name == PERMISSIVE_NAME
            && s.state == RemediationState::Expired
    });
    let passed = expires.is_some_and(|at| request.now >= at);
    remediation.expires = expires.map(Time);
    if !(remembered || passed) {
        if let (Some(created), Some(at)) = (created, expires) {
            remediation.message = format!(
                "{} In place since {created}, until {at}.",
                remediation.message
            );
        }
        return;
    }
    remediation.state = RemediationState::Expired;
    remediation.reason = Reason::TtlPassed;
    let since = created.map_or(String::new(), |c| format!(" (created {c})"));
    remediation.message = format!(
        "The PERMISSIVE policy{since} outlived permissiveMtlsTtl ({}): it is removed and MR301 \
         on {} counts again. Inject the callers; to allow another period, turn \
         remediation.permissiveMtls off and on again.",
        format_duration(ttl),
        objects_phrase(&remediation.mitigates),
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::api::RemediationStatus;
    use k8s_openapi::jiff::Timestamp;

    fn permissive_only() -> crate::api::MeshReadinessSpec {
        let mut spec = all_kinds();
        spec.remediation.idle_timeout = false;
        spec.remediation.reset_retries = false;
        spec
    }

    #[test]
    fn planned_when_strict_comes_from_the_mesh() {
        let plan = plan_for(SHOP_STRICT_FROM_MESH, &permissive_only());
        assert_eq!(plan.len(), 1);
        let pa = &plan[0];
        assert_eq!(pa.state, RemediationState::Planned, "{}", pa.message);
        assert_eq!(
            (pa.namespace.as_str(), pa.name.as_str()),
            ("shop", PERMISSIVE_NAME)
        );
        assert_eq!(
            pa.mitigates
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>(),
            ["MR301 on Deployment shop/api"]
        );
        let DesiredObject::PeerAuthentication(object) = &pa.object else {
            panic!("a PeerAuthentication");
        };
        assert_eq!(object.spec.selector, None, "namespace-wide");
        assert_eq!(
            object.spec.mtls.as_ref().map(|m| m.mode),
            Some(MtlsMode::Permissive)
        );
        assert!(object.spec.port_level_mtls.is_empty());
        let yaml = serde_json::to_value(object).expect("serializes");
        assert_eq!(
            yaml["spec"],
            serde_json::json!({"mtls": {"mode": "PERMISSIVE"}})
        );
        assert_eq!(yaml["apiVersion"], "security.istio.io/v1");
        assert!(pa.message.contains("72h"), "{}", pa.message);
    }

    #[test]
    fn planned_for_a_warning_mr301_too() {
        // The plaintext caller sits in another, non-injected namespace: a Warning MR301.
        let yaml = SHOP_STRICT_FROM_MESH.replace(
            "metadata: {name: legacy, namespace: shop}",
            "metadata: {name: legacy, namespace: old}",
        ) + "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: old}\n";
        let findings = crate::checks::testing::findings(&yaml);
        let mr301: Vec<_> = findings.iter().filter(|f| f.code == Code::MR301).collect();
        assert_eq!(mr301.len(), 1);
        assert_eq!(mr301[0].severity, crate::checks::Severity::Warning);
        let plan = plan_for(&yaml, &permissive_only());
        let planned: Vec<_> = plan
            .iter()
            .map(|r| (r.namespace.as_str(), r.state))
            .collect();
        assert_eq!(planned, [("shop", RemediationState::Planned)]);
    }

    #[test]
    fn nothing_without_mr301() {
        // STRICT from the mesh, but every caller is meshed: no MR301, no policy.
        let meshed = SHOP_STRICT_FROM_MESH.replace("inject: \"false\"", "inject: \"true\"");
        assert!(plan_for(&meshed, &permissive_only()).is_empty());
    }

    #[test]
    fn blocked_by_the_users_namespace_policy() {
        let theirs = "
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: shop}
spec: {mtls: {mode: STRICT}}
";
        let plan = plan_for(
            &format!("{SHOP_STRICT_FROM_MESH}{theirs}"),
            &permissive_only(),
        );
        assert_eq!(plan.len(), 1);
        let pa = &plan[0];
        assert_eq!(pa.state, RemediationState::Blocked);
        assert!(
            pa.message.contains("shop/default (mode STRICT)"),
            "{}",
            pa.message
        );
        assert!(pa.message.contains("the oldest wins"), "{}", pa.message);
        assert!(
            pa.message.contains(
                r#"kubectl -n shop patch peerauthentication default --type merge -p '{"spec":{"mtls":{"mode":"PERMISSIVE"}}}'"#
            ),
            "{}",
            pa.message
        );
        assert!(mitigated(&plan).is_empty());
    }

    #[test]
    fn blocked_by_a_users_unset_namespace_policy_that_inherits_the_mesh() {
        // STRICT still comes from the mesh, but their UNSET policy holds the namespace: ours,
        // being newer, would never take effect.
        let theirs = "
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: shop}
spec: {mtls: {mode: UNSET}}
";
        let plan = plan_for(
            &format!("{SHOP_STRICT_FROM_MESH}{theirs}"),
            &permissive_only(),
        );
        assert_eq!(plan[0].state, RemediationState::Blocked);
        assert!(
            plan[0].message.contains("(mode UNSET)"),
            "{}",
            plan[0].message
        );
    }

    #[test]
    fn blocked_by_a_workload_policy_with_a_port_level_alternative() {
        let theirs = "
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: api-strict, namespace: shop}
spec: {selector: {matchLabels: {app: api}}, mtls: {mode: STRICT}}
";
        // Mesh PERMISSIVE: STRICT only from the workload policy.
        let yaml = format!("{SHOP_STRICT_FROM_MESH}{theirs}").replacen(
            "spec: {mtls: {mode: STRICT}}",
            "spec: {mtls: {mode: PERMISSIVE}}",
            1,
        );
        let plan = plan_for(&yaml, &permissive_only());
        assert_eq!(plan.len(), 1);
        let pa = &plan[0];
        assert_eq!(pa.state, RemediationState::Blocked);
        assert!(
            pa.message.contains("workload beats namespace"),
            "{}",
            pa.message
        );
        assert!(
            pa.message.contains("peerauthentication api-strict"),
            "{}",
            pa.message
        );
        assert!(
            pa.message
                .contains(r#"{"spec":{"portLevelMtls":{"8080":{"mode":"PERMISSIVE"}}}}"#),
            "{}",
            pa.message
        );
    }

    #[test]
    fn planned_for_the_mesh_strict_workloads_and_says_which_stay_blocked() {
        let theirs = "
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: db-strict, namespace: shop}
spec: {selector: {matchLabels: {app: db}}, mtls: {mode: STRICT}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: db, ports: [{containerPort: 5432}]}]}
";
        let plan = plan_for(
            &format!("{SHOP_STRICT_FROM_MESH}{theirs}"),
            &permissive_only(),
        );
        assert_eq!(plan.len(), 1);
        let pa = &plan[0];
        assert_eq!(pa.state, RemediationState::Planned);
        assert_eq!(
            pa.mitigates
                .iter()
                .map(|f| f.object.name.as_str())
                .collect::<Vec<_>>(),
            ["api"]
        );
        assert!(
            pa.message.contains("Not for Deployment/db"),
            "{}",
            pa.message
        );
    }

    #[test]
    fn never_in_the_root_or_a_system_namespace() {
        let yaml = SHOP_STRICT_FROM_MESH.replace("namespace: shop", "namespace: kube-system");
        let snapshot = snapshot_of(&yaml);
        // Even given a finding there, nothing is planned.
        let mut findings = crate::checks::testing::run_all(&snapshot_of(SHOP_STRICT_FROM_MESH));
        for f in &mut findings {
            f.object.namespace = "kube-system".into();
        }
        let key = crate::remediation::MeshReadinessKey::new("kube-system", "ready");
        let plan = plan_with_findings(&snapshot, &findings, &permissive_only(), &key);
        assert!(plan.is_empty(), "{plan:#?}");
        let mut in_root = findings.clone();
        for f in &mut in_root {
            f.object.namespace = "istio-system".into();
        }
        let key = crate::remediation::MeshReadinessKey::new("istio-system", "ready");
        assert!(plan_with_findings(&snapshot, &in_root, &permissive_only(), &key).is_empty());
    }

    fn owned_policy(created: &str) -> String {
        format!(
            "
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: meshreadiness-permissive
  namespace: shop
  creationTimestamp: '{created}'
  labels: {{app.kubernetes.io/managed-by: meshreadiness}}
spec: {{mtls: {{mode: PERMISSIVE}}}}
"
        )
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn ttl_counts_from_the_owned_policy_creation() {
        let yaml = format!(
            "{SHOP_STRICT_FROM_MESH}{}",
            owned_policy("2026-01-01T00:00:00Z")
        );
        let snapshot = snapshot_of(&yaml);
        let spec = permissive_only(); // 72h
        let before = plan_at(&snapshot, &spec, at("2026-01-03T23:59:59Z"), &[]);
        assert_eq!(before[0].state, RemediationState::Planned);
        assert_eq!(
            before[0].expires.as_ref().map(|t| t.0),
            Some(at("2026-01-04T00:00:00Z"))
        );
        assert!(
            before[0].message.contains("until 2026-01-04T00:00:00Z"),
            "{}",
            before[0].message
        );
        let after = plan_at(&snapshot, &spec, at("2026-01-04T00:00:00Z"), &[]);
        assert_eq!(after[0].state, RemediationState::Expired);
        assert!(
            after[0]
                .message
                .contains("MR301 on Deployment/api counts again"),
            "{}",
            after[0].message
        );
        assert!(
            mitigated(&after).is_empty(),
            "the finding is reported again"
        );
        // A shorter TTL expires sooner.
        let mut short = spec.clone();
        short.remediation.permissive_mtls_ttl = std::time::Duration::from_secs(3600).into();
        let plan = plan_at(&snapshot, &short, at("2026-01-01T01:00:00Z"), &[]);
        assert_eq!(plan[0].state, RemediationState::Expired);
    }

    #[test]
    fn a_new_policy_expires_ttl_after_now() {
        let snapshot = snapshot_of(SHOP_STRICT_FROM_MESH);
        let plan = plan_at(
            &snapshot,
            &permissive_only(),
            at("2026-01-01T00:00:00Z"),
            &[],
        );
        assert_eq!(plan[0].state, RemediationState::Planned);
        assert_eq!(
            plan[0].expires.as_ref().map(|t| t.0),
            Some(at("2026-01-04T00:00:00Z"))
        );
    }

    #[test]
    fn once_expired_not_planned_again_after_deletion() {
        // The operator deleted the expired policy: no owned object, but the last status says so.
        let snapshot = snapshot_of(SHOP_STRICT_FROM_MESH);
        let previous = [RemediationStatus {
            kind: "PeerAuthentication".into(),
            namespace: "shop".into(),
            name: PERMISSIVE_NAME.into(),
            state: RemediationState::Expired,
            reason: String::new(),
            message: String::new(),
            object: None,
        }];
        let plan = plan_at(
            &snapshot,
            &permissive_only(),
            at("2026-02-01T00:00:00Z"),
            &previous,
        );
        assert_eq!(plan[0].state, RemediationState::Expired);
        // Another namespace's expiry does not count here.
        let mut elsewhere = previous.clone();
        elsewhere[0].namespace = "ads".into();
        let plan = plan_at(
            &snapshot,
            &permissive_only(),
            at("2026-02-01T00:00:00Z"),
            &elsewhere,
        );
        assert_eq!(plan[0].state, RemediationState::Planned);
    }
}
