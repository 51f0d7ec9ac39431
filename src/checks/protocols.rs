//! 2xx: does every Service port say which protocol it speaks, consistently?

use crate::checks::listed;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::index::{HashMap, HashMapExt};
use super::{Code, Context, Findings};
use crate::istio::protocol::Protocol;
use crate::snapshot::{ServiceInfo, ServicePortInfo};

pub(super) fn check(cx: &Context, out: &mut Findings) {
    for svc in cx.services() {
        undeclared(svc, out);
        http_declared_tcp(cx, svc, out);
    }
    conflicts_within_workloads(cx, out);
    conflicts_across_namespaces(cx, out);
}

fn is_udp(port: &ServicePortInfo) -> bool {
    port.transport.eq_ignore_ascii_case("UDP")
}

fn port_label(port: &ServicePortInfo) -> String {
    match (&port.name, &port.app_protocol) {
        (_, Some(app)) => format!("{} (appProtocol {app:?})", port.port),
        (Some(name), None) => format!("{} ({name:?})", port.port),
        (None, None) => format!("{} (unnamed)", port.port),
    }
}

fn undeclared(svc: &ServiceInfo, out: &mut Findings) {
    let ports: Vec<&ServicePortInfo> = svc
        .ports
        .iter()
        .filter(|p| !is_udp(p) && p.declared.protocol().is_none())
        .collect();
    let Some(first) = ports.first() else { return };
    let labels: Vec<String> = ports.iter().map(|p| port_label(p)).collect();
    let unrecognised = ports.iter().any(|p| p.app_protocol.is_some());
    let fix = if unrecognised {
        format!(
            "set appProtocol to a protocol Istio knows (http, http2, grpc, tcp, tls...), e.g. appProtocol: http on port {}",
            first.port
        )
    } else {
        let stem = first.name.clone().unwrap_or_else(|| "web".to_string());
        format!(
            "name the port <protocol>[-suffix], e.g. name: http-{stem}, or set appProtocol: http"
        )
    };
    out.add(
        Code::MR201,
        Code::MR201.default_severity(),
        "Service",
        &svc.meta,
        format!(
            "Service {} port {} declares no protocol Istio recognises, so the proxy sniffs it: \
             server-first protocols (MySQL, SMTP...) stall and HTTP features such as retries and \
             idle timeouts may not apply. Fix: {fix}.",
            svc.meta.name,
            listed(&labels, ", "),
        ),
    );
}

/// Names that say a port carries HTTP: a token `http`, `http2`, `h2c` or `grpc`.
fn name_says_http(name: &str) -> bool {
    name.to_ascii_lowercase()
        .split(['-', '_', '.'])
        .any(|token| matches!(token, "http" | "http2" | "h2c" | "grpc"))
}

fn http_declared_tcp(cx: &Context, svc: &ServiceInfo, out: &mut Findings) {
    let tcp_ports: Vec<(&ServicePortInfo, Protocol)> = svc
        .ports
        .iter()
        .filter_map(|port| match port.declared.explicit() {
            Some(p @ (Protocol::Tcp | Protocol::Tls)) => Some((port, p)),
            _ => None,
        })
        .collect();
    if tcp_ports.is_empty() {
        // Most Services: no need to find the workloads they select.
        return;
    }
    let workloads = cx.selected_by(svc);
    let mut evidence = Vec::new();
    for (port, p) in tcp_ports {
        let mut why = BTreeSet::new();
        if port.name.as_deref().is_some_and(name_says_http) {
            why.insert(format!(
                "its name {:?}",
                port.name.as_deref().unwrap_or_default()
            ));
        }
        for (_, w) in &workloads {
            let Some(target) = cx.resolve_target(w, &port.target_port) else {
                continue;
            };
            if target.name.is_some_and(name_says_http) {
                why.insert(format!(
                    "container port name {:?}",
                    target.name.unwrap_or_default()
                ));
            }
            let probes = [
                &target.container.liveness_probe,
                &target.container.readiness_probe,
                &target.container.startup_probe,
            ];
            let http_probe = probes
                .into_iter()
                .flatten()
                .filter_map(|p| p.http_get.as_ref())
                .any(|get| {
                    use crate::api::k8s::IntOrString;
                    match &get.port {
                        IntOrString::Int(n) => *n == target.number,
                        IntOrString::String(s) => Some(s.as_str()) == target.name,
                    }
                });
            if http_probe {
                why.insert(format!("an httpGet probe on {}/{}", w.kind, w.meta.name));
            }
        }
        if !why.is_empty() {
            let why: Vec<String> = why.into_iter().collect();
            evidence.push(format!(
                "port {} is declared {p} but carries HTTP ({})",
                port.port,
                listed(&why, ", ")
            ));
        }
    }
    if evidence.is_empty() {
        return;
    }
    out.add(
        Code::MR202,
        Code::MR202.default_severity(),
        "Service",
        &svc.meta,
        format!(
            "Service {}: {}. Envoy proxies it as opaque TCP, so HTTP routing, retries and \
             per-request load balancing do not apply and VirtualService HTTP routes are ignored. \
             Fix: declare it as HTTP, e.g. name: http-{} or appProtocol: http (http2/grpc for HTTP/2).",
            svc.meta.name,
            listed(&evidence, "; "),
            svc.meta.name,
        ),
    );
}

/// One Service port reaching a target port: (Service name, port number, protocol).
type TargetUse<'a> = (&'a str, i32, Option<Protocol>);

/// MR203: Services selecting the same pods must agree on each target port.
fn conflicts_within_workloads(cx: &Context, out: &mut Findings) {
    for (_, w) in cx.workloads().filter(|(i, _)| cx.meshed_or_prospective(*i)) {
        // container port -> (service, service port, protocol)
        let mut by_target: BTreeMap<i32, Vec<TargetUse>> = BTreeMap::new();
        for svc in cx.services_selecting(w) {
            for port in svc.ports.iter().filter(|p| !is_udp(p)) {
                let number = match cx.resolve_target(w, &port.target_port) {
                    Some(target) => target.number,
                    None => match port.target_port {
                        crate::snapshot::TargetPort::Number(n) => n,
                        crate::snapshot::TargetPort::Name(_) => continue,
                    },
                };
                by_target.entry(number).or_default().push((
                    svc.meta.name.as_str(),
                    port.port,
                    port.declared.protocol(),
                ));
            }
        }
        let mut problems = Vec::new();
        for (target, uses) in &by_target {
            let two_protocols = uses.iter().any(|u| u.2 != uses[0].2);
            let two_ports = uses.iter().any(|u| u.1 != uses[0].1);
            if !two_protocols && !two_ports {
                // Most target ports: no message to write.
                continue;
            }
            let list = uses
                .iter()
                .map(|(svc, port, p)| {
                    format!(
                        "{svc}:{port} as {}",
                        p.map_or("undeclared", Protocol::as_str)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            if two_protocols {
                problems.push(format!("target port {target} gets two protocols ({list})"));
            } else {
                problems.push(format!(
                    "target port {target} is reached through different ports ({list})"
                ));
            }
        }
        if problems.is_empty() {
            continue;
        }
        out.add(
            Code::MR203,
            Code::MR203.default_severity(),
            &w.kind,
            &w.meta,
            format!(
                "{}/{} is selected by several Services that disagree: {}. The sidecar builds one \
                 inbound listener per target port, so one of them is served with the wrong protocol \
                 or dropped. Fix: give every Service the same port number and protocol for a target \
                 port, or point them at different container ports.",
                w.kind,
                w.meta.name,
                listed(&problems, "; "),
            ),
        );
    }
}

/// HTTP-family protocols share Envoy's HTTP listener; everything else is a TCP proxy.
fn listener_class(p: Protocol) -> &'static str {
    if p.is_http() { "HTTP" } else { "TCP" }
}

/// How many of the other namespaces' Services MR204 names before "and N more".
const MR204_LISTED: usize = 5;

/// A port number's uses in one listener class (the other than the asking Service's), in the
/// order MR204 lists them.
struct OtherClass<'a> {
    count: usize,
    /// The list most Services on the port write: the first [`MR204_LISTED`] uses, as text,
    /// written once (thousands of Services share a port number), with their namespaces.
    common: String,
    common_namespaces: Vec<&'a str>,
    /// The first of them, read so far.
    read: Vec<(usize, Protocol)>,
    /// Where in the port's uses reading goes on.
    next: usize,
}

impl<'a> OtherClass<'a> {
    fn new(services: &'a [ServiceInfo], uses: &[(usize, Protocol)], asking: &str) -> Self {
        let count = uses
            .iter()
            .filter(|(_, q)| listener_class(*q) != asking)
            .count();
        let mut other = OtherClass {
            count,
            common: String::new(),
            common_namespaces: Vec::new(),
            read: Vec::new(),
            next: 0,
        };
        let first: Vec<(usize, Protocol)> = other.first(MR204_LISTED, uses, asking).to_vec();
        other.common_namespaces = first
            .iter()
            .map(|(o, _)| services[*o].meta.namespace.as_str())
            .collect();
        write_uses(&mut other.common, services, first.iter());
        other
    }

    /// The first `n` (or all, when fewer), reading on through `uses` as far as needed.
    fn first(
        &mut self,
        n: usize,
        uses: &[(usize, Protocol)],
        asking: &str,
    ) -> &[(usize, Protocol)] {
        while self.read.len() < n && self.next < uses.len() {
            let (o, q) = uses[self.next];
            if listener_class(q) != asking {
                self.read.push((o, q));
            }
            self.next += 1;
        }
        &self.read[..n.min(self.read.len())]
    }
}

/// `Service <namespace>/<name>: <protocol>` for each use, joined by ", ", a repeat of the one
/// before left out.
fn write_uses<'a>(
    out: &mut String,
    services: &[ServiceInfo],
    uses: impl Iterator<Item = &'a (usize, Protocol)>,
) {
    let mut last: Option<(&str, &str, Protocol)> = None;
    for (o, q) in uses {
        let meta = &services[*o].meta;
        let this = (meta.namespace.as_str(), meta.name.as_str(), *q);
        if last == Some(this) {
            continue;
        }
        if last.is_some() {
            out.push_str(", ");
        }
        let _ = write!(out, "Service {}/{}: {q}", this.0, this.1);
        last = Some(this);
    }
}

/// MR204: one port number, different protocols in different namespaces.
fn conflicts_across_namespaces(cx: &Context, out: &mut Findings) {
    let services = &cx.snapshot.services;
    // Per port number and listener class, the port's uses in the other class: counted once
    // per run, as every Service on the port asks, and read only as far as a message needs.
    let mut clashing: HashMap<(i32, &str), OtherClass> = HashMap::new();
    // The declared ports of the namespace the Services at hand are in (they come namespace by
    // namespace), parsed once for all its Services rather than once per Service and port.
    let mut namespace_ports: (&str, Vec<(i32, Protocol)>) = ("", Vec::new());
    for svc in cx.services() {
        // By port number, as a Service with two clashing ports reports the lowest.
        let mut ports: Vec<(i32, Protocol)> = svc
            .ports
            .iter()
            .filter(|p| !is_udp(p))
            .filter_map(|port| Some((port.port, port.declared.protocol()?)))
            .collect();
        ports.sort_by_key(|(number, _)| *number);
        for (number, p) in ports {
            // Every use of the port number, in the order the message lists them.
            let Some(uses) = cx.index().ports.get(&number) else {
                continue;
            };
            let ns = svc.meta.namespace.as_str();
            if namespace_ports.1.is_empty() || namespace_ports.0 != ns {
                namespace_ports = (
                    ns,
                    cx.services_in(ns)
                        .flat_map(|s| s.ports.iter())
                        .filter(|o| !is_udp(o))
                        .filter_map(|o| Some((o.port, o.declared.protocol()?)))
                        .collect(),
                );
            }
            let class = listener_class(p);
            let other_class = clashing
                .entry((number, class))
                .or_insert_with(|| OtherClass::new(services, uses, class));
            let here = namespace_ports
                .1
                .iter()
                .filter(|(n, q)| *n == number && listener_class(*q) != class)
                .count();
            let total = other_class.count - here;
            if total == 0 {
                continue;
            }
            let mut message = String::with_capacity(640);
            let _ = write!(
                message,
                "Service {} declares port {number} as {p}, but other namespaces declare it differently (",
                svc.meta.name
            );
            let listed_start = message.len();
            if other_class.common_namespaces.contains(&ns) {
                // The namespace's own `here` uses are among them: read that many more.
                let first = other_class.first(MR204_LISTED + here, uses, class);
                write_uses(
                    &mut message,
                    services,
                    first
                        .iter()
                        .filter(|(o, _)| services[*o].meta.namespace != ns)
                        .take(MR204_LISTED),
                );
            } else {
                message.push_str(&other_class.common);
            }
            if total > MR204_LISTED {
                if message.len() > listed_start {
                    message.push_str(", ");
                }
                let _ = write!(message, "and {} more", total - MR204_LISTED);
            }
            let _ = write!(
                message,
                "). Every \
                 sidecar has one outbound listener for port {number}, so one protocol leaks into \
                 calls to the others (HTTP parsed as TCP or the reverse, 503 or hung requests). \
                 Fix: use one protocol per port number across namespaces, or move one Service to \
                 another port."
            );
            out.add(
                Code::MR204,
                Code::MR204.default_severity(),
                "Service",
                &svc.meta,
                message,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::checks::Code;
    use crate::checks::testing::{findings, objects};

    fn service(name: &str, ns: &str, ports: &str) -> String {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  selector: {{app: {name}}}\n  ports: {ports}\n"
        )
    }

    #[test]
    fn mr201_undeclared_ports() {
        let yaml = [
            service("unnamed", "shop", "[{port: 8080}]"),
            service("badname", "shop", "[{name: web, port: 8080}]"),
            service("suffixed", "shop", "[{name: http-web, port: 8080}]"),
            service(
                "app",
                "shop",
                "[{name: web, port: 8080, appProtocol: HTTP}]",
            ),
            service(
                "udp",
                "shop",
                "[{port: 53, protocol: UDP}, {port: 5000, protocol: UDP}]",
            ),
            service("mysql", "shop", "[{port: 3306}]"),
            service(
                "badapp",
                "shop",
                "[{name: http, port: 8080, appProtocol: fancy}]",
            ),
            service("sys", "kube-system", "[{port: 8080}]"),
        ]
        .concat();
        let f = findings(&yaml);
        assert_eq!(
            objects(&f, Code::MR201),
            vec!["Service/badapp", "Service/badname", "Service/unnamed"]
        );
        let badname = f.iter().find(|f| f.object.name == "badname").unwrap();
        assert!(badname.message.contains("http-web"), "{}", badname.message);
    }

    const WORKLOAD: &str = "
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: api
        image: api
        ports: [{name: web, containerPort: 8080}, {name: metrics, containerPort: 9090}]
        readinessProbe: {httpGet: {path: /ready, port: web}}
";

    #[test]
    fn mr202_http_evidence_on_tcp_port() {
        let probe = format!(
            "{WORKLOAD}{}",
            service(
                "api",
                "shop",
                "[{name: tcp-web, port: 80, targetPort: 8080}]"
            )
        );
        assert_eq!(objects(&findings(&probe), Code::MR202), vec!["Service/api"]);
        let name = service(
            "named",
            "shop",
            "[{name: http, port: 80, appProtocol: tcp}]",
        );
        assert_eq!(
            objects(&findings(&name), Code::MR202),
            vec!["Service/named"]
        );
        // The metrics port has no HTTP evidence, and an http-declared port is fine.
        let quiet = format!(
            "{WORKLOAD}{}",
            service(
                "api",
                "shop",
                "[{name: tcp-metrics, port: 9090}, {name: http-web, port: 80, targetPort: 8080}]"
            )
        );
        assert!(objects(&findings(&quiet), Code::MR202).is_empty());
        let https = service("tls", "shop", "[{name: tls-https, port: 443}]");
        assert!(objects(&findings(&https), Code::MR202).is_empty());
    }

    #[test]
    fn mr203_conflicting_services_on_one_workload() {
        let conflict = format!(
            "{WORKLOAD}{}{}",
            service(
                "api",
                "shop",
                "[{name: http-web, port: 80, targetPort: 8080}]"
            ),
            service(
                "api",
                "shop",
                "[{name: tcp-web, port: 80, targetPort: web}]"
            )
            .replace("name: api,", "name: api-tcp,")
        );
        let f = findings(&conflict);
        assert_eq!(objects(&f, Code::MR203), vec!["Deployment/api"]);
        let ports = format!(
            "{WORKLOAD}{}{}",
            service(
                "api",
                "shop",
                "[{name: http-web, port: 80, targetPort: 8080}]"
            ),
            service("api", "shop", "[{name: http-web, port: 8080}]")
                .replace("name: api,", "name: api-direct,")
        );
        assert_eq!(
            objects(&findings(&ports), Code::MR203),
            vec!["Deployment/api"]
        );
        let agree = format!(
            "{WORKLOAD}{}{}",
            service(
                "api",
                "shop",
                "[{name: http-web, port: 80, targetPort: 8080}]"
            ),
            service(
                "api",
                "shop",
                "[{name: http-x, port: 80, targetPort: 8080}]"
            )
            .replace("name: api,", "name: api-2,")
        );
        assert!(objects(&findings(&agree), Code::MR203).is_empty());
    }

    #[test]
    fn mr204_one_port_two_protocols_across_namespaces() {
        let yaml = [
            service("web", "a", "[{name: http, port: 8000}]"),
            service("db", "b", "[{name: tcp, port: 8000}]"),
            service("grpc", "c", "[{name: grpc, port: 8000}]"),
            service("other", "a", "[{name: tcp, port: 9000}]"),
            service("other", "b", "[{name: tcp, port: 9000}]"),
        ]
        .concat();
        let f = findings(&yaml);
        assert_eq!(
            objects(&f, Code::MR204),
            vec!["Service/web", "Service/db", "Service/grpc"]
        );
    }
}
