//! Probes (4xx): what the sidecar does to kubelet's probes, and pod annotations Istio never sees.
//!
//! Istio's injector rewrites httpGet, tcpSocket and gRPC probes (liveness, readiness, startup) of
//! every container so that kubelet asks the agent on the status port (15020), which then probes
//! the app from inside the pod (`pkg/kube/inject/app_probe.go`, `convertAppProber`; tcpSocket
//! probes since Istio 1.11, istio/istio#33734). Probes on ports excluded from inbound capture are
//! left alone, as they reach the app directly. When the rewrite is off, an httpGet or gRPC probe
//! meets the sidecar's inbound listener like any other caller (MR401 on STRICT ports), and a
//! tcpSocket probe is accepted by the sidecar whether or not the app listens (MR402).

use crate::checks::listed;
use std::collections::BTreeSet;

use super::context::app_containers;
use super::{Code, Context, Findings, Severity};
use crate::api::k8s::{Container, IntOrString, Probe};
use crate::api::keys;
use crate::istio::mtls::{Effective, Scope};
use crate::istio::sidecar;
use crate::snapshot::Workload;

/// Kinds whose pods come from a pod template in the object's own spec.
const TEMPLATED_KINDS: [&str; 6] = [
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
];

pub(super) fn check(cx: &Context, out: &mut Findings) {
    for (i, w) in cx.workloads() {
        misplaced_annotations(w, out);
        if !cx.template_meshed(i) || cx.probes_rewritten(w) {
            continue;
        }
        strict_probes(cx, w, out);
        tcp_probes(w, out);
    }
}

/// Where the pod template's annotations live in a workload of `kind`.
pub(super) fn template_annotations_path(kind: &str) -> &'static str {
    match kind {
        "Pod" => "metadata.annotations",
        "CronJob" => "spec.jobTemplate.spec.template.metadata.annotations",
        _ => "spec.template.metadata.annotations",
    }
}

/// One probe of one container, with the port kubelet will connect to.
struct ProbeOnPort<'a> {
    container: &'a str,
    /// `liveness`, `readiness` or `startup`.
    role: &'static str,
    /// `httpGet`, `grpc` or `tcpSocket`.
    action: &'static str,
    port: i32,
}

impl ProbeOnPort<'_> {
    fn role_and_action(&self) -> String {
        format!("{} {}", self.role, self.action)
    }

    fn describe(&self) -> String {
        format!(
            "{} probe of container {} (port {})",
            self.role_and_action(),
            self.container,
            self.port
        )
    }
}

/// A probe port as kubelet resolves it: a number, or the name of one of the container's ports.
fn resolve_port(container: &Container, port: &IntOrString) -> Option<i32> {
    match port {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .or_else(|| name.parse().ok()),
    }
}

/// A probe with an explicit `host` goes to that host, not through the pod's network namespace.
fn targets_pod(host: Option<&String>) -> bool {
    host.is_none_or(|h| h.trim().is_empty())
}

/// The network probes of the workload's app containers that kubelet sends into the pod, on ports
/// the sidecar captures.
fn captured_probes(w: &Workload) -> Vec<ProbeOnPort<'_>> {
    let mut found = Vec::new();
    for c in app_containers(w) {
        let probes: [(&'static str, Option<&Probe>); 3] = [
            ("liveness", c.liveness_probe.as_ref()),
            ("readiness", c.readiness_probe.as_ref()),
            ("startup", c.startup_probe.as_ref()),
        ];
        for (role, probe) in probes {
            let Some(probe) = probe else { continue };
            let target = if let Some(http) = &probe.http_get {
                targets_pod(http.host.as_ref())
                    .then(|| resolve_port(c, &http.port))
                    .flatten()
                    .map(|port| ("httpGet", port))
            } else if let Some(grpc) = &probe.grpc {
                Some(("grpc", grpc.port))
            } else if let Some(tcp) = &probe.tcp_socket {
                targets_pod(tcp.host.as_ref())
                    .then(|| resolve_port(c, &tcp.port))
                    .flatten()
                    .map(|port| ("tcpSocket", port))
            } else {
                None
            };
            let Some((action, port)) = target else {
                continue;
            };
            // Never-captured ports (`sidecar::NEVER_CAPTURED_INBOUND`) include the agent's status
            // port: a probe there is one Istio already rewrote (a live pod's spec).
            if !sidecar::inbound_captured(&w.template, port) {
                continue;
            }
            found.push(ProbeOnPort {
                container: &c.name,
                role,
                action,
                port,
            });
        }
    }
    found
}

/// The first half of every probe fix: turn the rewrite back on.
fn rewrite_fix(w: &Workload) -> String {
    let path = template_annotations_path(&w.kind);
    match w.template.annotations.get(keys::REWRITE_APP_HTTP_PROBERS) {
        Some(value) => format!(
            "remove `{}: \"{value}\"` from {path} (or set it to \"true\")",
            keys::REWRITE_APP_HTTP_PROBERS
        ),
        None => format!(
            "set `{}: \"true\"` in {path} (the injector's sidecarInjectorWebhook.rewriteAppHTTPProbe is false)",
            keys::REWRITE_APP_HTTP_PROBERS
        ),
    }
}

fn port_list(ports: &BTreeSet<i32>) -> String {
    ports
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn strict_source(effective: &Effective) -> String {
    match (&effective.policy, effective.scope) {
        (Some(policy), Scope::Port) => format!("portLevelMtls of PeerAuthentication {policy}"),
        (Some(policy), _) => format!("PeerAuthentication {policy}"),
        (None, _) => "the mesh default".to_string(),
    }
}

/// MR401: an httpGet or gRPC probe, not rewritten, on a captured STRICT port.
fn strict_probes(cx: &Context, w: &Workload, out: &mut Findings) {
    let mut described = Vec::new();
    let mut ports = BTreeSet::new();
    for probe in captured_probes(w) {
        if probe.action == "tcpSocket" {
            continue;
        }
        let effective = cx
            .mtls
            .effective(&w.meta.namespace, &w.template.labels, Some(probe.port));
        if !effective.is_strict() {
            continue;
        }
        described.push(format!(
            "{} probe of container {} (port {}, STRICT by {})",
            probe.role_and_action(),
            probe.container,
            probe.port,
            strict_source(&effective)
        ));
        ports.insert(probe.port);
    }
    if described.is_empty() {
        return;
    }
    let ports = port_list(&ports);
    let path = template_annotations_path(&w.kind);
    out.add(
        Code::MR401,
        Severity::Error,
        &w.kind,
        &w.meta,
        format!(
            "Probe rewrite is off, so kubelet, which has no mesh certificate, sends these probes straight to the sidecar's STRICT mTLS and they fail: the pods never become Ready, or are restarted ({}). \
             Fix: {}; or exclude the port from capture with `{}: \"{ports}\"` in {path}; or make the port PERMISSIVE with a workload PeerAuthentication `portLevelMtls` entry.",
            listed(&described, "; "),
            rewrite_fix(w),
            keys::EXCLUDE_INBOUND_PORTS,
        ),
    );
}

/// MR402: a tcpSocket probe, not rewritten, on a captured port.
fn tcp_probes(w: &Workload, out: &mut Findings) {
    let probes: Vec<ProbeOnPort> = captured_probes(w)
        .into_iter()
        .filter(|p| p.action == "tcpSocket")
        .collect();
    if probes.is_empty() {
        return;
    }
    let described: Vec<String> = probes.iter().map(ProbeOnPort::describe).collect();
    let ports: BTreeSet<i32> = probes.iter().map(|p| p.port).collect();
    out.add(
        Code::MR402,
        Severity::Warning,
        &w.kind,
        &w.meta,
        format!(
            "Probe rewrite is off, so the sidecar itself accepts kubelet's connection whether or not the app listens: these probes can no longer fail, and a dead app keeps receiving traffic (503 UF) and is never restarted ({}). \
             Fix: {}, so Istio hands tcpSocket probes to its agent; or exclude the port from capture with `{}: \"{}\"` in {}.",
            listed(&described, "; "),
            rewrite_fix(w),
            keys::EXCLUDE_INBOUND_PORTS,
            port_list(&ports),
            template_annotations_path(&w.kind),
        ),
    );
}

fn is_pod_annotation(key: &str) -> bool {
    keys::POD_ANNOTATION_PREFIXES
        .iter()
        .any(|prefix| key.starts_with(prefix))
}

/// MR403: pod-level Istio annotations on the workload object, where neither the injector nor the
/// proxy reads them. Labels are not looked at (`sidecar.istio.io/inject` is a label by design).
/// An annotation the template also carries with the same value loses nothing, so it is skipped.
fn misplaced_annotations(w: &Workload, out: &mut Findings) {
    if !TEMPLATED_KINDS.contains(&w.kind.as_str()) {
        return;
    }
    let misplaced: Vec<(&String, &String)> = w
        .meta
        .annotations
        .iter()
        .filter(|(key, _)| is_pod_annotation(key))
        .filter(|(key, value)| w.template.annotations.get(*key) != Some(*value))
        .collect();
    if misplaced.is_empty() {
        return;
    }
    let names: Vec<&str> = misplaced.iter().map(|(k, _)| k.as_str()).collect();
    let yaml: Vec<String> = misplaced
        .iter()
        .map(|(k, v)| format!("{k}: {}", serde_json::Value::String((*v).clone())))
        .collect();
    let removals: Vec<String> = names.iter().map(|k| format!("{k}-")).collect();
    let (subject, it, has) = if names.len() == 1 {
        (format!("The pod annotation {} sits", names[0]), "it", "has")
    } else {
        (
            format!("The pod annotations {} sit", listed(&names, ", ")),
            "them",
            "have",
        )
    };
    out.add(
        Code::MR403,
        Severity::Warning,
        &w.kind,
        &w.meta,
        format!(
            "{subject} on the {kind}'s own metadata, where Istio never reads {it}: only the pod template's annotations reach the pods, so {it} {has} no effect. \
             Fix: move {it} under {path} (`{yaml}`) and remove {it} from the {kind} (`kubectl annotate {lower} {name} -n {ns} {removals}`).",
            kind = w.kind,
            path = template_annotations_path(&w.kind),
            yaml = yaml.join(", "),
            lower = w.kind.to_ascii_lowercase(),
            name = w.meta.name,
            ns = w.meta.namespace,
            removals = removals.join(" "),
        ),
    );
}

#[cfg(test)]
mod tests {
    use crate::checks::Code;
    use crate::checks::testing::{findings, fixtures, objects, of, run_all, snapshot_with};
    use crate::snapshot::BuildOptions;

    const STRICT_NS: &str = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: shop}
spec:
  mtls: {mode: STRICT}
"#;

    fn deployment(annotations: &str, container: &str) -> String {
        format!(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata:
      labels: {{app: web}}
      annotations: {annotations}
    spec:
      containers:
{container}
"#
        )
    }

    const HTTP_PROBE: &str = r#"
      - name: app
        image: web:1
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /ready, port: http}}
        livenessProbe: {grpc: {port: 9090}}
"#;

    const REWRITE_OFF: &str = r#"{"sidecar.istio.io/rewriteAppHTTPProbers": "false"}"#;

    #[test]
    fn http_and_grpc_probes_on_strict_ports_fire_when_not_rewritten() {
        let f = findings(&format!(
            "{STRICT_NS}---{}",
            deployment(REWRITE_OFF, HTTP_PROBE)
        ));
        assert_eq!(objects(&f, Code::MR401), ["Deployment/web"]);
        let message = &of(&f, Code::MR401)[0].message;
        assert!(message.contains("readiness httpGet probe of container app (port 8080, STRICT by PeerAuthentication shop/default)"));
        assert!(message.contains("liveness grpc probe of container app (port 9090, STRICT"));
        assert!(message.contains("PeerAuthentication shop/default"));
        assert!(
            message.contains("Fix: remove `sidecar.istio.io/rewriteAppHTTPProbers: \"false\"`")
        );
        assert!(message.contains("\"8080,9090\""), "{message}");
    }

    #[test]
    fn rewritten_permissive_or_excluded_probes_do_not_fire() {
        // Rewrite on (the default): kubelet asks the agent.
        let f = findings(&format!("{STRICT_NS}---{}", deployment("{}", HTTP_PROBE)));
        assert!(objects(&f, Code::MR401).is_empty());
        // Rewrite off but no STRICT policy: PERMISSIVE accepts plaintext.
        let f = findings(&deployment(REWRITE_OFF, HTTP_PROBE));
        assert!(objects(&f, Code::MR401).is_empty());
        // Rewrite off, STRICT, but both ports excluded from capture.
        let excluded = r#"{"sidecar.istio.io/rewriteAppHTTPProbers": "false", "traffic.sidecar.istio.io/excludeInboundPorts": "8080,9090"}"#;
        let f = findings(&format!(
            "{STRICT_NS}---{}",
            deployment(excluded, HTTP_PROBE)
        ));
        assert!(objects(&f, Code::MR401).is_empty());
    }

    #[test]
    fn permissive_port_level_mtls_clears_the_probe_port() {
        let pa = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  mtls: {mode: STRICT}
  portLevelMtls:
    8080: {mode: PERMISSIVE}
"#;
        let probe = r#"
      - name: app
        image: web:1
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /ready, port: http}}
"#;
        let f = findings(&format!("{pa}---{}", deployment(REWRITE_OFF, probe)));
        assert!(objects(&f, Code::MR401).is_empty());
    }

    /// The snapshot with the injector's `sidecarInjectorWebhook.rewriteAppHTTPProbe: false`.
    fn rewrite_off_by_injector(yaml: &str) -> Vec<crate::checks::Finding> {
        let mut snapshot = snapshot_with(yaml, &BuildOptions::default());
        snapshot
            .injector
            .sidecar_injector_webhook
            .rewrite_app_http_probe = Some(false);
        run_all(&snapshot)
    }

    #[test]
    fn injector_values_turning_rewrite_off_fire_with_the_injector_fix() {
        let f = rewrite_off_by_injector(&format!("{STRICT_NS}---{}", deployment("{}", HTTP_PROBE)));
        assert_eq!(objects(&f, Code::MR401), ["Deployment/web"]);
        assert!(
            of(&f, Code::MR401)[0]
                .message
                .contains("rewriteAppHTTPProbe is false")
        );
        // The pod annotation wins over the injector.
        let on = r#"{"sidecar.istio.io/rewriteAppHTTPProbers": "true"}"#;
        let f = rewrite_off_by_injector(&format!("{STRICT_NS}---{}", deployment(on, HTTP_PROBE)));
        assert!(objects(&f, Code::MR401).is_empty());
    }

    #[test]
    fn injector_config_map_turns_rewrite_off() {
        let injector = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: istio-sidecar-injector, namespace: istio-system}
data:
  values: '{"sidecarInjectorWebhook":{"rewriteAppHTTPProbe":false}}'
"#;
        let f = findings(&format!(
            "{injector}---{STRICT_NS}---{}",
            deployment("{}", HTTP_PROBE)
        ));
        assert_eq!(objects(&f, Code::MR401), ["Deployment/web"]);
    }

    #[test]
    fn probes_with_an_explicit_host_or_on_proxy_ports_do_not_fire() {
        let probe = r#"
      - name: app
        image: web:1
        readinessProbe: {httpGet: {path: /ready, port: 8080, host: 10.0.0.1}}
        livenessProbe: {httpGet: {path: /app-health/app/livez, port: 15020}}
"#;
        let f = findings(&format!("{STRICT_NS}---{}", deployment(REWRITE_OFF, probe)));
        assert!(objects(&f, Code::MR401).is_empty());
    }

    #[test]
    fn opted_out_workloads_are_not_checked() {
        let yaml = format!("{STRICT_NS}---{}", deployment(REWRITE_OFF, HTTP_PROBE)).replace(
            "labels: {app: web}",
            "labels: {app: web, sidecar.istio.io/inject: \"false\"}",
        );
        let f = findings(&yaml);
        assert!(objects(&f, Code::MR401).is_empty());
    }

    const TCP_PROBE: &str = r#"
      - name: redis
        image: redis:7
        ports: [{name: redis, containerPort: 6379}]
        readinessProbe: {tcpSocket: {port: redis}}
        livenessProbe: {tcpSocket: {port: 6379}}
"#;

    #[test]
    fn tcp_probe_fires_only_when_not_rewritten() {
        let f = findings(&deployment(REWRITE_OFF, TCP_PROBE));
        assert_eq!(objects(&f, Code::MR402), ["Deployment/web"]);
        let message = &of(&f, Code::MR402)[0].message;
        assert!(message.contains("readiness tcpSocket probe of container redis (port 6379)"));
        assert!(message.contains("liveness tcpSocket probe"));
        // A tcpSocket probe is never an MR401, even on a STRICT port.
        let f = findings(&format!(
            "{STRICT_NS}---{}",
            deployment(REWRITE_OFF, TCP_PROBE)
        ));
        assert!(objects(&f, Code::MR401).is_empty());
        assert_eq!(objects(&f, Code::MR402), ["Deployment/web"]);
        // Istio rewrites tcpSocket probes when the rewrite is on.
        let f = findings(&deployment("{}", TCP_PROBE));
        assert!(objects(&f, Code::MR402).is_empty());
    }

    #[test]
    fn tcp_probe_on_an_uncaptured_port_does_not_fire() {
        let excluded = r#"{"sidecar.istio.io/rewriteAppHTTPProbers": "false", "traffic.sidecar.istio.io/excludeInboundPorts": "6379"}"#;
        let f = findings(&deployment(excluded, TCP_PROBE));
        assert!(objects(&f, Code::MR402).is_empty());
        let included = r#"{"sidecar.istio.io/rewriteAppHTTPProbers": "false", "traffic.sidecar.istio.io/includeInboundPorts": "8080"}"#;
        let f = findings(&deployment(included, TCP_PROBE));
        assert!(objects(&f, Code::MR402).is_empty());
    }

    #[test]
    fn tcp_probe_in_a_pod_without_sidecar_does_not_fire() {
        let yaml = deployment(REWRITE_OFF, TCP_PROBE).replace(
            "    spec:\n      containers:",
            "    spec:\n      hostNetwork: true\n      containers:",
        );
        let f = findings(&yaml);
        assert!(objects(&f, Code::MR402).is_empty());
    }

    const MISPLACED: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {sidecar.istio.io/inject: "true"}
  annotations:
    sidecar.istio.io/proxyCPU: 500m
    proxy.istio.io/config: '{"holdApplicationUntilProxyStarts": true}'
    traffic.sidecar.istio.io/excludeOutboundPorts: "5432"
    deployment.kubernetes.io/revision: "3"
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers: [{name: app, image: web:1}]
"#;

    #[test]
    fn pod_annotations_on_the_workload_fire() {
        let f = findings(MISPLACED);
        assert_eq!(objects(&f, Code::MR403), ["Deployment/web"]);
        let message = &of(&f, Code::MR403)[0].message;
        assert!(message.contains("sidecar.istio.io/proxyCPU"));
        assert!(message.contains("proxy.istio.io/config"));
        assert!(message.contains("traffic.sidecar.istio.io/excludeOutboundPorts"));
        assert!(!message.contains("deployment.kubernetes.io"));
        assert!(message.contains("spec.template.metadata.annotations"));
        assert!(message.contains("kubectl annotate deployment web -n shop"));
    }

    #[test]
    fn cron_job_points_at_its_job_template() {
        let yaml = r#"
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
  annotations: {sidecar.istio.io/inject: "false"}
spec:
  schedule: "0 0 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: job, image: job:1}]
"#;
        let f = findings(yaml);
        assert_eq!(objects(&f, Code::MR403), ["CronJob/nightly"]);
        assert!(
            of(&f, Code::MR403)[0]
                .message
                .contains("spec.jobTemplate.spec.template.metadata.annotations")
        );
    }

    #[test]
    fn annotations_on_the_template_or_bare_pods_or_labels_do_not_fire() {
        let in_template = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {sidecar.istio.io/inject: "true"}
  annotations: {prometheus.io/scrape: "true", sidecar.istio.io/proxyCPU: 500m}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web, sidecar.istio.io/inject: "true"}
      annotations: {sidecar.istio.io/proxyCPU: 500m}
    spec:
      containers: [{name: app, image: web:1}]
---
apiVersion: v1
kind: Pod
metadata:
  name: bare
  annotations: {sidecar.istio.io/proxyCPU: 500m}
spec:
  containers: [{name: app, image: web:1}]
"#;
        let f = findings(in_template);
        assert!(objects(&f, Code::MR403).is_empty());
    }

    #[test]
    fn istio_misannotated_fixture_flags_only_the_deployment() {
        let Some(dir) = fixtures() else { return };
        let yaml = std::fs::read_to_string(dir.join("istio-analyzer-testdata/misannotated.yaml"))
            .expect("fixture reads");
        let f = findings(&yaml);
        assert_eq!(objects(&f, Code::MR403), ["Deployment/fortio-deploy"]);
        assert!(
            of(&f, Code::MR403)[0]
                .message
                .contains("sidecar.istio.io/statsInclusionPrefixes")
        );
    }

    #[test]
    fn online_boutique_redis_tcp_probes_are_rewritten_by_default() {
        let Some(dir) = fixtures() else { return };
        let yaml = std::fs::read_to_string(
            dir.join("realworld/online-boutique/kubernetes-manifests.yaml"),
        )
        .expect("fixture reads");
        let f = findings(&yaml);
        assert!(objects(&f, Code::MR401).is_empty());
        assert!(objects(&f, Code::MR402).is_empty());
        assert!(objects(&f, Code::MR403).is_empty());
        // With the injector's rewrite off, the redis-cart tcpSocket probes can no longer fail,
        // and the gRPC probes still pass on PERMISSIVE ports.
        let f = rewrite_off_by_injector(&yaml);
        assert_eq!(objects(&f, Code::MR402), ["Deployment/redis-cart"]);
        assert!(objects(&f, Code::MR401).is_empty());
    }
}
