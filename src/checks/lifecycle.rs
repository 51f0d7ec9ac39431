//! Lifecycle (5xx): start-up and shutdown ordering between the app and its sidecar.
//!
//! Without native sidecars the proxy is an ordinary container: every init container runs before
//! it while traffic is already redirected to it (MR501), app containers start beside it (MR502),
//! and on shutdown it drains for `terminationDrainDuration` and exits whatever the app is doing
//! (MR503). With native sidecars (`istio-proxy` as an init container with `restartPolicy:
//! Always`) Kubernetes starts the proxy first and stops it last, which settles all three.

use crate::checks::listed;
use std::time::Duration;

use super::context::app_containers;
use super::probes::template_annotations_path;
use super::{Code, Context, Findings, Severity};
use crate::api::k8s::{Container, PodSpec};
use crate::api::keys;
use crate::istio::duration::format_duration;
use crate::istio::sidecar;
use crate::snapshot::Workload;

/// Programs that, named by an init container's image or command, mean it uses the network: HTTP,
/// TCP and DNS clients and wait-for helpers, database and cache clients, cluster, cloud,
/// secret-store and source-control CLIs, and schema migration tools. Matched as whole words
/// (`/usr/bin/curl` is `curl`); `manage.py migrate`, `rake db:migrate` and `knex migrate:latest`
/// match through `migrate`.
pub(super) const NETWORK_TOOLS: &[&str] = &[
    // HTTP, TCP and DNS clients, and wait-for helpers
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
    "dockerize",
    "wait-for",
    "wait-for-it",
    "wait-for-it.sh",
    // database and cache clients
    "psql",
    "pg_isready",
    "pg_dump",
    "pg_restore",
    "mysql",
    "mysqladmin",
    "mysqldump",
    "mongo",
    "mongosh",
    "mongodump",
    "mongorestore",
    "redis-cli",
    "cqlsh",
    // cluster, cloud, secret-store and source-control CLIs
    "kubectl",
    "helm",
    "aws",
    "gsutil",
    "gcloud",
    "az",
    "vault",
    "git",
    // schema migrations
    "flyway",
    "liquibase",
    "migrate",
    "migrator",
    "migration",
    "migrations",
    "alembic",
    "goose",
    "dbmate",
    "sqitch",
];

/// Image names that are network tools without being named after one.
const NETWORK_IMAGES: &[&str] = &[
    "aws-cli",
    "awscli",
    "cloud-sdk",
    "google-cloud-cli",
    "netshoot",
    "dnsutils",
    "k8s-wait-for",
    "git-sync",
];

/// Init containers the injector adds itself.
const ISTIO_INIT_CONTAINERS: [&str; 3] = [keys::PROXY_CONTAINER, "istio-init", "istio-validation"];

/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

pub(super) fn check(cx: &Context, out: &mut Findings) {
    for (i, w) in cx.workloads() {
        if !cx.template_meshed(i) {
            continue;
        }
        let native = cx.native_sidecars(w);
        if !native {
            init_containers_need_network(w, out);
            app_starts_before_proxy(cx, w, out);
            proxy_exits_before_app_drains(cx, w, out);
        }
        no_readiness_probe(cx, w, out);
    }
}

/// The words of a command line or shell script: split on whitespace and shell punctuation, so that
/// `STATUSCODE=$(wget -q http://x)` yields `STATUSCODE`, `wget`, `-q`, `http://x`.
pub(super) fn words<'a>(parts: impl IntoIterator<Item = &'a String>) -> Vec<&'a str> {
    parts
        .into_iter()
        .flat_map(|part| {
            part.split(|c: char| c.is_whitespace() || ";|&()$`'\"{}<>=\\".contains(c))
                .filter(|w| !w.is_empty())
        })
        .collect()
}

/// The program a word names: its last path segment (`/usr/bin/curl` is `curl`).
pub(super) fn program(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// The network tool a command word names, if any.
pub(super) fn network_tool(word: &str) -> Option<&str> {
    let name = program(word);
    if NETWORK_TOOLS.contains(&name) {
        return Some(name);
    }
    (name.ends_with(":migrate") || name.starts_with("migrate:")).then_some(name)
}

/// The network tool an image is named after, if any: `curlimages/curl:8.5` is `curl`,
/// `flyway/flyway` is `flyway`, `acme/db-migrate` is `migrate`.
fn image_tool(image: &str) -> Option<String> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let name = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let name = name.split(':').next().unwrap_or(name).to_ascii_lowercase();
    if NETWORK_TOOLS.contains(&name.as_str()) || NETWORK_IMAGES.contains(&name.as_str()) {
        return Some(name);
    }
    name.split(['-', '_', '.'])
        .find(|segment| segment.len() > 2 && NETWORK_TOOLS.contains(segment))
        .map(str::to_string)
}

/// Why an init container needs the network: the tool its image or command names.
fn init_network_evidence(c: &Container) -> Option<String> {
    if let Some(tool) = c.image.as_deref().and_then(image_tool) {
        return Some(format!("image {tool}"));
    }
    words(c.command.iter().flatten().chain(c.args.iter().flatten()))
        .into_iter()
        .find_map(network_tool)
        .map(|tool| format!("runs {tool}"))
}

/// The UID a container runs as: its own `runAsUser`, else the pod's.
pub(super) fn run_as_user(spec: &PodSpec, c: &Container) -> Option<i64> {
    c.security_context
        .as_ref()
        .and_then(|s| s.run_as_user)
        .or_else(|| spec.security_context.as_ref().and_then(|s| s.run_as_user))
}

/// MR501. Init containers run one after the other before any app container, so without native
/// sidecars they also run before `istio-proxy`; yet the traffic redirection is already in place
/// (istio-init or the CNI plugin), so their outbound connections go to a proxy that is not there.
/// UID 1337 and outbound exclusions are the two ways past the redirection. Init containers with
/// `restartPolicy: Always` (the user's own native sidecars) keep running beside the proxy and
/// retry, so they are not counted.
fn init_containers_need_network(w: &Workload, out: &mut Findings) {
    if sidecar::has_outbound_exclusion(&w.template) {
        return;
    }
    let spec = &w.template.spec;
    let concerned: Vec<String> = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| !ISTIO_INIT_CONTAINERS.contains(&c.name.as_str()))
        .filter(|c| c.restart_policy.as_deref() != Some("Always"))
        .filter(|c| run_as_user(spec, c) != Some(keys::PROXY_UID))
        .filter_map(|c| init_network_evidence(c).map(|why| format!("{} ({why})", c.name)))
        .collect();
    if concerned.is_empty() {
        return;
    }
    let (subject, verb) = if concerned.len() == 1 {
        ("Init container", "runs")
    } else {
        ("Init containers", "run")
    };
    out.add(
        Code::MR501,
        Severity::Warning,
        &w.kind,
        &w.meta,
        format!(
            "{subject} {} {verb} before the istio-proxy sidecar starts while outbound traffic is already redirected to it, so {} network calls fail and the pod never gets past initialisation. \
             Fix: run {} as the proxy's UID (`securityContext: {{runAsUser: {}}}`), or exclude {} destinations with `{}` or `{}` in {}, or turn on native sidecars (`{}: \"true\"`).",
            listed(&concerned, ", "),
            if concerned.len() == 1 { "its" } else { "their" },
            if concerned.len() == 1 { "it" } else { "them" },
            keys::PROXY_UID,
            if concerned.len() == 1 { "its" } else { "their" },
            keys::EXCLUDE_OUTBOUND_IP_RANGES,
            keys::EXCLUDE_OUTBOUND_PORTS,
            template_annotations_path(&w.kind),
            keys::NATIVE_SIDECAR,
        ),
    );
}

/// MR502: nothing holds the app until its proxy is ready.
fn app_starts_before_proxy(cx: &Context, w: &Workload, out: &mut Findings) {
    if cx.proxy_config(w).hold_application_until_proxy_starts == Some(true)
        || app_containers(w).next().is_none()
    {
        return;
    }
    out.add(
        Code::MR502,
        Severity::Info,
        &w.kind,
        &w.meta,
        format!(
            "Neither holdApplicationUntilProxyStarts nor native sidecars are on, so the app containers start beside istio-proxy and calls they make before it is ready fail (connection refused or 503). \
             Fix: add `{}: '{{\"holdApplicationUntilProxyStarts\": true}}'` to {} (or set meshConfig.defaultConfig.holdApplicationUntilProxyStarts: true mesh-wide).",
            keys::PROXY_CONFIG,
            template_annotations_path(&w.kind),
        ),
    );
}

/// A `sleep` argument as GNU sleep reads it: seconds, or a number with `s`, `m`, `h` or `d`.
fn sleep_seconds(arg: &str) -> Option<f64> {
    let (number, unit) = match arg.char_indices().last()? {
        (i, 's') => (&arg[..i], 1.0),
        (i, 'm') => (&arg[..i], 60.0),
        (i, 'h') => (&arg[..i], 3600.0),
        (i, 'd') => (&arg[..i], 86400.0),
        _ => (arg, 1.0),
    };
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some(value * unit)
}

/// How long a container's preStop hook sleeps: the `sleep` action, or the `sleep N` commands of an
/// `exec` hook added up (`sh -c "sleep 5 && nginx -s quit && sleep 10"` sleeps 15s).
fn pre_stop_sleep(c: &Container) -> Option<Duration> {
    let hook = c.lifecycle.as_ref()?.pre_stop.as_ref()?;
    if let Some(sleep) = &hook.sleep {
        return u64::try_from(sleep.seconds).ok().map(Duration::from_secs);
    }
    let command = hook.exec.as_ref()?.command.as_ref()?;
    let words = words(command);
    let total: f64 = words
        .windows(2)
        .filter(|pair| program(pair[0]) == "sleep")
        .filter_map(|pair| sleep_seconds(pair[1]))
        .sum();
    (total > 0.0).then(|| Duration::from_secs_f64(total))
}

/// MR503: the app's preStop sleep outlasts the proxy's drain. The grace period caps the sleep
/// (kubelet kills the pod when it ends), but a long grace period alone drains nothing.
fn proxy_exits_before_app_drains(cx: &Context, w: &Workload, out: &mut Findings) {
    let proxy = cx.proxy_config(w);
    if proxy.exit_on_zero_active_connections() {
        return;
    }
    let grace = w
        .template
        .spec
        .termination_grace_period_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(DEFAULT_GRACE_PERIOD, Duration::from_secs);
    let Some((container, sleep)) = app_containers(w)
        .filter_map(|c| pre_stop_sleep(c).map(|s| (c, s)))
        .max_by_key(|(_, s)| *s)
    else {
        return;
    };
    let drain = sleep.min(grace);
    let proxy_drain = proxy.termination_drain();
    if drain <= proxy_drain {
        return;
    }
    let capped = if sleep > grace {
        format!(
            " (capped by terminationGracePeriodSeconds {})",
            grace.as_secs()
        )
    } else {
        String::new()
    };
    out.add(
        Code::MR503,
        Severity::Warning,
        &w.kind,
        &w.meta,
        format!(
            "Container {} drains for {} in its preStop hook{capped}, but istio-proxy drains for only {} (terminationDrainDuration) and then exits, so the app's requests in the last {} fail (connection refused, 503). \
             Fix: add `{}: '{{\"terminationDrainDuration\": \"{}\"}}'` (at least the app's drain, below the grace period) to {} (merged with any config already there), or set `proxyMetadata: {{EXIT_ON_ZERO_ACTIVE_CONNECTIONS: \"true\"}}` in it.",
            container.name,
            format_duration(drain),
            format_duration(proxy_drain),
            format_duration(drain - proxy_drain),
            keys::PROXY_CONFIG,
            format_duration(Duration::from_secs(drain.as_secs_f64().ceil() as u64)),
            template_annotations_path(&w.kind),
        ),
    );
}

/// MR504: a selected, meshed app container without a readiness probe.
fn no_readiness_probe(cx: &Context, w: &Workload, out: &mut Findings) {
    let services = cx.services_selecting(w);
    if services.is_empty() {
        return;
    }
    let missing: Vec<&Container> = app_containers(w)
        .filter(|c| c.readiness_probe.is_none())
        .collect();
    let Some(first) = missing.first() else {
        return;
    };
    let names: Vec<&str> = missing.iter().map(|c| c.name.as_str()).collect();
    let service_names: Vec<&str> = services
        .iter()
        .map(|s| s.meta.name.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let example = match first.ports.iter().flatten().next() {
        Some(port) => format!(
            "`readinessProbe: {{httpGet: {{path: /ready, port: {}}}}}`",
            port.container_port
        ),
        None => "`readinessProbe: {httpGet: {path: /ready, port: <app port>}}`".to_string(),
    };
    out.add(
        Code::MR504,
        Severity::Info,
        &w.kind,
        &w.meta,
        format!(
            "{} {} no readinessProbe, so Service {} routes to each new pod as soon as its sidecar is ready, before the app listens: those requests fail with 503. \
             Fix: give {} a readiness probe, e.g. {example} (Istio rewrites it to its agent).",
            if names.len() == 1 { "Container" } else { "Containers" },
            if names.len() == 1 {
                format!("{} has", names[0])
            } else {
                format!("{} have", listed(&names, ", "))
            },
            listed(&service_names, ", "),
            if names.len() == 1 { "it" } else { "each" },
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Code;
    use crate::checks::testing::{findings, fixtures, objects, of, run_all, snapshot_with};
    use crate::snapshot::BuildOptions;

    fn deployment(annotations: &str, spec: &str) -> String {
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
{spec}
"#
        )
    }

    const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
"#;

    const MIGRATE: &str = r#"
      initContainers:
      - name: migrate
        image: flyway/flyway:10
        args: [migrate]
      - name: wait-db
        image: busybox:1.36
        command: [sh, -c, "until nc -z db 5432; do sleep 1; done"]
      - name: copy-config
        image: busybox:1.36
        command: [cp, /config/app.yaml, /shared/]
      containers:
      - name: app
        image: web:1
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /ready, port: 8080}}
"#;

    #[test]
    fn network_init_containers_fire_once_naming_each() {
        let f = findings(&deployment("{}", MIGRATE));
        assert_eq!(objects(&f, Code::MR501), ["Deployment/web"]);
        let message = &of(&f, Code::MR501)[0].message;
        assert!(message.contains("migrate (image flyway)"), "{message}");
        assert!(message.contains("wait-db (runs nc)"), "{message}");
        assert!(!message.contains("copy-config"));
        assert!(message.contains("runAsUser: 1337"));
    }

    #[test]
    fn uid_1337_outbound_exclusions_and_native_sidecars_clear_mr501() {
        let as_proxy = MIGRATE.replace(
            "      initContainers:",
            "      securityContext: {runAsUser: 1337}\n      initContainers:",
        );
        let f = findings(&deployment("{}", &as_proxy));
        assert!(objects(&f, Code::MR501).is_empty());
        let excluded = r#"{"traffic.sidecar.istio.io/excludeOutboundPorts": "5432"}"#;
        let f = findings(&deployment(excluded, MIGRATE));
        assert!(objects(&f, Code::MR501).is_empty());
        let native = r#"{"sidecar.istio.io/nativeSidecar": "true"}"#;
        let f = findings(&deployment(native, MIGRATE));
        assert!(objects(&f, Code::MR501).is_empty());
        assert!(objects(&f, Code::MR502).is_empty());
        let options = BuildOptions {
            native_sidecars: Some(true),
            ..BuildOptions::default()
        };
        let f = run_all(&snapshot_with(&deployment("{}", MIGRATE), &options));
        assert!(objects(&f, Code::MR501).is_empty());
    }

    #[test]
    fn container_uid_overrides_pod_uid() {
        let one = r#"
      securityContext: {runAsUser: 1337}
      initContainers:
      - name: fetch
        image: curlimages/curl:8.5.0
        args: [-sf, http://config/app.yaml]
        securityContext: {runAsUser: 1000}
      containers: [{name: app, image: web:1}]
"#;
        let f = findings(&deployment("{}", one));
        assert_eq!(objects(&f, Code::MR501), ["Deployment/web"]);
        assert!(
            of(&f, Code::MR501)[0]
                .message
                .contains("fetch (image curl)")
        );
    }

    #[test]
    fn istio_and_restartable_init_containers_are_not_app_init_containers() {
        let spec = r#"
      initContainers:
      - name: istio-init
        image: docker.io/istio/proxyv2:1.22.0
        args: [istio-iptables, -p, "15001"]
      - name: istio-validation
        image: docker.io/istio/proxyv2:1.22.0
      - name: cloud-sql-proxy
        image: gcr.io/cloud-sql-connectors/cloud-sql-proxy:2
        restartPolicy: Always
        args: [--port=5432, "project:region:db"]
      - name: kubectl-wait
        image: busybox
        restartPolicy: Always
        command: [kubectl, wait]
      containers: [{name: app, image: web:1}]
"#;
        let f = findings(&deployment("{}", spec));
        assert!(objects(&f, Code::MR501).is_empty());
    }

    #[test]
    fn migrators_and_clients_by_command() {
        for command in [
            r#"[python, manage.py, migrate]"#,
            r#"[bundle, exec, rake, "db:migrate"]"#,
            r#"[/usr/local/bin/psql, -h, db, -f, /schema.sql]"#,
            r#"[sh, -c, "STATUS=$(wget -qO- http://frontend) && echo $STATUS"]"#,
            r#"[/bin/sh, -c, "aws s3 cp s3://bucket/seed /data"]"#,
        ] {
            let spec = format!(
                "      initContainers:\n      - {{name: init, image: acme/tools:1, command: {command}}}\n      containers: [{{name: app, image: web:1}}]\n"
            );
            let f = findings(&deployment("{}", &spec));
            assert_eq!(objects(&f, Code::MR501), ["Deployment/web"], "{command}");
        }
        for command in [
            r#"[sh, -c, "chown -R 1000 /data"]"#,
            r#"[cp, -r, /git/templates, /work]"#,
        ] {
            let spec = format!(
                "      initContainers:\n      - {{name: init, image: busybox, command: {command}}}\n      containers: [{{name: app, image: web:1}}]\n"
            );
            let f = findings(&deployment("{}", &spec));
            assert!(objects(&f, Code::MR501).is_empty(), "{command}");
        }
    }

    #[test]
    fn image_names() {
        assert_eq!(image_tool("curlimages/curl:8.5.0").as_deref(), Some("curl"));
        assert_eq!(
            image_tool("flyway/flyway@sha256:abc").as_deref(),
            Some("flyway")
        );
        assert_eq!(
            image_tool("ghcr.io/acme/db-migrate:1").as_deref(),
            Some("migrate")
        );
        assert_eq!(
            image_tool("bitnami/kubectl:1.30").as_deref(),
            Some("kubectl")
        );
        assert_eq!(image_tool("amazon/aws-cli").as_deref(), Some("aws-cli"));
        assert_eq!(image_tool("busybox:1.36"), None);
        assert_eq!(image_tool("registry:5000/postgres:16"), None);
        assert_eq!(image_tool("acme/dig-deeper"), Some("dig".to_string()));
    }

    #[test]
    fn online_boutique_loadgenerator_init_container_fires() {
        let Some(dir) = fixtures() else { return };
        let yaml = std::fs::read_to_string(
            dir.join("realworld/online-boutique/kubernetes-manifests.yaml"),
        )
        .expect("fixture reads");
        let f = findings(&yaml);
        assert_eq!(objects(&f, Code::MR501), ["Deployment/loadgenerator"]);
        assert!(
            of(&f, Code::MR501)[0]
                .message
                .contains("frontend-check (runs wget)")
        );
        // Every Deployment gets MR502 (nothing holds the apps); none sleeps in preStop.
        assert_eq!(objects(&f, Code::MR502).len(), 12);
        assert!(objects(&f, Code::MR503).is_empty());
        // Every selected app container has a readiness probe; loadgenerator is selected by none.
        assert!(objects(&f, Code::MR504).is_empty());
    }

    #[test]
    fn bookinfo_has_no_readiness_probes() {
        let Some(dir) = fixtures() else { return };
        let yaml = std::fs::read_to_string(dir.join("realworld/bookinfo/bookinfo.yaml"))
            .expect("fixture reads");
        let f = findings(&yaml);
        let mut mr504 = objects(&f, Code::MR504);
        mr504.sort();
        assert_eq!(
            mr504,
            [
                "Deployment/details-v1",
                "Deployment/productpage-v1",
                "Deployment/ratings-v1",
                "Deployment/reviews-v1",
                "Deployment/reviews-v2",
                "Deployment/reviews-v3",
            ]
        );
        assert!(objects(&f, Code::MR501).is_empty());
    }

    #[test]
    fn app_starts_before_proxy_unless_held_or_native() {
        let spec = "      containers: [{name: app, image: web:1}]\n";
        let f = findings(&deployment("{}", spec));
        assert_eq!(objects(&f, Code::MR502), ["Deployment/web"]);
        assert!(
            of(&f, Code::MR502)[0]
                .message
                .contains("holdApplicationUntilProxyStarts")
        );
        let held = r#"{"proxy.istio.io/config": "holdApplicationUntilProxyStarts: true"}"#;
        let f = findings(&deployment(held, spec));
        assert!(objects(&f, Code::MR502).is_empty());
        let mesh = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    defaultConfig:
      holdApplicationUntilProxyStarts: true
"#;
        let f = findings(&format!("{mesh}---{}", deployment("{}", spec)));
        assert!(objects(&f, Code::MR502).is_empty());
        // A pod annotation saying false wins over the mesh default.
        let not_held = r#"{"proxy.istio.io/config": "holdApplicationUntilProxyStarts: false"}"#;
        let f = findings(&format!("{mesh}---{}", deployment(not_held, spec)));
        assert_eq!(objects(&f, Code::MR502), ["Deployment/web"]);
    }

    #[test]
    fn opted_out_and_host_network_workloads_are_not_checked() {
        let spec = "      hostNetwork: true\n      containers: [{name: app, image: web:1}]\n";
        let f = findings(&deployment("{}", spec));
        assert!(objects(&f, Code::MR502).is_empty());
        let opted_out = deployment("{}", "      containers: [{name: app, image: web:1}]\n")
            .replace(
                "labels: {app: web}",
                "labels: {app: web, sidecar.istio.io/inject: \"false\"}",
            );
        let f = findings(&opted_out);
        assert!(objects(&f, Code::MR502).is_empty());
    }

    fn with_pre_stop(hook: &str, grace: &str) -> String {
        format!(
            "      {grace}\n      containers:\n      - name: app\n        image: web:1\n        lifecycle:\n          preStop: {hook}\n      - name: worker\n        image: worker:1\n        lifecycle:\n          preStop: {{exec: {{command: [sleep, \"3\"]}}}}\n"
        )
    }

    #[test]
    fn pre_stop_sleep_longer_than_proxy_drain_fires() {
        for hook in [
            r#"{exec: {command: [sleep, "30"]}}"#,
            r#"{exec: {command: [/bin/sh, -c, "sleep 30"]}}"#,
            r#"{exec: {command: [sh, -c, "sleep 10 && nginx -s quit && sleep 20s"]}}"#,
            r#"{sleep: {seconds: 30}}"#,
        ] {
            let f = findings(&deployment("{}", &with_pre_stop(hook, "")));
            assert_eq!(objects(&f, Code::MR503), ["Deployment/web"], "{hook}");
            let message = &of(&f, Code::MR503)[0].message;
            assert!(
                message.contains("Container app drains for 30s"),
                "{message}"
            );
            assert!(message.contains("only 5s"), "{message}");
            assert!(
                message.contains("\"terminationDrainDuration\": \"30s\""),
                "{message}"
            );
        }
    }

    #[test]
    fn short_sleeps_long_drains_exit_on_zero_and_grace_periods_do_not_fire() {
        // A sleep within the default 5s drain.
        let f = findings(&deployment(
            "{}",
            &with_pre_stop(r#"{sleep: {seconds: 5}}"#, ""),
        ));
        assert!(objects(&f, Code::MR503).is_empty());
        // A long grace period alone drains nothing.
        let spec = "      terminationGracePeriodSeconds: 120\n      containers: [{name: app, image: web:1}]\n";
        let f = findings(&deployment("{}", spec));
        assert!(objects(&f, Code::MR503).is_empty());
        // The proxy drains long enough.
        let long = r#"{"proxy.istio.io/config": "terminationDrainDuration: 45s"}"#;
        let f = findings(&deployment(
            long,
            &with_pre_stop(r#"{sleep: {seconds: 30}}"#, ""),
        ));
        assert!(objects(&f, Code::MR503).is_empty());
        // The proxy waits for connections to close.
        let exit = r#"{"proxy.istio.io/config": "proxyMetadata: {EXIT_ON_ZERO_ACTIVE_CONNECTIONS: 'true'}"}"#;
        let f = findings(&deployment(
            exit,
            &with_pre_stop(r#"{sleep: {seconds: 30}}"#, ""),
        ));
        assert!(objects(&f, Code::MR503).is_empty());
        // Native sidecars stop after the app.
        let native = r#"{"sidecar.istio.io/nativeSidecar": "true"}"#;
        let f = findings(&deployment(
            native,
            &with_pre_stop(r#"{sleep: {seconds: 30}}"#, ""),
        ));
        assert!(objects(&f, Code::MR503).is_empty());
        // The grace period cuts the sleep short of the drain.
        let f = findings(&deployment(
            "{}",
            &with_pre_stop(
                r#"{sleep: {seconds: 30}}"#,
                "terminationGracePeriodSeconds: 4",
            ),
        ));
        assert!(objects(&f, Code::MR503).is_empty());
    }

    #[test]
    fn mesh_default_drain_duration_applies() {
        let mesh = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    defaultConfig:
      terminationDrainDuration: 20s
"#;
        let hook = r#"{exec: {command: [sleep, "15"]}}"#;
        let f = findings(&format!(
            "{mesh}---{}",
            deployment("{}", &with_pre_stop(hook, ""))
        ));
        assert!(objects(&f, Code::MR503).is_empty());
        let hook = r#"{exec: {command: [sleep, "25"]}}"#;
        let f = findings(&format!(
            "{mesh}---{}",
            deployment(
                "{}",
                &with_pre_stop(hook, "terminationGracePeriodSeconds: 22")
            )
        ));
        assert_eq!(objects(&f, Code::MR503), ["Deployment/web"]);
        let message = &of(&f, Code::MR503)[0].message;
        assert!(message.contains("drains for 22s"), "{message}");
        assert!(
            message.contains("capped by terminationGracePeriodSeconds 22"),
            "{message}"
        );
        assert!(message.contains("only 20s"), "{message}");
    }

    #[test]
    fn sleep_arguments() {
        assert_eq!(sleep_seconds("30"), Some(30.0));
        assert_eq!(sleep_seconds("1m"), Some(60.0));
        assert_eq!(sleep_seconds("0.5s"), Some(0.5));
        assert_eq!(sleep_seconds("$DELAY"), None);
        assert_eq!(sleep_seconds("infinity"), None);
    }

    #[test]
    fn readiness_probe_missing_only_for_selected_workloads() {
        let spec = r#"
      containers:
      - {name: app, image: web:1, ports: [{containerPort: 8080}]}
      - {name: cache, image: redis:7, readinessProbe: {exec: {command: [redis-cli, ping]}}}
"#;
        let f = findings(&format!("{SERVICE}---{}", deployment("{}", spec)));
        assert_eq!(objects(&f, Code::MR504), ["Deployment/web"]);
        let message = &of(&f, Code::MR504)[0].message;
        assert!(
            message.contains("Container app has no readinessProbe"),
            "{message}"
        );
        assert!(message.contains("Service web"), "{message}");
        assert!(message.contains("port: 8080"), "{message}");
        // No Service selects it: nothing routes to it by readiness.
        let f = findings(&deployment("{}", spec));
        assert!(objects(&f, Code::MR504).is_empty());
        // Every app container has a probe.
        let probed = spec.replace(
            "ports: [{containerPort: 8080}]}",
            "ports: [{containerPort: 8080}], readinessProbe: {tcpSocket: {port: 8080}}}",
        );
        let f = findings(&format!("{SERVICE}---{}", deployment("{}", &probed)));
        assert!(objects(&f, Code::MR504).is_empty());
    }

    #[test]
    fn a_running_pod_with_a_native_proxy_is_evidence_of_native_sidecars() {
        let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: native, namespace: shop}
spec:
  initContainers:
  - {name: fetch, image: curlimages/curl, args: [http://config]}
  - {name: istio-proxy, image: istio/proxyv2, restartPolicy: Always}
  containers:
  - name: app
    image: web:1
    lifecycle: {preStop: {sleep: {seconds: 30}}}
"#;
        let f = findings(yaml);
        for code in [Code::MR501, Code::MR502, Code::MR503] {
            assert!(objects(&f, code).is_empty(), "{code}");
        }
        // The same pod with the proxy as a plain container: all three speak.
        let plain = yaml
            .replace(
                "  - {name: istio-proxy, image: istio/proxyv2, restartPolicy: Always}\n",
                "",
            )
            .replace(
                "  containers:\n",
                "  containers:\n  - {name: istio-proxy, image: istio/proxyv2}\n",
            );
        let f = findings(&plain);
        for code in [Code::MR501, Code::MR502, Code::MR503] {
            assert_eq!(objects(&f, code), ["Pod/native"], "{code}");
        }
    }

    #[test]
    fn the_ignore_annotation_suppresses_a_code_on_its_object() {
        let spec = "      containers: [{name: app, image: web:1}]\n";
        let yaml = deployment("{}", spec).replace(
            "metadata: {name: web, namespace: shop}",
            "metadata: {name: web, namespace: shop, annotations: {meshreadiness.io/ignore: MR502}}",
        );
        assert!(objects(&findings(&yaml), Code::MR502).is_empty());
    }

    #[test]
    fn unlabelled_namespaces_are_checked_as_if_meshed() {
        let spec = "      containers: [{name: app, image: web:1}]\n";
        for ns in [
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {istio-injection: disabled}}\n",
        ] {
            let f = findings(&format!("{ns}---{SERVICE}---{}", deployment("{}", spec)));
            assert_eq!(objects(&f, Code::MR502), ["Deployment/web"], "{ns}");
            assert_eq!(objects(&f, Code::MR504), ["Deployment/web"], "{ns}");
        }
    }
}
