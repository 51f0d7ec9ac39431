//! Listeners (8xx): whether what the sidecar forwards inbound can reach the app at all.
//!
//! Since Istio 1.10 the sidecar forwards inbound traffic to the pod IP, not to 127.0.0.1, so an
//! app listening on loopback refuses it (MR801, the spec-side twin of Istio's LocalhostListener,
//! IST0143, which reads pod status). Traffic of UID 1337 is never captured (MR802, Istio's
//! InvalidApplicationUID, IST0144). The proxy owns a fixed set of ports (MR803). And a Service
//! port must reach a port its pods declare (MR804).

use crate::checks::listed;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use super::context::app_containers;
use super::lifecycle::{program, run_as_user};
use super::{Code, Context, Findings, Severity};
use crate::api::k8s::Container;
use crate::api::keys;
use crate::snapshot::{ServiceInfo, ServicePortInfo, TargetPort, Workload};

mod localhost;

/// Ports the sidecar listens on or redirects to (Istio's "Ports used by Istio").
const RESERVED_PROXY_PORTS: [i32; 9] = [
    15000, 15001, 15004, 15006, 15008, 15020, 15021, 15053, 15090,
];

/// The port the injected `istio-proxy` declares for Envoy's Prometheus stats.
const PROXY_DECLARED_PORT: (&str, i32) = ("http-envoy-prom", 15090);

pub(super) fn check(cx: &Context, out: &mut Findings) {
    for (i, w) in cx.workloads() {
        if !cx.template_meshed(i) {
            continue;
        }
        localhost::binds_localhost(cx, w, out);
        runs_as_proxy_uid(w, out);
        reserved_ports(w, out);
    }
    for svc in cx.services() {
        target_port_not_exposed(cx, svc, out);
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// MR802

/// MR802: an app container runs as UID 1337, its own `runAsUser` or the pod's. Unlike Istio's
/// IST0144, a pod-level 1337 that every app container overrides does not fire: then only init
/// containers run as 1337, which is MR501's workaround, not a problem.
fn runs_as_proxy_uid(w: &Workload, out: &mut Findings) {
    let spec = &w.template.spec;
    let pod_uid = spec.security_context.as_ref().and_then(|s| s.run_as_user);
    let concerned: Vec<&Container> = app_containers(w)
        .filter(|c| run_as_user(spec, c) == Some(keys::PROXY_UID))
        .collect();
    if concerned.is_empty() {
        return;
    }
    let from_pod = concerned.iter().any(|c| {
        c.security_context
            .as_ref()
            .and_then(|s| s.run_as_user)
            .is_none()
    });
    let names: Vec<&str> = concerned.iter().map(|c| c.name.as_str()).collect();
    let (subject, fix) = if from_pod && pod_uid == Some(keys::PROXY_UID) {
        (
            format!(
                "The pod's securityContext.runAsUser is {}, so container {} run{} as the proxy's UID",
                keys::PROXY_UID,
                listed(&names, ", "),
                if names.len() == 1 { "s" } else { "" }
            ),
            "set spec.securityContext.runAsUser (and any container runAsUser of 1337) to another UID, e.g. `securityContext: {runAsUser: 1000}`",
        )
    } else {
        (
            format!(
                "Container {} run{} as UID {}, the proxy's",
                listed(&names, ", "),
                if names.len() == 1 { "s" } else { "" },
                keys::PROXY_UID
            ),
            "set the container's securityContext.runAsUser to another UID, e.g. `securityContext: {runAsUser: 1000}`",
        )
    };
    out.add(
        Code::MR802,
        Severity::Warning,
        &w.kind,
        &w.meta,
        format!(
            "{subject}: the sidecar's redirection exempts that UID, so its outbound traffic bypasses the proxy (no mTLS, routing or telemetry) and fails against STRICT servers. Fix: {fix}."
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// MR803

/// MR803: an app container declares a port the sidecar owns.
fn reserved_ports(w: &Workload, out: &mut Findings) {
    let clashes: Vec<String> = app_containers(w)
        .flat_map(|c| {
            c.ports
                .iter()
                .flatten()
                .filter(|p| RESERVED_PROXY_PORTS.contains(&p.container_port))
                .map(move |p| format!("{}:{}", c.name, p.container_port))
        })
        .collect();
    if clashes.is_empty() {
        return;
    }
    out.add(
        Code::MR803,
        Severity::Error,
        &w.kind,
        &w.meta,
        format!(
            "Container port {} {} one the istio-proxy sidecar owns (15000, 15001, 15004, 15006, 15008, 15020, 15021, 15053, 15090), so the app and the proxy clash: either cannot bind it, or traffic meant for one reaches the other. \
             Fix: move the app to a port outside 15000-15090 and point its Services' targetPort there.",
            listed(&clashes, ", "),
            if clashes.len() == 1 { "is" } else { "are" },
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// MR804

/// Whether a workload's pods declare the port a Service port targets, as Kubernetes resolves it:
/// a name (and protocol) among the container ports of its containers and sidecar init
/// containers. A numeric targetPort that no container declares also fires: Kubernetes sends to
/// it regardless, but nothing says the app listens there, it is most often a typo (503 UF,
/// connection refused), and Istio's per-port settings (`portLevelMtls`, capture exclusions) are
/// keyed by declared container ports. The injected proxy's own stats port counts as declared
/// for workloads that get a sidecar.
fn exposes(w: &Workload, port: &ServicePortInfo, meshed: bool) -> bool {
    fn protocol(p: Option<&String>) -> &str {
        p.map_or("TCP", String::as_str)
    }
    let wanted = port.transport.as_str();
    let spec = &w.template.spec;
    let declared = spec.containers.iter().chain(
        spec.init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always")),
    );
    let found = declared
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| protocol(p.protocol.as_ref()).eq_ignore_ascii_case(wanted))
        .any(|p| match &port.target_port {
            TargetPort::Number(n) => p.container_port == *n,
            TargetPort::Name(name) => p.name.as_deref() == Some(name.as_str()),
        });
    found
        || (meshed
            && wanted.eq_ignore_ascii_case("TCP")
            && match &port.target_port {
                TargetPort::Number(n) => *n == PROXY_DECLARED_PORT.1,
                TargetPort::Name(name) => name == PROXY_DECLARED_PORT.0,
            })
}

/// MR804: a Service port whose targetPort no selected workload declares. Workloads whose pod
/// spec the snapshot does not hold are left out; a Service selecting nothing is not this check's
/// business. One selected workload missing the port is enough, as its pods get the traffic too.
fn target_port_not_exposed(cx: &Context, svc: &ServiceInfo, out: &mut Findings) {
    if svc.selector.is_none() || svc.type_ == "ExternalName" {
        return;
    }
    let selected: Vec<(usize, &Workload)> = cx
        .selected_by(svc)
        .into_iter()
        .filter(|(_, w)| w.has_template && !w.template.spec.containers.is_empty())
        .collect();
    if selected.is_empty() {
        return;
    }
    let mut problems = Vec::new();
    let (mut named, mut numeric) = (false, false);
    for port in &svc.ports {
        let missing: Vec<String> = selected
            .iter()
            .filter(|(i, w)| !exposes(w, port, cx.template_meshed(*i)))
            .map(|(_, w)| format!("{}/{}", w.kind, w.meta.name))
            .collect();
        if missing.is_empty() {
            continue;
        }
        named |= matches!(port.target_port, TargetPort::Name(_));
        numeric |= matches!(port.target_port, TargetPort::Number(_));
        let label = port
            .name
            .as_ref()
            .map_or_else(|| port.port.to_string(), |n| format!("{n} ({})", port.port));
        problems.push(format!(
            "port {label} targets {} {}, which {} do{} not declare",
            match port.target_port {
                TargetPort::Number(_) => "port",
                TargetPort::Name(_) => "the port named",
            },
            port.target_port,
            listed(&missing, ", "),
            if missing.len() == 1 { "es" } else { "" },
        ));
    }
    if problems.is_empty() {
        return;
    }
    let declared: BTreeSet<String> = selected
        .iter()
        .flat_map(|(_, w)| app_containers(w))
        .flat_map(|c| c.ports.iter().flatten())
        .map(|p| match &p.name {
            Some(name) => format!("{name} ({})", p.container_port),
            None => p.container_port.to_string(),
        })
        .collect();
    const BY_NAME: &str = "a named targetPort resolves only through a container port of that name, so those pods get no endpoints (503, no healthy upstream)";
    const BY_NUMBER: &str = "nothing declares that the app listens on that number, which is most often a typo (503 UF, connection refused) and leaves Istio's per-port settings such as portLevelMtls without a port to apply to";
    let consequence = match (named, numeric) {
        (true, true) => format!("{BY_NAME}; {BY_NUMBER}"),
        (true, false) => BY_NAME.to_string(),
        _ => BY_NUMBER.to_string(),
    };
    let available = if declared.is_empty() {
        "the pods declare no container ports".to_string()
    } else {
        format!(
            "declared: {}",
            listed(&declared.into_iter().collect::<Vec<_>>(), ", ")
        )
    };
    out.add(
        Code::MR804,
        Severity::Warning,
        "Service",
        &svc.meta,
        format!(
            "{}; {consequence}. Fix: set targetPort to a container port the pods declare ({available}), or add the port to the container's `ports` list.",
            capitalised(&listed(&problems, "; ")),
        ),
    );
}

#[cfg(test)]
pub(super) mod tests {
    use crate::checks::Code;
    use crate::checks::testing::{findings, fixtures, objects, of};

    /// A Deployment `web` whose one container has `fields`, selected by a Service targeting
    /// `target` (`8080`, or a port name).
    pub(crate) fn app(fields: &str, target: &str) -> String {
        format!(
            r#"
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: {target}}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: app
        image: web:1
{fields}
"#
        )
    }

    const UID_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: uid, namespace: shop}
spec:
  securityContext: {runAsUser: 1337}
  containers:
  - {name: app, image: web:1}
"#;

    #[test]
    fn pod_or_container_uid_1337_fires() {
        let f = findings(UID_POD);
        assert_eq!(objects(&f, Code::MR802), ["Pod/uid"]);
        assert!(
            of(&f, Code::MR802)[0]
                .message
                .contains("The pod's securityContext.runAsUser is 1337")
        );
        let container = UID_POD
            .replace("  securityContext: {runAsUser: 1337}\n", "")
            .replace(
                "{name: app, image: web:1}",
                "{name: app, image: web:1, securityContext: {runAsUser: 1337}}",
            );
        let f = findings(&container);
        assert_eq!(objects(&f, Code::MR802), ["Pod/uid"]);
        assert!(
            of(&f, Code::MR802)[0]
                .message
                .starts_with("Container app runs as UID 1337")
        );
    }

    #[test]
    fn overridden_pod_uid_init_containers_and_the_proxy_do_not_fire() {
        let overridden = UID_POD.replace(
            "{name: app, image: web:1}",
            "{name: app, image: web:1, securityContext: {runAsUser: 1000}}",
        );
        assert!(objects(&findings(&overridden), Code::MR802).is_empty());
        let init_only = r#"
apiVersion: v1
kind: Pod
metadata: {name: uid, namespace: shop}
spec:
  initContainers:
  - {name: migrate, image: flyway/flyway, securityContext: {runAsUser: 1337}}
  containers:
  - {name: app, image: web:1}
  - {name: istio-proxy, image: istio/proxyv2, securityContext: {runAsUser: 1337}}
"#;
        assert!(objects(&findings(init_only), Code::MR802).is_empty());
        let opted_out = UID_POD.replace(
            "metadata: {name: uid, namespace: shop}",
            "metadata: {name: uid, namespace: shop, labels: {sidecar.istio.io/inject: \"false\"}}",
        );
        assert!(objects(&findings(&opted_out), Code::MR802).is_empty());
    }

    #[test]
    fn istio_uid_fixtures_fire() {
        let Some(dir) = fixtures() else { return };
        for (file, object) in [
            ("pod-sec-uid.yaml", "Pod/pod-sec-uid"),
            ("pod-con-sec-uid.yaml", "Pod/con-sec-uid"),
            (
                "deployment-pod-sec-uid.yaml",
                "Deployment/deploy-pod-sec-uid",
            ),
            (
                "deployment-con-sec-uid.yaml",
                "Deployment/deploy-con-sec-uid",
            ),
        ] {
            let yaml = std::fs::read_to_string(dir.join("istio-analyzer-testdata").join(file))
                .expect("fixture reads");
            assert_eq!(objects(&findings(&yaml), Code::MR802), [object], "{file}");
        }
    }

    #[test]
    fn realworld_fixtures_bind_no_loopback_and_expose_their_target_ports() {
        let Some(dir) = fixtures() else { return };
        let mut yaml = String::new();
        for file in [
            "realworld/bookinfo/bookinfo.yaml",
            "realworld/online-boutique/kubernetes-manifests.yaml",
            "realworld/podinfo-kustomize/deployment.yaml",
            "realworld/podinfo-kustomize/service.yaml",
            "realworld/podinfo-webapp/common/namespace.yaml",
            "realworld/podinfo-webapp/backend/deployment.yaml",
            "realworld/podinfo-webapp/backend/service.yaml",
            "realworld/podinfo-webapp/frontend/deployment.yaml",
            "realworld/podinfo-webapp/frontend/service.yaml",
        ] {
            yaml.push_str(&std::fs::read_to_string(dir.join(file)).expect("fixture reads"));
            yaml.push_str("\n---\n");
        }
        let f = findings(&yaml);
        for code in [Code::MR801, Code::MR802, Code::MR803, Code::MR804] {
            assert!(objects(&f, code).is_empty(), "{code}: {:?}", of(&f, code));
        }
    }

    #[test]
    fn reserved_proxy_ports_fire() {
        let f = findings(&app(
            "        ports: [{containerPort: 8080}, {name: admin, containerPort: 15000}, {containerPort: 15090}]",
            "8080",
        ));
        assert_eq!(objects(&f, Code::MR803), ["Deployment/web"]);
        assert!(
            of(&f, Code::MR803)[0]
                .message
                .starts_with("Container port app:15000, app:15090 are")
        );
        let f = findings(&app(
            "        ports: [{containerPort: 8080}, {containerPort: 15010}]",
            "8080",
        ));
        assert!(objects(&f, Code::MR803).is_empty());
        // The injected proxy's own ports in a live pod's spec are not the app's.
        let injected = r#"
apiVersion: v1
kind: Pod
metadata: {name: injected, namespace: shop}
spec:
  containers:
  - {name: app, image: web:1, ports: [{containerPort: 8080}]}
  - {name: istio-proxy, image: istio/proxyv2, ports: [{name: http-envoy-prom, containerPort: 15090}]}
"#;
        assert!(objects(&findings(injected), Code::MR803).is_empty());
    }

    #[test]
    fn target_ports_no_container_declares_fire_on_the_service() {
        let f = findings(&app(
            "        ports: [{name: http, containerPort: 8080}]",
            "8081",
        ));
        assert_eq!(objects(&f, Code::MR804), ["Service/web"]);
        let message = &of(&f, Code::MR804)[0].message;
        assert!(
            message.contains(
                "Port http (80) targets port 8081, which Deployment/web does not declare"
            ),
            "{message}"
        );
        assert!(message.contains("declared: http (8080)"), "{message}");
        let f = findings(&app(
            "        ports: [{name: web, containerPort: 8080}]",
            "http",
        ));
        assert_eq!(objects(&f, Code::MR804), ["Service/web"]);
        assert!(of(&f, Code::MR804)[0].message.contains("no endpoints"));
        // Undeclared numeric target port: still reported (see `exposes`).
        let f = findings(&app("        args: [--port=8080]", "8080"));
        assert_eq!(objects(&f, Code::MR804), ["Service/web"]);
        assert!(
            of(&f, Code::MR804)[0]
                .message
                .contains("the pods declare no container ports")
        );
    }

    #[test]
    fn declared_target_ports_do_not_fire() {
        let f = findings(&app(
            "        ports: [{name: http, containerPort: 8080}]",
            "8080",
        ));
        assert!(objects(&f, Code::MR804).is_empty());
        let f = findings(&app(
            "        ports: [{name: http, containerPort: 8080}]",
            "http",
        ));
        assert!(objects(&f, Code::MR804).is_empty());
        // The proxy's stats port, on a workload that gets a sidecar.
        let f = findings(&app(
            "        ports: [{name: http, containerPort: 8080}]",
            "http-envoy-prom",
        ));
        assert!(objects(&f, Code::MR804).is_empty());
    }

    #[test]
    fn services_selecting_nothing_external_or_selectorless_are_skipped() {
        let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: orphan, namespace: shop}
spec:
  selector: {app: nothing}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: external, namespace: shop}
spec:
  type: ExternalName
  externalName: example.com
  selector: {app: web}
  ports: [{port: 80, targetPort: 9999}]
---
apiVersion: v1
kind: Service
metadata: {name: manual, namespace: shop}
spec:
  ports: [{port: 80, targetPort: 9999}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: app, image: web:1, ports: [{containerPort: 8080}]}]
"#;
        assert!(objects(&findings(yaml), Code::MR804).is_empty());
    }

    #[test]
    fn one_selected_workload_missing_the_port_is_named() {
        let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080, targetPort: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews, version: v1}}
  template:
    metadata: {labels: {app: reviews, version: v1}}
    spec:
      containers: [{name: app, image: r:1, ports: [{name: http, containerPort: 9080}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v2, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews, version: v2}}
  template:
    metadata: {labels: {app: reviews, version: v2}}
    spec:
      containers: [{name: app, image: r:2, ports: [{name: web, containerPort: 9080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: shop}
spec:
  selector: {app: dns}
  ports: [{name: dns, port: 53, protocol: UDP, targetPort: 53}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: dns, namespace: shop}
spec:
  selector: {matchLabels: {app: dns}}
  template:
    metadata: {labels: {app: dns}}
    spec:
      containers: [{name: dns, image: dns:1, ports: [{name: dns-tcp, containerPort: 53}]}]
"#;
        let f = findings(yaml);
        let mut services = objects(&f, Code::MR804);
        services.sort();
        assert_eq!(services, ["Service/dns", "Service/reviews"]);
        let reviews = of(&f, Code::MR804)
            .into_iter()
            .find(|x| x.object.name == "reviews")
            .map(|x| x.message.clone())
            .unwrap_or_default();
        assert!(
            reviews.contains("which Deployment/reviews-v2 does not declare"),
            "{reviews}"
        );
        assert!(!reviews.contains("reviews-v1 does"), "{reviews}");
    }
}
