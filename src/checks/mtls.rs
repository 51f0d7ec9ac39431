//! 3xx: will mutual TLS let the callers in?

use crate::checks::listed;
use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::context::pods_phrase;
use super::index::plaintext_count;
use super::{Code, Context, Findings, Severity};
use crate::api::istio::{ClientTls, MtlsMode, TrafficPolicy};
use crate::istio::mtls::{Scope, has_selector, selects};
use crate::snapshot::{DestinationRuleInfo, PeerAuthenticationInfo, Workload};

pub(super) fn check(cx: &Context, out: &mut Findings) {
    strict_with_plaintext_clients(cx, out);
    destination_rules(cx, out);
    duplicate_policies(cx, out);
    ineffective_port_level(cx, out);
}

fn scope_phrase(scope: Scope, policy: Option<&str>) -> String {
    let policy = policy.unwrap_or_default();
    match scope {
        Scope::Mesh => format!("the mesh-wide PeerAuthentication {policy}"),
        Scope::Namespace => format!("the namespace-wide PeerAuthentication {policy}"),
        Scope::Workload | Scope::Port => format!("the workload PeerAuthentication {policy}"),
        Scope::Default => "Istio's default".to_string(),
    }
}

fn strict_with_plaintext_clients(cx: &Context, out: &mut Findings) {
    // Plaintext callers: workloads without a sidecar, same namespace or any non-injected one.
    let index = cx.index();
    let workloads = &cx.snapshot.workloads;
    let outside: Vec<&Workload> = index
        .plaintext_outside
        .iter()
        .map(|(i, _)| &workloads[*i])
        .collect();
    let outside_pods: usize = index.plaintext_outside.iter().map(|(_, pods)| pods).sum();
    let mut outside_names: Option<String> = None;
    for (i, w) in cx.workloads() {
        if !cx.meshed(i) {
            continue;
        }
        let ns = &w.meta.namespace;
        let effective = cx.mtls.effective(ns, &w.template.labels, None);
        if !effective.is_strict() {
            continue;
        }
        let same: Vec<&Workload> = index
            .plaintext
            .get(ns)
            .into_iter()
            .flatten()
            .map(|i| &workloads[*i])
            .collect();
        // With no caller in its own namespace, the namespace has none among `outside` either,
        // so `outside` is exactly the callers from other namespaces.
        let (severity, callers, pods) = if !same.is_empty() {
            let pods = same.iter().map(|c| plaintext_count(c)).sum();
            (Severity::Error, &same, pods)
        } else if !outside.is_empty() {
            (Severity::Warning, &outside, outside_pods)
        } else {
            continue;
        };
        // Every STRICT workload of a namespace without callers of its own lists the same
        // callers from outside: written once.
        let fresh;
        let names = if std::ptr::eq(callers, &outside) {
            outside_names.get_or_insert_with(|| callers_text(&outside))
        } else {
            fresh = callers_text(callers);
            &fresh
        };
        let fix = if severity == Severity::Error {
            format!(
                "inject the callers (remove sidecar.istio.io/inject: \"false\" and restart them), or allow plaintext for {ns} with a PeerAuthentication in {ns} setting mtls.mode: PERMISSIVE"
            )
        } else {
            "label the callers' namespaces istio-injection=enabled and restart them, or set mtls.mode: PERMISSIVE for this workload until they are meshed".to_string()
        };
        out.add(
            Code::MR301,
            severity,
            &w.kind,
            &w.meta,
            format!(
                "{}/{} requires mTLS (STRICT from {}), but {} without a sidecar can call it ({}): \
                 their plaintext connections are reset (503, \"upstream connect error or disconnect/reset \
                 before headers\"). Fix: {fix}.",
                w.kind,
                w.meta.name,
                scope_phrase(effective.scope, effective.policy.as_deref()),
                pods_phrase(pods),
                names,
            ),
        );
    }
}

/// The first three callers, `namespace/kind/name` joined by ", ", then " and N more".
fn callers_text(callers: &[&Workload]) -> String {
    let mut text = String::new();
    for (i, c) in callers.iter().take(3).enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        let _ = write!(text, "{}/{}/{}", c.meta.namespace, c.kind, c.meta.name);
    }
    if callers.len() > 3 {
        let _ = write!(text, " and {} more", callers.len() - 3);
    }
    text
}

/// Every client TLS mode a DestinationRule sets: top level, per port, per subset.
fn tls_modes(dr: &DestinationRuleInfo) -> BTreeSet<String> {
    let mut modes = BTreeSet::new();
    let mut visit = |policy: &Option<TrafficPolicy>| {
        let Some(policy) = policy else { return };
        let tls = policy.tls.iter().chain(
            policy
                .port_level_settings
                .iter()
                .filter_map(|p| p.tls.as_ref()),
        );
        modes.extend(tls.map(|t: &ClientTls| t.mode.to_ascii_uppercase()));
    };
    visit(&dr.spec.traffic_policy);
    for subset in &dr.spec.subsets {
        visit(&subset.traffic_policy);
    }
    modes
}

fn destination_rules(cx: &Context, out: &mut Findings) {
    for dr in cx.destination_rules() {
        let modes = tls_modes(dr);
        let plaintext_modes: Vec<&str> = ["DISABLE", "SIMPLE"]
            .into_iter()
            .filter(|m| modes.contains(*m))
            .collect();
        let istio_mutual = modes.contains("ISTIO_MUTUAL");
        if plaintext_modes.is_empty() && !istio_mutual {
            continue;
        }
        let mut strict = BTreeSet::new();
        let mut unmeshed = BTreeSet::new();
        for svc in cx.services_for_host(&dr.spec.host, &dr.meta.namespace) {
            for (i, w) in cx.selected_by(svc) {
                let label = format!("{}/{}/{}", w.meta.namespace, w.kind, w.meta.name);
                if !cx.in_mesh(i) {
                    unmeshed.insert(label);
                } else if cx
                    .mtls
                    .effective(&w.meta.namespace, &w.template.labels, None)
                    .is_strict()
                {
                    strict.insert(label);
                }
            }
        }
        let host = &dr.spec.host;
        if !plaintext_modes.is_empty() && !strict.is_empty() {
            out.add(
                Code::MR302,
                Code::MR302.default_severity(),
                "DestinationRule",
                &dr.meta,
                format!(
                    "DestinationRule {} sets tls.mode {} for {host}, but its workloads ({}) are STRICT: \
                     they refuse anything but Istio mTLS, so every request fails (503, connection reset). \
                     Fix: use tls.mode: ISTIO_MUTUAL (or remove the tls block to let Istio choose).",
                    dr.meta.name,
                    plaintext_modes.join("/"),
                    listed(&strict.into_iter().collect::<Vec<_>>(), ", "),
                ),
            );
        }
        if istio_mutual && !unmeshed.is_empty() {
            out.add(
                Code::MR303,
                Code::MR303.default_severity(),
                "DestinationRule",
                &dr.meta,
                format!(
                    "DestinationRule {} sets tls.mode ISTIO_MUTUAL for {host}, but {} run without a \
                     sidecar and cannot terminate Istio mTLS: requests fail (503 UF, TLS handshake \
                     error). Fix: inject those workloads, or set tls.mode: DISABLE for this host until \
                     they are meshed.",
                    dr.meta.name,
                    listed(&unmeshed.into_iter().collect::<Vec<_>>(), ", "),
                ),
            );
        }
    }
}

fn duplicate_policies(cx: &Context, out: &mut Findings) {
    let root = &cx.snapshot.mesh.root_namespace;
    let mut namespaces: BTreeSet<&str> = cx.request.namespaces.iter().map(String::as_str).collect();
    namespaces.insert(root);
    for ns in namespaces
        .into_iter()
        .filter(|ns| ns == root || cx.checked(ns))
    {
        // Oldest first, as the index keeps them.
        let wide: Vec<&PeerAuthenticationInfo> = cx
            .peer_authentications_in(ns)
            .filter(|pa| !has_selector(pa))
            .collect();
        if wide.len() < 2 {
            continue;
        }
        let Some((winner, losers)) = wide.split_first() else {
            continue;
        };
        let scope = if ns == root {
            "mesh-wide"
        } else {
            "namespace-wide"
        };
        for pa in losers {
            out.add(
                Code::MR304,
                Code::MR304.default_severity(),
                "PeerAuthentication",
                &pa.meta,
                format!(
                    "PeerAuthentication {} is a second {scope} policy in {ns}: only the oldest, {}, takes \
                     effect, so this one's mode ({}) is ignored. Fix: merge it into {} and delete it \
                     (kubectl delete peerauthentication {} -n {ns}).",
                    pa.meta.name,
                    winner.meta.name,
                    pa.spec.mtls.as_ref().map_or(MtlsMode::Unset, |m| m.mode).as_str(),
                    winner.meta.name,
                    pa.meta.name,
                ),
            );
        }
    }
}

fn ineffective_port_level(cx: &Context, out: &mut Findings) {
    let namespaces: Vec<&str> = cx.request.namespaces.iter().map(String::as_str).collect();
    for pa in namespaces
        .into_iter()
        .filter(|ns| cx.checked(ns))
        .flat_map(|ns| cx.peer_authentications_in(ns))
    {
        if pa.spec.port_level_mtls.is_empty() {
            continue;
        }
        let ports: Vec<&String> = pa.spec.port_level_mtls.keys().collect();
        if !has_selector(pa) {
            out.add(
                Code::MR305,
                Code::MR305.default_severity(),
                "PeerAuthentication",
                &pa.meta,
                format!(
                    "PeerAuthentication {} sets portLevelMtls for port(s) {} without a selector; Istio \
                     applies portLevelMtls only to workload policies, so these settings do nothing. Fix: \
                     add spec.selector.matchLabels for the workload, or move the ports into a workload policy.",
                    pa.meta.name,
                    listed(&ports.iter().map(|p| p.as_str()).collect::<Vec<_>>(), ", "),
                ),
            );
            continue;
        }
        let selected: Vec<&Workload> = cx
            .workloads_in(&pa.meta.namespace)
            .map(|(_, w)| w)
            .filter(|w| selects(pa, &w.template.labels))
            .collect();
        let container_ports: BTreeSet<String> = selected
            .iter()
            .flat_map(|w| super::context::app_containers(w))
            .flat_map(|c| c.ports.iter().flatten())
            .map(|p| p.container_port.to_string())
            .collect();
        if selected.is_empty() || container_ports.is_empty() {
            continue;
        }
        let stray: Vec<&str> = ports
            .iter()
            .filter(|p| !container_ports.contains(p.as_str()))
            .map(|p| p.as_str())
            .collect();
        if stray.is_empty() {
            continue;
        }
        let hint = service_port_hint(cx, &selected, &stray);
        out.add(
            Code::MR305,
            Code::MR305.default_severity(),
            "PeerAuthentication",
            &pa.meta,
            format!(
                "PeerAuthentication {} sets portLevelMtls for port(s) {} that no selected container \
                 exposes (container ports: {}); portLevelMtls is keyed by container port, so these \
                 entries do nothing{hint}. Fix: key portLevelMtls by the container (target) port.",
                pa.meta.name,
                listed(&stray, ", "),
                listed(&container_ports.into_iter().collect::<Vec<_>>(), ", "),
            ),
        );
    }
}

/// ` (port 80 is a Service port; its target port is 8080)` when a stray key is a Service port.
fn service_port_hint(cx: &Context, selected: &[&Workload], stray: &[&str]) -> String {
    for w in selected {
        for svc in cx.services_selecting(w) {
            for port in &svc.ports {
                if stray.contains(&port.port.to_string().as_str()) {
                    let target = cx
                        .resolve_target(w, &port.target_port)
                        .map_or_else(|| port.target_port.to_string(), |t| t.number.to_string());
                    return format!(
                        " (port {} is Service {}'s port; its target port is {target})",
                        port.port, svc.meta.name
                    );
                }
            }
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use crate::checks::testing::{findings, objects};
    use crate::checks::{Code, Severity};

    const MESH_STRICT: &str = "
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
";

    fn deployment(ns: &str, name: &str, labels: &str) -> String {
        format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}{labels}}}}}\n    spec: {{containers: [{{name: app, image: app, ports: [{{containerPort: 8080}}]}}]}}\n"
        )
    }

    fn namespace(name: &str, labels: &str) -> String {
        format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n"
        )
    }

    #[test]
    fn mr301_error_for_same_namespace_plaintext_callers() {
        let yaml = [
            MESH_STRICT.to_string(),
            namespace("shop", "istio-injection: enabled"),
            deployment("shop", "web", ""),
            deployment("shop", "batch", ", sidecar.istio.io/inject: 'false'"),
        ]
        .concat();
        let f = findings(&yaml);
        let mr301: Vec<_> = f.iter().filter(|f| f.code == Code::MR301).collect();
        assert_eq!(mr301.len(), 1);
        assert_eq!(mr301[0].object.name, "web");
        assert_eq!(mr301[0].severity, Severity::Error);
        assert!(
            mr301[0]
                .message
                .contains("mesh-wide PeerAuthentication istio-system/default")
        );
    }

    #[test]
    fn mr301_warning_for_callers_in_non_injected_namespaces_only() {
        let yaml = [
            MESH_STRICT.to_string(),
            namespace("shop", "istio-injection: enabled"),
            namespace("legacy", ""),
            deployment("shop", "web", ""),
            deployment("legacy", "report", ""),
        ]
        .concat();
        let f = findings(&yaml);
        let web: Vec<_> = f.iter().filter(|f| f.code == Code::MR301).collect();
        assert_eq!(web.len(), 1);
        assert_eq!(
            (web[0].object.name.as_str(), web[0].severity),
            ("web", Severity::Warning)
        );
    }

    #[test]
    fn mr301_ambient_callers_speak_mtls() {
        let yaml = [
            MESH_STRICT.to_string(),
            namespace("shop", "istio-injection: enabled"),
            namespace("zt", "istio.io/dataplane-mode: ambient"),
            deployment("shop", "web", ""),
            deployment("zt", "client", ""),
        ]
        .concat();
        assert!(objects(&findings(&yaml), Code::MR301).is_empty());
    }

    #[test]
    fn mr301_silent_when_permissive_or_all_meshed() {
        let permissive = [
            namespace("shop", "istio-injection: enabled"),
            deployment("shop", "web", ""),
            deployment("shop", "batch", ", sidecar.istio.io/inject: 'false'"),
        ]
        .concat();
        assert!(objects(&findings(&permissive), Code::MR301).is_empty());
        let meshed = [
            MESH_STRICT.to_string(),
            namespace("shop", "istio-injection: enabled"),
            deployment("shop", "web", ""),
        ]
        .concat();
        assert!(objects(&findings(&meshed), Code::MR301).is_empty());
        // A namespace PERMISSIVE policy overrides the mesh's STRICT.
        let ns_permissive = format!(
            "{permissive}{MESH_STRICT}---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: p, namespace: shop}}\nspec: {{mtls: {{mode: PERMISSIVE}}}}\n"
        );
        assert!(objects(&findings(&ns_permissive), Code::MR301).is_empty());
    }

    fn dr(name: &str, host: &str, mode: &str) -> String {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{host: {host}, trafficPolicy: {{tls: {{mode: {mode}}}}}}}\n"
        )
    }

    fn service(ns: &str, name: &str) -> String {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{selector: {{app: {name}}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n"
        )
    }

    #[test]
    fn mr302_plaintext_tls_to_strict() {
        let base = [
            MESH_STRICT.to_string(),
            namespace("shop", "istio-injection: enabled"),
            deployment("shop", "web", ""),
            service("shop", "web"),
        ]
        .concat();
        let f = findings(&format!(
            "{base}{}{}",
            dr("plain", "web", "DISABLE"),
            dr("ok", "web.shop.svc.cluster.local", "ISTIO_MUTUAL")
        ));
        assert_eq!(objects(&f, Code::MR302), vec!["DestinationRule/plain"]);
        assert!(objects(&f, Code::MR303).is_empty());
        // Without STRICT, DISABLE is allowed.
        let permissive = base.replace("mode: STRICT", "mode: PERMISSIVE");
        assert!(
            objects(
                &findings(&format!("{permissive}{}", dr("plain", "web", "SIMPLE"))),
                Code::MR302
            )
            .is_empty()
        );
    }

    #[test]
    fn mr303_istio_mutual_to_pods_without_sidecar() {
        let base = [
            namespace("shop", "istio-injection: enabled"),
            deployment("shop", "db", ", sidecar.istio.io/inject: 'false'"),
            service("shop", "db"),
        ]
        .concat();
        let f = findings(&format!("{base}{}", dr("mutual", "db", "ISTIO_MUTUAL")));
        assert_eq!(objects(&f, Code::MR303), vec!["DestinationRule/mutual"]);
        let meshed = base.replace(", sidecar.istio.io/inject: 'false'", "");
        assert!(
            objects(
                &findings(&format!("{meshed}{}", dr("mutual", "db", "ISTIO_MUTUAL"))),
                Code::MR303
            )
            .is_empty()
        );
    }

    fn pa(ns: &str, name: &str, created: &str, extra: &str) -> String {
        format!(
            "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}, creationTimestamp: '{created}'}}\nspec: {{mtls: {{mode: STRICT}}{extra}}}\n"
        )
    }

    #[test]
    fn mr304_every_policy_beyond_the_oldest() {
        let yaml = [
            pa("shop", "newest", "2024-03-01T00:00:00Z", ""),
            pa("shop", "oldest", "2024-01-01T00:00:00Z", ""),
            pa("shop", "middle", "2024-02-01T00:00:00Z", ""),
            pa(
                "shop",
                "workload",
                "2023-01-01T00:00:00Z",
                ", selector: {matchLabels: {app: x}}",
            ),
            pa("istio-system", "mesh-a", "2024-01-01T00:00:00Z", ""),
            pa("istio-system", "mesh-b", "2024-01-02T00:00:00Z", ""),
            pa("other", "only", "2024-01-01T00:00:00Z", ""),
        ]
        .concat();
        let f = findings(&yaml);
        assert_eq!(
            objects(&f, Code::MR304),
            vec![
                "PeerAuthentication/mesh-b",
                "PeerAuthentication/middle",
                "PeerAuthentication/newest"
            ]
        );
    }

    #[test]
    fn mr305_port_level_without_selector_or_on_service_port() {
        let yaml = [
            namespace("shop", "istio-injection: enabled"),
            deployment("shop", "web", ""),
            service("shop", "web"),
            pa(
                "shop",
                "nosel",
                "2024-01-01T00:00:00Z",
                ", portLevelMtls: {8080: {mode: DISABLE}}",
            ),
            pa(
                "shop",
                "svcport",
                "2024-01-01T00:00:00Z",
                ", selector: {matchLabels: {app: web}}, portLevelMtls: {80: {mode: DISABLE}}",
            ),
            pa(
                "shop",
                "good",
                "2024-01-02T00:00:00Z",
                ", selector: {matchLabels: {app: web}}, portLevelMtls: {8080: {mode: DISABLE}}",
            ),
        ]
        .concat();
        let f = findings(&yaml);
        assert_eq!(
            objects(&f, Code::MR305),
            vec!["PeerAuthentication/nosel", "PeerAuthentication/svcport"]
        );
        let svcport = f.iter().find(|f| f.object.name == "svcport").unwrap();
        assert!(
            svcport.message.contains("target port is 8080"),
            "{}",
            svcport.message
        );
    }
}
