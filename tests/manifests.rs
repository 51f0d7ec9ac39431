//! The install manifests in `config/`: `config/default` renders with kustomize and the API server
//! accepts it (server-side dry-run), its Deployment meets the Pod Security "restricted" level,
//! its RBAC is least privilege (statically, and as the API server's RBAC authorizer decides),
//! and `config/monitoring` and `config/samples` render to what they should.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

use support::OPERATOR_NAMESPACE;

const SERVICE_ACCOUNT: &str = "system:serviceaccount:meshreadiness-system:meshready";
const REMEDIATION_ROLE: &str = "meshready-remediation";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `kubectl kustomize config/<dir>`, as a user would build it (default load restrictor).
fn kustomize(dir: &str) -> String {
    let path = root().join("config").join(dir);
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&path)
        .output()
        .expect("kubectl is installed");
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn documents(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(yaml).unwrap_or_else(|e| panic!("not YAML: {e}\n{yaml}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn read_config(path: &str) -> String {
    std::fs::read_to_string(root().join("config").join(path))
        .unwrap_or_else(|e| panic!("config/{path}: {e}"))
}

fn kinds(docs: &[Value]) -> BTreeSet<String> {
    docs.iter()
        .map(|d| d["kind"].as_str().unwrap().to_string())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered manifests"))
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn yaml_of(docs: &[&Value]) -> String {
    // kubectl reads a stream of JSON objects as well as YAML.
    docs.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Real (not dry-run) server-side apply, as `manager`: tests applying different objects of
/// the same name (a Namespace) must not take each other's fields away.
fn apply(plane: &support::ControlPlane, manager: &str, docs: &[&Value]) {
    let manager = format!("--field-manager={manager}");
    let out = plane.kubectl_with_stdin(
        &["apply", "--server-side", &manager, "-f", "-"],
        &yaml_of(docs),
    );
    assert!(out.status.success(), "apply failed: {}", stderr(&out));
}

/// Server-side dry-run apply: what `kubectl apply --server-side -k config/default` would do.
/// `--force-conflicts` because the harness installed the CRD itself under another field manager;
/// a first install has nothing to conflict with.
fn dry_run(plane: &support::ControlPlane, input: &str) -> std::process::Output {
    plane.kubectl_with_stdin(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-f",
            "-",
        ],
        input,
    )
}

#[test]
fn config_default_is_accepted_by_the_api_server_and_passes_pod_security_restricted() {
    let rendered = kustomize("default");
    let docs = documents(&rendered);
    let plane = support::control_plane(true);

    // The real Namespace first, so that the PodSecurity admission plugin (on by default) judges
    // the Deployment's pod template against the level the namespace enforces.
    let namespace = find(&docs, "Namespace", OPERATOR_NAMESPACE);
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    apply(plane, "manifests-test", &[namespace]);
    let live = plane.kubectl(&["get", "namespace", OPERATOR_NAMESPACE, "-o", "json"]);
    let live: Value = serde_json::from_str(&live).unwrap();
    assert_eq!(
        live["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );

    let out = dry_run(plane, &rendered);
    let warnings = stderr(&out);
    assert!(
        out.status.success(),
        "the API server refused config/default: {warnings}"
    );
    assert!(
        !warnings.contains("would violate PodSecurity"),
        "the Deployment does not meet Pod Security restricted: {warnings}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for doc in &docs {
        let name = doc["metadata"]["name"].as_str().unwrap();
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(&format!("/{name} ")) && l.contains("dry run")),
            "{} {name} was not applied: {stdout}",
            doc["kind"]
        );
    }

    // The check above is not vacuous: the same Deployment without its security contexts draws
    // the warning in this namespace.
    let mut insecure = find(&docs, "Deployment", "meshready").clone();
    insecure["metadata"]["name"] = json!("meshready-psa-probe");
    let pod = &mut insecure["spec"]["template"]["spec"];
    pod.as_object_mut().unwrap().remove("securityContext");
    for container in pod["containers"].as_array_mut().unwrap() {
        container.as_object_mut().unwrap().remove("securityContext");
    }
    let out = dry_run(plane, &insecure.to_string());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("would violate PodSecurity \"restricted"),
        "PodSecurity admission did not judge the probe Deployment: {}",
        stderr(&out)
    );
}

#[test]
fn config_samples_are_valid_meshreadiness_objects() {
    let rendered = kustomize("samples");
    let docs = documents(&rendered);
    assert!(!docs.is_empty());
    assert_eq!(kinds(&docs), BTreeSet::from(["MeshReadiness".to_string()]));
    let plane = support::control_plane(true);
    for namespace in docs
        .iter()
        .map(|d| {
            d["metadata"]["namespace"]
                .as_str()
                .expect("samples name their namespace")
        })
        .collect::<BTreeSet<_>>()
    {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
        apply(plane, "manifests-test-samples", &[&ns]);
    }
    // Validated by the CRD's schema and CEL rules.
    let out = dry_run(plane, &rendered);
    assert!(
        out.status.success(),
        "the API server refused config/samples: {}",
        stderr(&out)
    );
}

/// (apiGroup, resource) -> verbs, over every rule of a role.
fn permissions(role: &Value) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut map: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                map.entry((group.to_string(), resource.to_string()))
                    .or_default()
                    .extend(strings(&rule["verbs"]).into_iter().map(str::to_string));
            }
        }
    }
    map
}

fn verbs(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|v| v.to_string()).collect()
}

#[test]
fn rbac_is_least_privilege() {
    let docs = documents(&kustomize("default"));
    let roles: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
        .collect();
    assert!(roles.len() >= 3, "the operator's roles are rendered");
    for role in &roles {
        let name = &role["metadata"]["name"];
        for rule in role["rules"].as_array().unwrap() {
            let mentioned: Vec<&str> = ["apiGroups", "resources", "verbs", "resourceNames"]
                .iter()
                .flat_map(|k| strings(&rule[k]))
                .collect();
            assert!(
                !mentioned.contains(&"*"),
                "{name}: a wildcard in rule {rule}"
            );
            assert!(
                !strings(&rule["resources"])
                    .iter()
                    .any(|r| r.split('/').next() == Some("secrets")),
                "{name}: a rule on Secrets: {rule}"
            );
            assert!(rule.get("nonResourceURLs").is_none(), "{name}: {rule}");
            for verb in ["escalate", "bind", "impersonate"] {
                assert!(!mentioned.contains(&verb), "{name}: {verb} in {rule}");
            }
        }
    }

    // The operator reads exactly what its watches read, and writes only status and Events.
    let read = verbs(&["get", "list", "watch"]);
    let mut expected: BTreeMap<(String, String), BTreeSet<String>> = [
        ("", "namespaces"),
        ("", "pods"),
        ("", "services"),
        ("", "nodes"),
        ("", "configmaps"),
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
        ("security.istio.io", "peerauthentications"),
        ("networking.istio.io", "destinationrules"),
        ("networking.istio.io", "virtualservices"),
        ("networking.istio.io", "envoyfilters"),
        ("meshreadiness.io", "meshreadinesses"),
    ]
    .into_iter()
    .map(|(g, r)| ((g.to_string(), r.to_string()), read.clone()))
    .collect();
    expected.insert(
        ("meshreadiness.io".into(), "meshreadinesses/status".into()),
        verbs(&["patch", "update"]),
    );
    expected.insert(
        ("events.k8s.io".into(), "events".into()),
        verbs(&["create", "patch"]),
    );
    let operator = find(&docs, "ClusterRole", "meshready");
    assert_eq!(permissions(operator), expected);

    let leases = find(&docs, "Role", "meshready-leader-election");
    assert_eq!(leases["metadata"]["namespace"], OPERATOR_NAMESPACE);
    assert_eq!(
        permissions(leases),
        BTreeMap::from([(
            ("coordination.k8s.io".to_string(), "leases".to_string()),
            verbs(&["get", "list", "watch", "create", "update", "patch"])
        )])
    );

    // The remediation role is installed, and bound by nothing in config/default.
    let write = verbs(&["get", "list", "watch", "create", "patch", "delete"]);
    let remediation = find(&docs, "ClusterRole", REMEDIATION_ROLE);
    assert_eq!(
        permissions(remediation),
        BTreeMap::from([
            (
                ("security.istio.io".into(), "peerauthentications".into()),
                write.clone()
            ),
            (
                ("networking.istio.io".into(), "destinationrules".into()),
                write.clone()
            ),
            (
                ("networking.istio.io".into(), "virtualservices".into()),
                write
            ),
            (
                ("meshreadiness.io".into(), "meshreadinesses".into()),
                verbs(&["update", "patch"])
            ),
            (
                (
                    "meshreadiness.io".into(),
                    "meshreadinesses/finalizers".into()
                ),
                verbs(&["update"])
            ),
        ])
    );
    let bindings: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding" || d["kind"] == "RoleBinding")
        .collect();
    for binding in &bindings {
        assert_ne!(
            binding["roleRef"]["name"], REMEDIATION_ROLE,
            "config/default binds the remediation role: {binding}"
        );
    }

    // Every binding grants the operator's own ServiceAccount, the one the Deployment runs as.
    let deployment = find(&docs, "Deployment", "meshready");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "meshready");
    find(&docs, "ServiceAccount", "meshready");
    let bound: BTreeSet<String> = bindings
        .iter()
        .map(|b| b["roleRef"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        bound,
        BTreeSet::from([
            "meshready".to_string(),
            "meshready-leader-election".to_string()
        ])
    );
    for binding in &bindings {
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "meshready", "namespace": OPERATOR_NAMESPACE}]),
            "{binding}"
        );
    }

    // The opt-in binding, outside config/default, binds the remediation role to the same account.
    let opt_in = documents(&read_config("rbac/remediation-binding.yaml"));
    assert_eq!(opt_in.len(), 1);
    assert_eq!(opt_in[0]["kind"], "ClusterRoleBinding");
    assert_eq!(opt_in[0]["roleRef"]["name"], REMEDIATION_ROLE);
    assert_eq!(opt_in[0]["subjects"], bindings[0]["subjects"]);
}

/// `kubectl auth can-i VERB RESOURCE ARGS... --as <the operator's ServiceAccount>`.
/// A `resource/subresource` is asked with `--subresource`.
fn can(plane: &support::ControlPlane, verb: &str, resource: &str, args: &[&str]) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((resource, sub)) => (resource, Some(format!("--subresource={sub}"))),
        None => (resource, None),
    };
    let mut all = vec!["auth", "can-i", verb, resource, "--as", SERVICE_ACCOUNT];
    all.extend(subresource.as_deref());
    all.extend_from_slice(args);
    let out = plane.kubectl_with_stdin(&all, "");
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match answer.as_str() {
        "yes" => true,
        "no" => false,
        _ => panic!("kubectl {all:?}: {answer} {}", stderr(&out)),
    }
}

#[test]
fn the_api_server_grants_the_operator_its_job_and_nothing_more() {
    let docs = documents(&kustomize("default"));
    let plane = support::control_plane(true);
    let rbac: Vec<&Value> = docs
        .iter()
        .filter(|d| {
            let kind = d["kind"].as_str().unwrap();
            kind.ends_with("Role") || kind.ends_with("RoleBinding") || kind == "ServiceAccount"
        })
        .collect();
    let namespace = find(&docs, "Namespace", OPERATOR_NAMESPACE);
    apply(plane, "manifests-test", &[namespace]);
    apply(plane, "manifests-test", &rbac);

    let all = ["--all-namespaces"];
    let system = ["-n", OPERATOR_NAMESPACE];
    let team = ["-n", "team-a"];
    for (verb, resource, args) in [
        ("list", "pods", &all[..]),
        ("watch", "pods", &all[..]),
        ("watch", "namespaces", &[]),
        ("watch", "nodes", &[]),
        ("watch", "services", &all[..]),
        ("watch", "deployments.apps", &all[..]),
        ("watch", "replicasets.apps", &all[..]),
        ("watch", "statefulsets.apps", &all[..]),
        ("watch", "daemonsets.apps", &all[..]),
        ("watch", "jobs.batch", &all[..]),
        ("watch", "cronjobs.batch", &all[..]),
        ("watch", "configmaps", &["-n", "istio-system"]),
        ("watch", "peerauthentications.security.istio.io", &all[..]),
        ("watch", "destinationrules.networking.istio.io", &all[..]),
        ("watch", "virtualservices.networking.istio.io", &all[..]),
        ("watch", "envoyfilters.networking.istio.io", &all[..]),
        ("watch", "meshreadinesses.meshreadiness.io", &all[..]),
        (
            "patch",
            "meshreadinesses.meshreadiness.io/status",
            &team[..],
        ),
        ("create", "events.events.k8s.io", &team[..]),
        ("patch", "events.events.k8s.io", &team[..]),
        ("create", "leases.coordination.k8s.io", &system[..]),
        ("update", "leases.coordination.k8s.io", &system[..]),
    ] {
        assert!(
            can(plane, verb, resource, args),
            "the operator may not {verb} {resource} {args:?}"
        );
    }
    let refused = [
        ("get", "secrets", &all[..]),
        ("list", "secrets", &system[..]),
        ("watch", "secrets", &team[..]),
        ("patch", "meshreadinesses.meshreadiness.io", &team[..]),
        ("delete", "meshreadinesses.meshreadiness.io", &team[..]),
        (
            "update",
            "meshreadinesses.meshreadiness.io/finalizers",
            &team[..],
        ),
        ("create", "peerauthentications.security.istio.io", &team[..]),
        ("delete", "destinationrules.networking.istio.io", &team[..]),
        ("patch", "virtualservices.networking.istio.io", &team[..]),
        ("create", "pods", &team[..]),
        ("patch", "deployments.apps", &team[..]),
        ("patch", "configmaps", &["-n", "istio-system"]),
        ("create", "leases.coordination.k8s.io", &team[..]),
        ("create", "events", &team[..]),
        (
            "create",
            "clusterrolebindings.rbac.authorization.k8s.io",
            &[],
        ),
    ];
    for (verb, resource, args) in refused {
        assert!(
            !can(plane, verb, resource, args),
            "the operator may {verb} {resource} {args:?}"
        );
    }

    // Opting in to remediation grants exactly the remediation writes, still no Secrets.
    let opt_in = documents(&read_config("rbac/remediation-binding.yaml"));
    apply(plane, "manifests-test", &[&opt_in[0]]);
    for (verb, resource) in [
        ("create", "peerauthentications.security.istio.io"),
        ("delete", "destinationrules.networking.istio.io"),
        ("patch", "virtualservices.networking.istio.io"),
        ("update", "meshreadinesses.meshreadiness.io/finalizers"),
        ("patch", "meshreadinesses.meshreadiness.io"),
    ] {
        assert!(
            can(plane, verb, resource, &team),
            "with remediation the operator may not {verb} {resource}"
        );
    }
    for (verb, resource) in [
        ("get", "secrets"),
        ("create", "envoyfilters.networking.istio.io"),
        ("delete", "meshreadinesses.meshreadiness.io"),
    ] {
        assert!(
            !can(plane, verb, resource, &team),
            "with remediation the operator may {verb} {resource}"
        );
    }
}

#[test]
fn the_deployment_runs_the_operator_as_it_expects() {
    let docs = documents(&kustomize("default"));
    let deployment = find(&docs, "Deployment", "meshready");
    assert_eq!(deployment["metadata"]["namespace"], OPERATOR_NAMESPACE);
    // Two, with a Lease electing the writer.
    assert_eq!(deployment["spec"]["replicas"], 2);
    let template = &deployment["spec"]["template"];
    let pod = &template["spec"];
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["image"], "ghcr.io/meshready/meshready:0.1.0");
    assert_eq!(c["args"], json!(["controller", "--leader-elect"]));

    let env: BTreeMap<&str, &str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap();
            (
                name,
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        env,
        BTreeMap::from([
            ("POD_NAME", "metadata.name"),
            ("POD_NAMESPACE", "metadata.namespace"),
            ("OPERATOR_NAMESPACE", "metadata.namespace"),
        ])
    );

    // The admin port is the operator's default --admin-address, probed on /healthz and /readyz.
    assert_eq!(
        c["ports"],
        json!([{"name": "http-admin", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "http-admin"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "http-admin"})
    );
    let help = Command::new(env!("CARGO_BIN_EXE_meshready"))
        .args(["controller", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let admin = help
        .lines()
        .skip_while(|l| !l.contains("--admin-address"))
        .take_while(|l| !l.trim_start().starts_with("-h,"))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        admin.contains(":8080]"),
        "`meshready controller` no longer serves on port 8080 by default: {help}"
    );
    assert!(
        help.contains("env: OPERATOR_NAMESPACE"),
        "`meshready controller` no longer reads OPERATOR_NAMESPACE: {help}"
    );

    for (kind, amounts) in [("requests", ["50m", "64Mi"]), ("limits", ["500m", "256Mi"])] {
        assert_eq!(
            c["resources"][kind],
            json!({"cpu": amounts[0], "memory": amounts[1]}),
            "{kind}"
        );
    }

    // Pod Security "restricted", spelled out (the API server test checks the verdict).
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert!(sc["capabilities"].get("add").is_none());

    // Common labels everywhere, but selectors exactly as written (they are immutable).
    for doc in &docs {
        let labels = &doc["metadata"]["labels"];
        assert_eq!(
            labels["app.kubernetes.io/name"], "meshready",
            "{}",
            doc["kind"]
        );
        assert_eq!(
            labels["app.kubernetes.io/part-of"], "meshready",
            "{}",
            doc["kind"]
        );
    }
    let selector = json!({
        "app.kubernetes.io/name": "meshready",
        "app.kubernetes.io/component": "controller",
    });
    assert_eq!(deployment["spec"]["selector"]["matchLabels"], selector);
    for (key, value) in selector.as_object().unwrap() {
        assert_eq!(&template["metadata"]["labels"][key], value);
    }
    let pdb = find(&docs, "PodDisruptionBudget", "meshready");
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], selector);

    // The metrics Service reaches the admin port of the Deployment's pods.
    let service = find(&docs, "Service", "meshready-metrics");
    assert_eq!(service["spec"]["selector"], selector);
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "http-admin", "port": 8080, "targetPort": "http-admin",
                "protocol": "TCP", "appProtocol": "http"}])
    );
}

/// The metric names the operator exposes (DESIGN.md section 5).
const METRICS: [&str; 6] = [
    "meshreadiness_findings",
    "meshreadiness_ready",
    "meshreadiness_reconcile_duration_seconds",
    "meshreadiness_reconcile_errors_total",
    "meshreadiness_remediations",
    "meshreadiness_api_writes_total",
];

/// The `meshreadiness_*` metric names a PromQL expression reads, histogram suffixes removed.
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("meshreadiness_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|b| *b == "meshreadiness_reconcile_duration_seconds")
            })
            .unwrap_or(name);
        found.insert(base.to_string());
        rest = &tail[end..];
    }
    found
}

#[test]
fn the_metric_names_are_those_the_operator_registers() {
    use prometheus::core::Collector;
    let metrics = meshready::operator::metrics::Metrics::new().unwrap();
    let registered: Vec<String> = [
        metrics.api_writes.desc(),
        metrics.reconcile_errors.desc(),
        metrics.reconcile_duration.desc(),
    ]
    .iter()
    .flat_map(|d| d.iter().map(|d| d.fq_name.clone()))
    .collect();
    for name in registered {
        assert!(METRICS.contains(&name.as_str()), "{name} is not in METRICS");
    }
}

#[test]
fn config_monitoring_renders_alerts_dashboard_and_scrape_config() {
    let docs = documents(&kustomize("monitoring"));
    assert_eq!(
        kinds(&docs),
        [
            "ClusterRole",
            "ConfigMap",
            "PrometheusRule",
            "ServiceMonitor"
        ]
        .map(String::from)
        .into(),
    );
    let default = documents(&kustomize("default"));

    // The ServiceMonitor selects the metrics Service of config/default, on its named port.
    let monitor = find(&docs, "ServiceMonitor", "meshready");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let service = find(&default, "Service", "meshready-metrics");
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&service["metadata"]["labels"][key], value, "{key}");
    }
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!([OPERATOR_NAMESPACE])
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], service["spec"]["ports"][0]["name"]);
    assert_eq!(endpoint["path"], "/metrics");
    // The findings' own `namespace` label must win over the scrape target's.
    assert_eq!(endpoint["honorLabels"], true);

    // The alerts, each on the operator's metrics.
    let rule = find(&docs, "PrometheusRule", "meshready");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    let alerts: BTreeMap<&str, &Value> = rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| (r["alert"].as_str().unwrap(), r))
        .collect();
    for (alert, metric, pieces) in [
        (
            "MeshReadinessNotReady",
            "meshreadiness_ready",
            &["== 0"][..],
        ),
        (
            "MeshReadinessErrorFinding",
            "meshreadiness_findings",
            &["severity=\"Error\"", "> 0"][..],
        ),
        (
            "MeshReadyNotReconciling",
            "meshreadiness_reconcile_duration_seconds",
            &[
                "increase(meshreadiness_reconcile_duration_seconds_count[15m])",
                "absent(",
            ][..],
        ),
        (
            "MeshReadyPermissiveRemediation",
            "meshreadiness_remediations",
            &["kind=\"PeerAuthentication\"", "state=\"Applied\"", "> 0"][..],
        ),
    ] {
        let rule = alerts
            .get(alert)
            .unwrap_or_else(|| panic!("no alert {alert}"));
        let expr = rule["expr"].as_str().unwrap();
        assert!(metrics_in(expr).contains(metric), "{alert}: {expr}");
        for piece in pieces {
            assert!(expr.contains(piece), "{alert}: {piece} not in {expr}");
        }
        assert!(rule["labels"]["severity"].is_string(), "{alert}");
        assert!(rule["annotations"]["summary"].is_string(), "{alert}");
    }
    assert_eq!(alerts["MeshReadinessNotReady"]["for"], "15m");
    for (alert, rule) in &alerts {
        let expr = rule["expr"].as_str().unwrap();
        for metric in metrics_in(expr) {
            assert!(
                METRICS.contains(&metric.as_str()),
                "{alert}: unknown {metric}"
            );
        }
    }

    // The Grafana dashboard: a ConfigMap the sidecar picks up, whose JSON reads those metrics.
    let dashboard = find(&docs, "ConfigMap", "meshready-grafana-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let data = dashboard["data"].as_object().unwrap();
    assert_eq!(data.len(), 1);
    let json: Value = serde_json::from_str(data["meshready.json"].as_str().unwrap())
        .expect("the dashboard is JSON");
    assert_eq!(json["uid"], "meshready");
    let mut used = BTreeSet::new();
    for panel in json["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let names = metrics_in(expr);
            assert!(!names.is_empty(), "{}: {expr}", panel["title"]);
            for name in &names {
                assert!(
                    METRICS.contains(&name.as_str()),
                    "dashboard: unknown {name}"
                );
            }
            used.extend(names);
        }
    }
    assert_eq!(
        used,
        METRICS.map(String::from).into(),
        "the dashboard shows every metric"
    );
}

/// The schema of the object at `path` (metadata is not in a CRD's schema: only its well-known
/// fields are accepted), stepping into array items as kube-state-metrics does.
fn schema_at<'a>(schema: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut node = schema;
    for (i, step) in path.iter().enumerate() {
        if i == 0 && *step == "metadata" {
            return ["name", "namespace", "generation", "labels", "annotations"]
                .contains(&path.get(1).copied().unwrap_or(""))
                .then_some(&Value::Null);
        }
        if node["type"] == "array" {
            node = &node["items"];
        }
        node = node["properties"].get(*step)?;
    }
    Some(node)
}

#[test]
fn the_kube_state_metrics_config_reads_fields_the_crd_has() {
    let config = documents(&read_config(
        "monitoring/kube-state-metrics/custom-resource-state.yaml",
    ));
    assert_eq!(config.len(), 1);
    assert_eq!(config[0]["kind"], "CustomResourceStateMetrics");
    let crd = documents(&std::fs::read_to_string(root().join("crds/meshreadiness.yaml")).unwrap());
    let crd = &crd[0];
    let resources = config[0]["spec"]["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 1);
    let resource = &resources[0];
    let gvk = &resource["groupVersionKind"];
    assert_eq!(gvk["group"], crd["spec"]["group"]);
    assert_eq!(gvk["kind"], crd["spec"]["names"]["kind"]);
    let version = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == gvk["version"])
        .expect("the config's version is served by the CRD");
    let schema = &version["schema"]["openAPIV3Schema"];

    let path = |v: &Value| -> Vec<String> { strings(v).into_iter().map(String::from).collect() };
    let check = |base: &[String], relative: &Value, what: &str| {
        let mut full: Vec<&str> = base.iter().map(String::as_str).collect();
        full.extend(strings(relative));
        assert!(
            schema_at(schema, &full).is_some(),
            "{what}: {full:?} is not a field of MeshReadiness"
        );
    };
    for (_, from) in resource["labelsFromPath"].as_object().unwrap() {
        check(&[], from, "labelsFromPath");
    }
    let mut names = BTreeSet::new();
    for metric in resource["metrics"].as_array().unwrap() {
        let name = metric["name"].as_str().unwrap();
        names.insert(name);
        let each = &metric["each"];
        let body = match each["type"].as_str().unwrap() {
            "Gauge" => &each["gauge"],
            "StateSet" => &each["stateSet"],
            other => panic!("{name}: unexpected type {other}"),
        };
        let base = path(&body["path"]);
        check(&[], &body["path"], name);
        if let Some(value) = body.get("valueFrom") {
            check(&base, value, name);
        }
        for (_, from) in body["labelsFromPath"].as_object().into_iter().flatten() {
            check(&base, from, name);
        }
        if let Some(list) = body.get("list") {
            let field =
                schema_at(schema, &base.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
            assert_eq!(&field["enum"], list, "{name}: the states are the enum's");
        }
    }
    for wanted in [
        "status_condition",
        "status_errors",
        "status_warnings",
        "status_infos",
        "status_namespaces",
    ] {
        assert!(names.contains(wanted), "no {wanted}");
    }
}
