//! Listeners (8xx): whether what the sidecar forwards inbound can reach the app at all.
//!
//! Since Istio 1.10 the sidecar forwards inbound traffic to the pod IP, not to 127.0.0.1, so an
//! app listening on loopback refuses it (MR801, the spec-side twin of Istio's LocalhostListener,
//! IST0143, which reads pod status). Traffic of UID 1337 is never captured (MR802, Istio's
//! InvalidApplicationUID, IST0144). The proxy owns a fixed set of ports (MR803). And a Service
//! port must reach a port its pods declare (MR804).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use super::context::app_containers;
use super::lifecycle::{program, run_as_user};
use super::{Code, Context, Findings, Severity};
use crate::api::k8s::Container;
use crate::api::keys;
use crate::snapshot::{ServiceInfo, ServicePortInfo, TargetPort, Workload};

/// Ports the sidecar listens on or redirects to (Istio's "Ports used by Istio").
const RESERVED_PROXY_PORTS: [i32; 9] = [
    15000, 15001, 15004, 15006, 15008, 15020, 15021, 15053, 15090,
];

/// The port the injected `istio-proxy` declares for Envoy's Prometheus stats.
const PROXY_DECLARED_PORT: (&str, i32) = ("http-envoy-prom", 15090);

/// Words in a flag or variable name that make its address one the app connects to, not one it
/// listens on: `--upstream`, `DB_HOST`, `JAEGER_AGENT_HOST`, `--advertise-address`...
const CLIENT_WORDS: &[&str] = &[
    "upstream",
    "backend",
    "target",
    "remote",
    "proxy",
    "forward",
    "connect",
    "endpoint",
    "url",
    "uri",
    "dest",
    "destination",
    "service",
    "api",
    "db",
    "database",
    "sql",
    "redis",
    "postgres",
    "postgresql",
    "pg",
    "mysql",
    "mongo",
    "mongodb",
    "cassandra",
    "elasticsearch",
    "es",
    "kafka",
    "broker",
    "nats",
    "amqp",
    "rabbit",
    "rabbitmq",
    "memcached",
    "cache",
    "queue",
    "smtp",
    "mail",
    "agent",
    "collector",
    "jaeger",
    "zipkin",
    "otel",
    "otlp",
    "statsd",
    "dogstatsd",
    "dd",
    "consul",
    "etcd",
    "vault",
];

/// Words that mark an address others are told to use, never one the app binds:
/// `--advertise-address`, `EXTERNAL_HOST`.
const ADVERTISED_WORDS: &[&str] = &["advertise", "advertised", "external", "public"];

/// Client programs whose arguments are addresses to call (`curl localhost:8080`,
/// `nc -z 127.0.0.1 5432`), in a command or shell script.
const CLIENT_PROGRAMS: &[&str] = &[
    "curl",
    "wget",
    "nc",
    "ncat",
    "netcat",
    "telnet",
    "nslookup",
    "dig",
    "grpcurl",
    "grpc_health_probe",
    "psql",
    "pg_isready",
    "mysql",
    "mysqladmin",
    "mongo",
    "mongosh",
    "redis-cli",
    "cqlsh",
    "kubectl",
    "wait-for-it",
    "wait-for-it.sh",
    "dockerize",
];

/// Last words of a flag or variable name that set a listening address: `--host`, `--bind-address`,
/// `LISTEN_ADDR`, `-Dserver.address`...
const ADDRESS_WORDS: &[&str] = &["host", "hostname", "address", "addr", "ip", "interface"];

/// Name prefixes under which a bare host pairs with the app's main port: `--host` with `--port`,
/// `HTTP_HOST` with `PORT`. A `--metrics-host` pairs only with `--metrics-port`.
const MAIN_PREFIXES: &[&str] = &["", "bind", "listen", "server", "http", "web", "app"];

pub(super) fn check(cx: &Context, out: &mut Findings) {
    for (i, w) in cx.workloads() {
        if !cx.template_meshed(i) {
            continue;
        }
        binds_localhost(cx, w, out);
        runs_as_proxy_uid(w, out);
        reserved_ports(w, out);
    }
    for svc in cx.services() {
        target_port_not_exposed(cx, svc, out);
    }
}

// ---------------------------------------------------------------------------------------------
// MR801

/// A flag or variable name, split into lower-case words: `--bind-address` is `[bind, address]`,
/// `SERVER_HOST` is `[server, host]`, `-Dserver.address` is `[server, address]`.
fn name_words(name: &str) -> Vec<String> {
    let name = name.trim_start_matches('-');
    let name = name
        .strip_prefix('D')
        .filter(|_| name.contains('.'))
        .unwrap_or(name);
    name.split(['-', '_', '.'])
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// What a flag or variable name says about the address it holds.
#[derive(Debug, PartialEq)]
enum NameKind {
    /// A listening address, with the prefix that pairs it with a port (`metrics` for
    /// `--metrics-host`, empty for `--host`).
    Bind(String),
    /// A listening port, with its prefix.
    Port(String),
    /// An address the app connects to.
    Client,
    Other,
}

/// Reads a name: advertised addresses are never binds; `bind` and `listen` win over client words
/// (`KONG_PROXY_LISTEN` is a listener); then client words; then the last word.
fn classify(words: &[String]) -> NameKind {
    let has = |list: &[&str]| words.iter().any(|w| list.contains(&w.as_str()));
    let Some((last, rest)) = words.split_last() else {
        return NameKind::Other;
    };
    let prefix = rest.join("-");
    if has(ADVERTISED_WORDS) {
        return NameKind::Client;
    }
    if has(&["bind", "listen"]) && last != "port" {
        return NameKind::Bind(prefix);
    }
    if has(CLIENT_WORDS) {
        return NameKind::Client;
    }
    if ADDRESS_WORDS.contains(&last.as_str()) || (words.len() == 1 && last == "b") {
        return NameKind::Bind(prefix);
    }
    if last == "port" || (words.len() == 1 && last == "p") {
        return NameKind::Port(prefix);
    }
    NameKind::Other
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
        || host.parse::<Ipv6Addr>().is_ok_and(|a| a.is_loopback())
}

/// A loopback address found in a value.
#[derive(Debug, PartialEq)]
struct Loopback {
    /// The port after it, when there is a numeric one.
    port: Option<i32>,
    /// Written as a URL (`http://localhost:9000`), which is usually an address to call.
    url: bool,
}

/// The loopback addresses in a value (comma-separated lists allowed): `127.0.0.1:8080`,
/// `localhost`, `[::1]:8080`, `::1`, `http://127.0.0.1:8080/path`.
fn loopbacks(value: &str) -> Vec<Loopback> {
    value
        .split(',')
        .filter_map(|item| {
            let item = item.trim().trim_matches(['"', '\'', ';']);
            let (rest, url) = match item.split_once("://") {
                Some((_, rest)) => (rest, true),
                None => (item, false),
            };
            let rest = rest.split('/').next().unwrap_or(rest);
            let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
                let (host, after) = bracketed.split_once(']')?;
                (host, after.strip_prefix(':'))
            } else if rest.matches(':').count() > 1 {
                (rest, None)
            } else {
                match rest.split_once(':') {
                    Some((host, port)) => (host, Some(port)),
                    None => (rest, None),
                }
            };
            is_loopback(host).then(|| Loopback {
                port: port.and_then(|p| p.parse().ok()),
                url,
            })
        })
        .collect()
}

/// A loopback listening address a container sets.
#[derive(Debug)]
struct LoopbackBind {
    /// As written: `--bind=127.0.0.1:8080`, `HOST=127.0.0.1`.
    source: String,
    port: Option<i32>,
    /// Pairs a bare host with a port flag or variable of the same prefix.
    prefix: String,
}

/// Listening addresses and ports a container's command line and environment set.
#[derive(Debug, Default)]
struct Listening {
    binds: Vec<LoopbackBind>,
    /// Port flags and variables by prefix (`""` for `--port` and `PORT`).
    ports: BTreeMap<String, i32>,
}

impl Listening {
    /// Reads `--flag=value`, `--flag value`, `listen value` and positional `host:port` words.
    /// Words after a client program (`curl`, `nc`...) up to the next `;`, `&&`, `||` or `|` are
    /// its arguments, not the app's.
    fn scan_args(&mut self, parts: &[&str]) {
        let tokens: Vec<&str> = parts
            .iter()
            .flat_map(|p| p.split_whitespace())
            .map(|t| t.trim_matches(['"', '\'']))
            .filter(|t| !t.is_empty())
            .collect();
        let mut client = false;
        let mut i = 0;
        while i < tokens.len() {
            let token = tokens[i];
            i += 1;
            if matches!(token, ";" | "&&" | "||" | "|") {
                client = false;
                continue;
            }
            if CLIENT_PROGRAMS.contains(&program(token)) {
                client = true;
                continue;
            }
            if client {
                client = !token.ends_with(';');
                continue;
            }
            let keyword = matches!(token, "listen" | "bind");
            let (name, value) = if let Some(flag) = token.strip_prefix('-') {
                match flag.split_once('=') {
                    Some((name, value)) => (Some(name), value),
                    None => match tokens.get(i).filter(|next| !next.starts_with('-')) {
                        Some(next) => (Some(flag), *next),
                        None => continue,
                    },
                }
            } else if keyword {
                match tokens.get(i) {
                    Some(next) => (Some(token), *next),
                    None => continue,
                }
            } else {
                (None, token)
            };
            let kind = name.map_or(NameKind::Other, |n| classify(&name_words(n)));
            let source = match name {
                Some(_) if token.contains('=') => token.to_string(),
                Some(_) => format!("{token} {value}"),
                None => token.to_string(),
            };
            match kind {
                NameKind::Port(prefix) => {
                    if let Ok(port) = value.trim_end_matches(';').parse() {
                        self.ports.entry(prefix).or_insert(port);
                        if !token.contains('=') {
                            i += 1;
                        }
                    }
                }
                NameKind::Bind(prefix) => {
                    let found = loopbacks(value);
                    if !found.is_empty() && !token.contains('=') {
                        i += 1;
                    }
                    for lb in found {
                        self.binds.push(LoopbackBind {
                            source: source.clone(),
                            port: lb.port,
                            prefix: prefix.clone(),
                        });
                    }
                }
                // Its value is an address to call, whatever it looks like.
                NameKind::Client => {
                    if !token.contains('=') {
                        i += 1;
                    }
                }
                // An unnamed or unknown flag counts only as `host:port` without a scheme, the
                // shape of a listening address (`runserver 127.0.0.1:8000`).
                NameKind::Other => {
                    let found: Vec<Loopback> = loopbacks(value)
                        .into_iter()
                        .filter(|lb| !lb.url && lb.port.is_some())
                        .collect();
                    if !found.is_empty() && name.is_some() && !token.contains('=') {
                        i += 1;
                    }
                    for lb in found {
                        self.binds.push(LoopbackBind {
                            source: source.clone(),
                            port: lb.port,
                            prefix: String::new(),
                        });
                    }
                }
            }
        }
    }

    /// Reads `HOST=127.0.0.1`, `PORT=8080`, `ASPNETCORE_URLS=http://localhost:5000`, and command
    /// lines in `*_ARGS`, `*_OPTS`, `*_OPTIONS` and `*_FLAGS` variables.
    fn scan_env(&mut self, c: &Container) {
        for var in c.env.iter().flatten() {
            let Some(value) = var.value.as_deref() else {
                continue;
            };
            let words = name_words(&var.name);
            let Some(last) = words.last() else { continue };
            if matches!(last.as_str(), "args" | "opts" | "options" | "flags") {
                self.scan_args(&[value]);
                continue;
            }
            let kind = if words.len() == 2 && words[0] == "aspnetcore" && last == "urls" {
                NameKind::Bind(String::new())
            } else {
                classify(&words)
            };
            match kind {
                NameKind::Port(prefix) => {
                    if let Ok(port) = value.trim().parse() {
                        self.ports.entry(prefix).or_insert(port);
                    }
                }
                NameKind::Bind(prefix) => {
                    for lb in loopbacks(value) {
                        self.binds.push(LoopbackBind {
                            source: format!("{}={value}", var.name),
                            port: lb.port,
                            prefix: prefix.clone(),
                        });
                    }
                }
                NameKind::Client | NameKind::Other => {}
            }
        }
    }

    fn of(c: &Container) -> Self {
        let mut listening = Listening::default();
        let parts: Vec<&str> = c
            .command
            .iter()
            .flatten()
            .chain(c.args.iter().flatten())
            .map(String::as_str)
            .collect();
        listening.scan_args(&parts);
        listening.scan_env(c);
        listening
    }
}

/// The ports Services send to in a workload, with the Services and the container declaring each.
fn targeted_ports<'a>(
    cx: &Context<'a>,
    w: &'a Workload,
) -> BTreeMap<i32, (BTreeSet<&'a str>, Option<&'a str>)> {
    let mut targeted: BTreeMap<i32, (BTreeSet<&str>, Option<&str>)> = BTreeMap::new();
    for svc in cx.services_selecting(w) {
        for port in &svc.ports {
            let (number, container) = match cx.resolve_target(w, &port.target_port) {
                Some(resolved) => (resolved.number, Some(resolved.container.name.as_str())),
                None => match port.target_port {
                    TargetPort::Number(n) => (n, None),
                    TargetPort::Name(_) => continue,
                },
            };
            let entry = targeted.entry(number).or_default();
            entry.0.insert(svc.meta.name.as_str());
            entry.1 = entry.1.or(container);
        }
    }
    targeted
}

/// `--bind=127.0.0.1:8080` as it should read: `--bind=0.0.0.0:8080`.
fn unbound(source: &str) -> String {
    source
        .replace("[::1]", "[::]")
        .replace("127.0.0.1", "0.0.0.0")
        .replace("localhost", "0.0.0.0")
}

/// MR801: a container binds a port a Service targets to loopback.
fn binds_localhost(cx: &Context, w: &Workload, out: &mut Findings) {
    let targeted = targeted_ports(cx, w);
    if targeted.is_empty() {
        return;
    }
    let single = app_containers(w).count() == 1;
    let mut hits: Vec<String> = Vec::new();
    let mut services: BTreeSet<&str> = BTreeSet::new();
    let mut fixes: BTreeSet<String> = BTreeSet::new();
    for c in app_containers(w) {
        let listening = Listening::of(c);
        for bind in &listening.binds {
            let ports: Vec<i32> = match bind.port {
                Some(port) => vec![port],
                None => {
                    let paired = listening.ports.get(&bind.prefix).copied().or_else(|| {
                        MAIN_PREFIXES
                            .contains(&bind.prefix.as_str())
                            .then(|| listening.ports.get(""))
                            .flatten()
                            .copied()
                    });
                    match paired {
                        Some(port) => vec![port],
                        // A bare main host with no port in sight: the ports this container
                        // declares that Services target (or undeclared ones, if it is alone).
                        None if MAIN_PREFIXES.contains(&bind.prefix.as_str()) => targeted
                            .iter()
                            .filter(|(_, (_, owner))| {
                                *owner == Some(c.name.as_str()) || (owner.is_none() && single)
                            })
                            .map(|(port, _)| *port)
                            .collect(),
                        None => Vec::new(),
                    }
                }
            };
            let hit: Vec<i32> = ports
                .into_iter()
                .filter(|p| targeted.contains_key(p))
                .collect();
            if hit.is_empty() {
                continue;
            }
            for port in &hit {
                if let Some((by, _)) = targeted.get(port) {
                    services.extend(by.iter().copied());
                }
            }
            let ports: Vec<String> = hit.iter().map(i32::to_string).collect();
            hits.push(format!(
                "container {} binds port {} to loopback (`{}`)",
                c.name,
                ports.join(", "),
                bind.source
            ));
            fixes.insert(format!("`{}`", unbound(&bind.source)));
        }
    }
    if hits.is_empty() {
        return;
    }
    let services: Vec<&str> = services.into_iter().collect();
    let fixes: Vec<String> = fixes.into_iter().collect();
    out.add(
        Code::MR801,
        Severity::Warning,
        &w.kind,
        &w.meta,
        format!(
            "{}, which Service {} targets; since Istio 1.10 the sidecar forwards inbound traffic to the pod IP, not to 127.0.0.1, so those requests are refused and fail with 503 (UF/URX). \
             Fix: listen on all interfaces (0.0.0.0, or :: for IPv6): {}.",
            capitalised(&hits.join("; ")),
            services.join(", "),
            fixes.join(", "),
        ),
    );
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
                names.join(", "),
                if names.len() == 1 { "s" } else { "" }
            ),
            "set spec.securityContext.runAsUser (and any container runAsUser of 1337) to another UID, e.g. `securityContext: {runAsUser: 1000}`",
        )
    } else {
        (
            format!(
                "Container {} run{} as UID {}, the proxy's",
                names.join(", "),
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
            clashes.join(", "),
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
    let protocol = |p: Option<&String>| p.map_or("TCP", |p| p.as_str()).to_ascii_uppercase();
    let wanted = port.transport.to_ascii_uppercase();
    let spec = &w.template.spec;
    let declared = spec.containers.iter().chain(
        spec.init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always")),
    );
    let found = declared
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| protocol(p.protocol.as_ref()) == wanted)
        .any(|p| match &port.target_port {
            TargetPort::Number(n) => p.container_port == *n,
            TargetPort::Name(name) => p.name.as_deref() == Some(name.as_str()),
        });
    found
        || (meshed
            && wanted == "TCP"
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
            missing.join(", "),
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
            declared.into_iter().collect::<Vec<_>>().join(", ")
        )
    };
    out.add(
        Code::MR804,
        Severity::Warning,
        "Service",
        &svc.meta,
        format!(
            "{}; {consequence}. Fix: set targetPort to a container port the pods declare ({available}), or add the port to the container's `ports` list.",
            capitalised(&problems.join("; ")),
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Code;
    use crate::checks::testing::{findings, fixtures, objects, of};

    /// A Deployment `web` whose one container has `fields`, selected by a Service targeting
    /// `target` (`8080`, or a port name).
    fn app(fields: &str, target: &str) -> String {
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

    fn mr801(fields: &str) -> Vec<String> {
        objects(&findings(&app(fields, "8080")), Code::MR801)
    }

    #[test]
    fn loopback_binds_of_a_targeted_port_fire() {
        for fields in [
            "        args: [--bind=127.0.0.1:8080]",
            "        args: [--host=localhost, --port, \"8080\"]",
            "        args: [--host, 127.0.0.1, --port=8080]",
            "        command: [gunicorn, -b, \"127.0.0.1:8080\", app:app]",
            "        args: [\"--listen=[::1]:8080\"]",
            "        command: [python, manage.py, runserver, \"127.0.0.1:8080\"]",
            "        command: [sh, -c, \"echo 'server { listen 127.0.0.1:8080; }' > /etc/nginx/conf.d/app.conf && exec nginx\"]",
            "        command: [java, -Dserver.address=127.0.0.1, -Dserver.port=8080, -jar, app.jar]",
            "        env: [{name: HOST, value: 127.0.0.1}, {name: PORT, value: \"8080\"}]",
            "        env: [{name: HOST, value: localhost}]\n        ports: [{containerPort: 8080}]",
            "        env: [{name: ASPNETCORE_URLS, value: \"http://localhost:8080\"}]",
            "        env: [{name: GUNICORN_CMD_ARGS, value: \"--bind=127.0.0.1:8080 --workers=2\"}]",
            "        env: [{name: KONG_PROXY_LISTEN, value: \"127.0.0.1:8080\"}]",
        ] {
            assert_eq!(mr801(fields), ["Deployment/web"], "{fields}");
        }
    }

    #[test]
    fn named_target_ports_resolve_through_container_ports() {
        let fields = "        ports: [{name: http, containerPort: 8080}]\n        args: [--bind=127.0.0.1:8080]";
        let f = findings(&app(fields, "http"));
        assert_eq!(objects(&f, Code::MR801), ["Deployment/web"]);
        let message = &of(&f, Code::MR801)[0].message;
        assert!(
            message.starts_with(
                "Container app binds port 8080 to loopback (`--bind=127.0.0.1:8080`), which Service web targets"
            ),
            "{message}"
        );
        assert!(message.contains("Fix: listen on all interfaces"));
        assert!(message.contains("`--bind=0.0.0.0:8080`"), "{message}");
    }

    #[test]
    fn client_addresses_other_ports_and_all_interfaces_do_not_fire() {
        for fields in [
            "        args: [--upstream=http://localhost:9000]",
            "        args: [--upstream=http://127.0.0.1:8080/]",
            "        args: [--upstream, \"localhost:8080\"]",
            "        args: [--proxy-to=http://localhost:8080]",
            "        args: [--bind=127.0.0.1:9090, --port=8080]",
            "        args: [--metrics-host=127.0.0.1, --port=8080]",
            "        args: [--metrics-bind-address=127.0.0.1:9090]",
            "        args: [--advertise-address=127.0.0.1, --port=8080]",
            "        args: [--bind=0.0.0.0:8080]",
            "        args: [--host=127.0.0.1, --port=9000]",
            "        command: [sh, -c, \"curl -sf localhost:8080/warmup; exec app --port 8080\"]",
            "        command: [sh, -c, \"until nc -z 127.0.0.1 8080; do sleep 1; done\"]",
            "        env: [{name: DB_HOST, value: localhost}, {name: REDIS_HOST, value: 127.0.0.1}, {name: JAEGER_AGENT_HOST, value: localhost}]\n        ports: [{containerPort: 8080}]",
            "        env: [{name: BACKEND_URL, value: \"http://localhost:8080\"}]",
            "        env: [{name: HOST, value: 0.0.0.0}, {name: PORT, value: \"8080\"}]",
            "        env: [{name: HOST, value: 127.0.0.1}, {name: PORT, value: \"9000\"}]",
        ] {
            assert!(mr801(fields).is_empty(), "{fields}");
        }
    }

    #[test]
    fn loopback_bind_without_a_service_does_not_fire() {
        let yaml = app("        args: [--bind=127.0.0.1:8080]", "8080");
        let no_service = &yaml[yaml.find("apiVersion: apps/v1").unwrap_or(0)..];
        assert!(objects(&findings(no_service), Code::MR801).is_empty());
    }

    #[test]
    fn loopback_parsing() {
        assert_eq!(
            loopbacks("127.0.0.1:8080"),
            [Loopback {
                port: Some(8080),
                url: false
            }]
        );
        assert_eq!(
            loopbacks("http://localhost:9000/x"),
            [Loopback {
                port: Some(9000),
                url: true
            }]
        );
        assert_eq!(
            loopbacks("[::1]:8080"),
            [Loopback {
                port: Some(8080),
                url: false
            }]
        );
        assert_eq!(
            loopbacks("::1"),
            [Loopback {
                port: None,
                url: false
            }]
        );
        assert_eq!(
            loopbacks("127.1.2.3"),
            [Loopback {
                port: None,
                url: false
            }]
        );
        assert!(loopbacks("0.0.0.0:8080").is_empty());
        assert!(loopbacks("localhost.example.com:80").is_empty());
        assert!(loopbacks("backend:9898").is_empty());
    }

    #[test]
    fn name_classes() {
        let kind = |n: &str| classify(&name_words(n));
        assert_eq!(kind("--host"), NameKind::Bind(String::new()));
        assert_eq!(kind("--bind-address"), NameKind::Bind("bind".into()));
        assert_eq!(kind("-Dserver.address"), NameKind::Bind("server".into()));
        assert_eq!(kind("METRICS_HOST"), NameKind::Bind("metrics".into()));
        assert_eq!(kind("--port"), NameKind::Port(String::new()));
        assert_eq!(kind("--listen-port"), NameKind::Port("listen".into()));
        assert_eq!(kind("DB_HOST"), NameKind::Client);
        assert_eq!(kind("DB_PORT"), NameKind::Client);
        assert_eq!(kind("--advertise-listen-address"), NameKind::Client);
        assert_eq!(kind("--verbose"), NameKind::Other);
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
