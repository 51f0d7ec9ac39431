//! MR801 AppBindsLocalhost: a container binds a Service's target port to loopback, read from its
//! args, command and env. Since Istio 1.10 the sidecar forwards inbound traffic to the pod IP, so
//! a loopback listener refuses it (the spec-side twin of Istio's LocalhostListener, IST0143).

use super::*;
use crate::checks::listed;

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

/// A flag or variable name, split into words: `--bind-address` is `[bind, address]`,
/// `SERVER_HOST` is `[SERVER, HOST]`, `-Dserver.address` is `[server, address]`. The words keep
/// their case and are compared ignoring it: most names classify as nothing, and lower-casing
/// every word of every flag and variable cost an allocation each.
fn name_words(name: &str) -> Vec<&str> {
    let name = name.trim_start_matches('-');
    let name = name
        .strip_prefix('D')
        .filter(|_| name.contains('.'))
        .unwrap_or(name);
    name.split(['-', '_', '.'])
        .filter(|w| !w.is_empty())
        .collect()
}

/// Whether `word` is one of `list` (lower-case), ignoring case.
fn is_one_of(word: &str, list: &[&str]) -> bool {
    list.iter().any(|l| word.eq_ignore_ascii_case(l))
}

/// The lower-case words joined by `-`: the prefix that pairs hosts with ports.
fn prefix_of(words: &[&str]) -> String {
    let mut prefix = String::new();
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            prefix.push('-');
        }
        prefix.extend(word.chars().map(|c| c.to_ascii_lowercase()));
    }
    prefix
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
fn classify(words: &[&str]) -> NameKind {
    let has = |list: &[&str]| words.iter().any(|w| is_one_of(w, list));
    let Some((last, rest)) = words.split_last() else {
        return NameKind::Other;
    };
    let is = |word: &str| last.eq_ignore_ascii_case(word);
    if has(ADVERTISED_WORDS) {
        return NameKind::Client;
    }
    if has(&["bind", "listen"]) && !is("port") {
        return NameKind::Bind(prefix_of(rest));
    }
    if has(CLIENT_WORDS) {
        return NameKind::Client;
    }
    if is_one_of(last, ADDRESS_WORDS) || (words.len() == 1 && is("b")) {
        return NameKind::Bind(prefix_of(rest));
    }
    if is("port") || (words.len() == 1 && is("p")) {
        return NameKind::Port(prefix_of(rest));
    }
    NameKind::Other
}

/// Whether a value could hold a loopback address at all: `localhost` in any case, an IPv4
/// address in 127.0.0.0/8, or an IPv6 `::1`, which is written either compressed (`::`) or with
/// all eight groups (`0:0:0:0:0:0:0:1`, so `0:0`). Most containers name none, and this scan
/// spares reading their flags word by word.
fn may_hold_loopback(value: &str) -> bool {
    value.contains("127.")
        || value.contains("::")
        || value.contains("0:0")
        || value
            .as_bytes()
            .windows("localhost".len())
            .any(|w| w.eq_ignore_ascii_case(b"localhost"))
}

/// Whether any of a container's command line and environment could hold a loopback address.
fn names_loopback(c: &Container) -> bool {
    let words = c.command.iter().flatten().chain(c.args.iter().flatten());
    let values = c.env.iter().flatten().filter_map(|var| var.value.as_ref());
    words.chain(values).any(|text| may_hold_loopback(text))
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
            if is_one_of(last, &["args", "opts", "options", "flags"]) {
                self.scan_args(&[value]);
                continue;
            }
            let kind = if words.len() == 2
                && words[0].eq_ignore_ascii_case("aspnetcore")
                && last.eq_ignore_ascii_case("urls")
            {
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
pub(super) fn binds_localhost(cx: &Context, w: &Workload, out: &mut Findings) {
    if !app_containers(w).any(names_loopback) {
        return;
    }
    // Most containers bind nothing to loopback: read them before finding what Services target.
    let listenings: Vec<(&Container, Listening)> =
        app_containers(w).map(|c| (c, Listening::of(c))).collect();
    if listenings.iter().all(|(_, l)| l.binds.is_empty()) {
        return;
    }
    let targeted = targeted_ports(cx, w);
    if targeted.is_empty() {
        return;
    }
    let single = listenings.len() == 1;
    let mut hits: Vec<String> = Vec::new();
    let mut services: BTreeSet<&str> = BTreeSet::new();
    let mut fixes: BTreeSet<String> = BTreeSet::new();
    for (c, listening) in &listenings {
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
                listed(&ports, ", "),
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
            capitalised(&listed(&hits, "; ")),
            listed(&services, ", "),
            fixes.join(", "),
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Code;
    use crate::checks::listeners::tests::app;
    use crate::checks::testing::{findings, objects, of};

    fn mr801(fields: &str) -> Vec<String> {
        objects(&findings(&app(fields, "8080")), Code::MR801)
    }

    /// The scan that skips containers must pass every spelling `is_loopback` accepts.
    #[test]
    fn every_loopback_spelling_passes_the_scan() {
        let spellings = [
            "localhost",
            "LocalHost",
            "127.0.0.1",
            "127.255.3.4",
            "::1",
            "0::1",
            "::0:1",
            "0:0:0:0:0:0:0:1",
            "0000:0000:0000:0000:0000:0000:0000:0001",
            "0:0:0:0:0:0:0.0.0.1",
        ];
        for host in spellings {
            assert!(is_loopback(host), "{host} is loopback");
            assert!(may_hold_loopback(host), "{host} passes the scan");
            assert!(
                may_hold_loopback(&format!("--bind=[{host}]:8080")),
                "{host} in a flag"
            );
        }
        for value in ["0.0.0.0:8080", "--port=8080", "http://web.shop:80"] {
            assert!(
                loopbacks(value).is_empty() && !may_hold_loopback(value),
                "{value}"
            );
        }
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
}
