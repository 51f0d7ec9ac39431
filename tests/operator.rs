//! The operator against a real kube-apiserver with Istio's CRDs: findings appear in status and as
//! Events, and clear when fixed; Ready works with kubectl; nothing is written when nothing changed.

mod support;

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use meshready::api::{MeshReadiness, MeshReadinessStatus};
use support::{OPERATOR_NAMESPACE, apply_yaml, control_plane, eventually, operator};

const WAIT: Duration = Duration::from_secs(60);

async fn setup() -> (Client, &'static support::ControlPlane) {
    let plane = control_plane(true);
    operator(plane);
    (plane.client().await, plane)
}

async fn status(client: &Client, ns: &str, name: &str) -> Option<MeshReadinessStatus> {
    Api::<MeshReadiness>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()?
        .status
}

fn condition<'a>(
    status: &'a MeshReadinessStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// Waits until the condition `type_` has `want` status, and returns the status.
async fn wait_condition(
    client: &Client,
    ns: &str,
    name: &str,
    type_: &str,
    want: &str,
) -> MeshReadinessStatus {
    eventually(WAIT, &format!("{ns}/{name} {type_}={want}"), || async {
        let s = status(client, ns, name).await?;
        (condition(&s, type_)?.status == want).then_some(s)
    })
    .await
}

async fn events(client: &Client, ns: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

async fn wait_event(client: &Client, ns: &str, reason: &str, note_contains: &str) -> Event {
    eventually(
        WAIT,
        &format!("event {reason} in {ns} mentioning {note_contains}"),
        || async {
            events(client, ns).await.into_iter().find(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.note
                        .as_deref()
                        .unwrap_or_default()
                        .contains(note_contains)
            })
        },
    )
    .await
}

fn namespace(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{istio-injection: enabled}}\n---\napiVersion: meshreadiness.io/v1alpha1\nkind: MeshReadiness\nmetadata: {{name: ready, namespace: {name}}}\nspec: {{}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_port_appears_and_clears() {
    let (client, _) = setup().await;
    let ns = "t-protocols";
    apply_yaml(&client, &namespace(ns)).await;
    apply_yaml(&client, &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  selector: {{app: web}}\n  ports: [{{name: web, port: 8080}}]\n")).await;
    let s = wait_condition(&client, ns, "ready", "ProtocolsDeclared", "False").await;
    assert!(
        s.findings
            .iter()
            .any(|f| f.code.as_str() == "MR201" && f.name == "web"),
        "{:?}",
        s.findings
    );
    assert_eq!(
        condition(&s, "Ready").unwrap().status,
        "True",
        "a Warning does not block Ready by default"
    );
    wait_event(&client, ns, "FindingAppeared", "MR201").await;

    apply_yaml(&client, &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  selector: {{app: web}}\n  ports: [{{name: http-web, port: 8080}}]\n")).await;
    let s = wait_condition(&client, ns, "ready", "ProtocolsDeclared", "True").await;
    assert!(!s.findings.iter().any(|f| f.code.as_str() == "MR201"));
    let cleared = wait_event(&client, ns, "FindingCleared", "MR201").await;
    assert_eq!(cleared.type_.as_deref(), Some("Normal"));
}

/// One family end to end: the broken objects raise `code` (condition False, a Warning Event);
/// the fixed objects clear it (a Normal Event) and flip the condition back (an Event too).
async fn family(
    ns: &str,
    condition_type: &str,
    code: &str,
    broken: &str,
    fixed: &str,
) -> (MeshReadinessStatus, MeshReadinessStatus) {
    let (client, _) = setup().await;
    apply_yaml(&client, &namespace(ns)).await;
    apply_yaml(&client, &broken.replace("NS", ns)).await;
    let before = wait_condition(&client, ns, "ready", condition_type, "False").await;
    assert!(
        before.findings.iter().any(|f| f.code.as_str() == code),
        "{code} expected in {:?}",
        before.findings
    );
    let c = condition(&before, condition_type).unwrap();
    assert!(c.message.contains(code), "{}", c.message);
    assert_eq!(c.observed_generation, Some(1));
    let appeared = wait_event(&client, ns, "FindingAppeared", code).await;
    assert_eq!(appeared.type_.as_deref(), Some("Warning"));

    apply_yaml(&client, &fixed.replace("NS", ns)).await;
    let after = wait_condition(&client, ns, "ready", condition_type, "True").await;
    assert!(
        !after.findings.iter().any(|f| f.code.as_str() == code),
        "{code} still in {:?}",
        after.findings
    );
    let cleared = wait_event(&client, ns, "FindingCleared", code).await;
    assert_eq!(cleared.type_.as_deref(), Some("Normal"));
    wait_event(&client, ns, &format!("{condition_type}True"), "").await;
    (before, after)
}

const STRICT: &str = "---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: NS}
spec: {mtls: {mode: STRICT}}
";

fn web(extra_template_annotations: &str, container_extra: &str) -> String {
    format!(
        "---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: NS}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata:
      labels: {{app: web}}
      annotations: {{proxy.istio.io/config: '{{\"holdApplicationUntilProxyStarts\": true}}'{extra_template_annotations}}}
    spec:
      containers:
      - name: web
        image: ghcr.io/shop/web:1.0
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /ready, port: 8080}}}}
{container_extra}---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: NS}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"
    )
}

const GOOD_RETRIES: &str = "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: NS}
spec:
  hosts: [web]
  http:
  - match: [{method: {exact: GET}}]
    route: [{destination: {host: web}}]
    retries: {attempts: 2, retryOn: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes,reset'}
  - route: [{destination: {host: web}}]
    retries: {attempts: 2, retryOn: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes,reset-before-request'}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_family() {
    let labels = |extra: &str| {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: NS\n  labels: {{istio-injection: enabled{extra}}}\n"
        )
    };
    family(
        "t-injection",
        "SidecarsInjected",
        "MR103",
        &labels(", istio.io/rev: canary"),
        &labels(""),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_family_blocks_ready_and_warns_the_object() {
    let dr = |mode: &str| {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web, namespace: NS}}\nspec: {{host: web, trafficPolicy: {{tls: {{mode: {mode}}}}}}}\n"
        )
    };
    let base = format!("{STRICT}{}{GOOD_RETRIES}", web("", ""));
    let (before, after) = family(
        "t-mtls",
        "MtlsCompatible",
        "MR302",
        &format!("{base}{}", dr("DISABLE")),
        &dr("ISTIO_MUTUAL"),
    )
    .await;
    let ready = condition(&before, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "BlockingFindings")
    );
    assert_eq!(before.errors, 1);
    assert_eq!(condition(&after, "Ready").unwrap().status, "True");
    // The DestinationRule's owners hear of the Error where they look.
    let (client, _) = setup().await;
    let on_dr = events(&client, "t-mtls").await.into_iter().find(|e| {
        e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("DestinationRule")
            && e.reason.as_deref() == Some("DestinationRuleTlsConflictsWithStrict")
    });
    assert!(
        on_dr.is_some(),
        "a Warning Event regarding the DestinationRule"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_family() {
    let off = ", sidecar.istio.io/rewriteAppHTTPProbers: 'false'";
    family(
        "t-probes",
        "ProbesCompatible",
        "MR401",
        &format!("{STRICT}{}{GOOD_RETRIES}", web(off, "")),
        &web("", ""),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_family() {
    let pre_stop = "        lifecycle: {preStop: {exec: {command: [sleep, '30']}}}\n";
    family(
        "t-lifecycle",
        "LifecycleSafe",
        "MR503",
        &format!("{}{GOOD_RETRIES}", web("", pre_stop)),
        &web("", ""),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_family() {
    let annotated = format!("{}{GOOD_RETRIES}", web("", "")).replace(
        "metadata: {name: web, namespace: NS}\nspec:\n  selector: {app: web}\n  ports",
        "metadata: {name: web, namespace: NS, annotations: {meshreadiness.io/app-idle-timeout: 30s}}\nspec:\n  selector: {app: web}\n  ports",
    );
    assert!(annotated.contains("app-idle-timeout"));
    let dr = "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web, namespace: NS}\nspec: {host: web, trafficPolicy: {connectionPool: {http: {idleTimeout: 27s}}}}\n";
    family("t-timeouts", "IdleTimeoutsAligned", "MR601", &annotated, dr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_family() {
    let replaced = "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: web, namespace: NS}\nspec:\n  hosts: [web]\n  http:\n  - match: [{method: {exact: GET}}]\n    route: [{destination: {host: web}}]\n    retries: {attempts: 3, retryOn: '503'}\n  - route: [{destination: {host: web}}]\n    retries: {attempts: 2, retryOn: 'connect-failure,refused-stream,reset-before-request'}\n";
    family(
        "t-retries",
        "RetriesCoverResets",
        "MR702",
        &format!("{}{replaced}", web("", "")),
        GOOD_RETRIES,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_family() {
    let reserved = web("", "").replace(
        "containerPort: 8080}]",
        "containerPort: 8080}, {name: admin, containerPort: 15000}]",
    );
    family(
        "t-listeners",
        "ListenersReachable",
        "MR803",
        &format!("{reserved}{GOOD_RETRIES}"),
        &web("", ""),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_family() {
    let vs = GOOD_RETRIES.replace("route: [{destination: {host: web}}]\n    retries: {attempts: 2, retryOn: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes,reset'}", "route: [{destination: {host: web, subset: v2}}]\n    retries: {attempts: 2, retryOn: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes,reset'}");
    assert!(vs.contains("subset: v2"));
    let dr = "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web, namespace: NS}\nspec: {host: web, subsets: [{name: v2, labels: {version: v2}}]}\n";
    family(
        "t-routes",
        "RoutesResolvable",
        "MR901",
        &format!("{}{vs}", web("", "")),
        dr,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_sees_ready_and_printer_columns() {
    let (client, plane) = setup().await;
    let ns = "t-kubectl";
    apply_yaml(&client, &namespace(ns)).await;
    apply_yaml(
        &client,
        &format!("{}{GOOD_RETRIES}", web("", "")).replace("NS", ns),
    )
    .await;
    plane.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "meshreadiness/ready",
        "-n",
        ns,
        "--timeout=60s",
    ]);
    let table = plane.kubectl(&["get", "meshreadiness", "-n", ns]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "REASON",
            "NAMESPACES",
            "ERRORS",
            "WARNINGS",
            "REMEDIATION",
            "AGE"
        ]
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..7],
        ["ready", "True", "NoBlockingFindings", "1", "0", "0", "Off"],
        "{table}"
    );
    // The short names work too.
    assert!(plane.kubectl(&["get", "mr", "-n", ns]).contains("ready"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_changed_nothing_written() {
    let (client, plane) = setup().await;
    let metrics = operator(plane);
    let ns = "t-noop";
    apply_yaml(&client, &namespace(ns)).await;
    apply_yaml(
        &client,
        &format!("{}{GOOD_RETRIES}", web("", "")).replace("NS", ns),
    )
    .await;
    wait_condition(&client, ns, "ready", "Ready", "True").await;
    // Let the first reconciles settle, then count.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes_to_ns = || {
        plane
            .operator_writes(|e| e["objectRef"]["namespace"] == ns)
            .len()
    };
    let before = writes_to_ns();
    assert!(before >= 1, "the first status write is audited");
    let reconciles = || {
        metrics
            .reconcile_duration
            .with_label_values(&[] as &[&str])
            .get_sample_count()
    };
    let reconciled = reconciles();
    // A change the checks do not care about still triggers a reconcile.
    for i in 0..3 {
        apply_yaml(&client, &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}, labels: {{touch: 't{i}'}}}}\nspec:\n  selector: {{app: web}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n")).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(reconciles() > reconciled, "the touches were reconciled");
    assert_eq!(
        writes_to_ns(),
        before,
        "no status patch, no Event: {:?}",
        plane.operator_writes(|e| e["objectRef"]["namespace"] == ns)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_mesh_readiness_objects_both_report() {
    let (client, _) = setup().await;
    let ns = "t-two";
    apply_yaml(
        &client,
        &namespace(ns).replace(
            "istio-injection: enabled",
            "istio-injection: enabled, team: two",
        ),
    )
    .await;
    apply_yaml(&client, &format!(
        "apiVersion: meshreadiness.io/v1alpha1\nkind: MeshReadiness\nmetadata: {{name: team-two, namespace: {}}}\nspec: {{namespaceSelector: {{matchLabels: {{team: two}}}}}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: db, namespace: {ns}}}\nspec:\n  selector: {{app: db}}\n  ports: [{{port: 5432}}]\n",
        support::OPERATOR_NAMESPACE
    )).await;
    let own = wait_condition(&client, ns, "ready", "ProtocolsDeclared", "False").await;
    let selecting = wait_condition(
        &client,
        support::OPERATOR_NAMESPACE,
        "team-two",
        "ProtocolsDeclared",
        "False",
    )
    .await;
    for status in [&own, &selecting] {
        assert!(
            status
                .findings
                .iter()
                .any(|f| f.code.as_str() == "MR201" && f.namespace == ns && f.name == "db")
        );
        assert_eq!(status.namespaces, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selector_outside_operator_namespace_and_suspend_are_reported() {
    let (client, _) = setup().await;
    let ns = "t-refused";
    apply_yaml(&client, &namespace(ns)).await;
    apply_yaml(&client, &format!(
        "apiVersion: meshreadiness.io/v1alpha1\nkind: MeshReadiness\nmetadata: {{name: wide, namespace: {ns}}}\nspec: {{namespaceSelector: {{matchLabels: {{team: x}}}}}}\n---\napiVersion: meshreadiness.io/v1alpha1\nkind: MeshReadiness\nmetadata: {{name: paused, namespace: {ns}}}\nspec: {{suspend: true}}\n"
    )).await;
    let wide = wait_condition(&client, ns, "wide", "Ready", "False").await;
    assert_eq!(
        condition(&wide, "Ready").unwrap().reason,
        "SelectorNotAllowed"
    );
    let paused = wait_condition(&client, ns, "paused", "Ready", "False").await;
    assert_eq!(condition(&paused, "Ready").unwrap().reason, "Suspended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_refuses_invalid_specs() {
    let (client, _) = setup().await;
    let ns = "t-invalid";
    apply_yaml(&client, &namespace(ns)).await;
    use serde_json::json;
    // Each spec, and the field the API server's message must name.
    let cases = [
        (json!({"interval": "10s"}), "spec.interval"),
        (json!({"interval": "soon"}), "spec.interval"),
        (json!({"interval": "-5m"}), "spec.interval"),
        (json!({"interval": 300}), "spec.interval"),
        (
            json!({"checks": {"disabled": ["MR999"]}}),
            "spec.checks.disabled",
        ),
        (
            json!({"checks": {"disabled": ["mr201"]}}),
            "spec.checks.disabled",
        ),
        (
            json!({"checks": {"disabled": "MR201"}}),
            "spec.checks.disabled",
        ),
        (
            json!({"remediation": {"retryAttempts": 0}}),
            "spec.remediation.retryAttempts",
        ),
        (
            json!({"remediation": {"retryAttempts": 11}}),
            "spec.remediation.retryAttempts",
        ),
        (
            json!({"remediation": {"retryAttempts": "two"}}),
            "spec.remediation.retryAttempts",
        ),
        (
            json!({"remediation": {"permissiveMtlsTtl": "0s"}}),
            "permissiveMtlsTtl",
        ),
        (
            json!({"remediation": {"permissiveMtlsTtl": "721h"}}),
            "permissiveMtlsTtl",
        ),
        (
            json!({"remediation": {"permissiveMtlsTtl": "3 days"}}),
            "permissiveMtlsTtl",
        ),
        (
            json!({"remediation": {"mode": "Sometimes"}}),
            "spec.remediation.mode",
        ),
        (
            json!({"remediation": {"mode": "apply"}}),
            "spec.remediation.mode",
        ),
        (
            json!({"remediation": {"idleTimeout": "yes"}}),
            "spec.remediation.idleTimeout",
        ),
        (
            json!({"appIdleTimeouts": [{"service": "Not_A_Label", "timeout": "5s"}]}),
            "service",
        ),
        (
            json!({"appIdleTimeouts": [{"service": "a".repeat(64), "timeout": "5s"}]}),
            "service",
        ),
        (
            json!({"appIdleTimeouts": [{"service": "web", "timeout": "500ms"}]}),
            "timeout",
        ),
        (json!({"appIdleTimeouts": [{"service": "web"}]}), "timeout"),
        (json!({"appIdleTimeouts": [{"timeout": "5s"}]}), "service"),
        (json!({"readyThreshold": "Info"}), "spec.readyThreshold"),
        (json!({"suspend": "yes"}), "spec.suspend"),
        (json!({"intervall": "5m"}), "spec.intervall"),
        (
            json!({"remediation": {"ttl": "1h"}}),
            "spec.remediation.ttl",
        ),
    ];
    assert!(cases.len() >= 20);
    let resource = kube::api::ApiResource::erase::<MeshReadiness>(&());
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    // As GitOps tools send them (server-side apply, strict field validation): unknown fields
    // are errors, not warnings.
    let strict = kube::api::PatchParams::apply("meshready-tests").validation_strict();
    for (i, (spec, field)) in cases.into_iter().enumerate() {
        let name = format!("bad-{i}");
        let object = json!({"apiVersion": "meshreadiness.io/v1alpha1", "kind": "MeshReadiness", "metadata": {"name": name}, "spec": spec});
        let err = raw
            .patch(&name, &strict, &kube::api::Patch::Apply(&object))
            .await
            .expect_err(&format!("{spec} must be refused"));
        // 422 from the schema and CEL; a type mismatch under server-side apply is refused
        // while building the typed patch, which the API server reports as 500.
        assert!(
            matches!(&err, kube::Error::Api(s) if [400, 422, 500].contains(&s.code)),
            "{spec}: {err}"
        );
        assert!(
            err.to_string().contains(field),
            "{spec} must name {field}: {err}"
        );
    }
    // Refused means never stored: the operator cannot see them.
    let stored = Api::<MeshReadiness>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap();
    assert!(
        stored
            .items
            .iter()
            .all(|mr| !mr.name_any().starts_with("bad-")),
        "a refused spec was stored"
    );

    // A spec the schema accepts but the operator cannot use: a clear condition, not a failure.
    apply_yaml(
        &client,
        &format!(
            "apiVersion: meshreadiness.io/v1alpha1\nkind: MeshReadiness\nmetadata: {{name: odd-selector, namespace: {OPERATOR_NAMESPACE}}}\n\
             spec: {{namespaceSelector: {{matchExpressions: [{{key: team, operator: Near, values: [a]}}]}}}}\n"
        ),
    )
    .await;
    let s = wait_condition(
        &client,
        OPERATOR_NAMESPACE,
        "odd-selector",
        "Ready",
        "False",
    )
    .await;
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.reason, "InvalidSpec");
    assert!(ready.message.contains("Near"), "{}", ready.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_status_writer_loses_nothing_and_starts_no_loop() {
    let (client, plane) = setup().await;
    let ns = "t-writers";
    apply_yaml(&client, &namespace(ns)).await;
    apply_yaml(&client, &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  selector: {{app: web}}\n  ports: [{{port: 8080}}]\n")).await;
    wait_condition(&client, ns, "ready", "ProtocolsDeclared", "False").await;
    let api: Api<MeshReadiness> = Api::namespaced(client.clone(), ns);

    // Another controller replaces the status (an update, resourceVersion and all) ten times in
    // a row, as the operator writes: each of those writes races ours. It drops our findings,
    // flips our Ready, and adds a condition of its own.
    for i in 0..10 {
        let mut mr = api.get_status("ready").await.unwrap();
        let status = mr.status.get_or_insert_with(Default::default);
        status.findings.clear();
        status.conditions.retain(|c| c.type_ != "ExternalAudit");
        for c in status.conditions.iter_mut().filter(|c| c.type_ == "Ready") {
            c.status = "Unknown".into();
            c.reason = "Overwritten".into();
        }
        let mut audit = status.conditions[0].clone();
        audit.type_ = "ExternalAudit".into();
        audit.status = "True".into();
        audit.reason = format!("Pass{i}");
        status.conditions.push(audit);
        // A conflict (409) here means the operator wrote in between: the other writer goes on.
        let _ = api.replace_status("ready", &Default::default(), &mr).await;
    }

    // meshready's fields come back; the other writer's condition stays.
    let s = eventually(WAIT, "meshready's status restored", || async {
        let s = status(&client, ns, "ready").await?;
        let ready = condition(&s, "Ready")?;
        (ready.status == "True"
            && s.findings.iter().any(|f| f.code.as_str() == "MR201")
            && condition(&s, "ExternalAudit").is_some())
        .then_some(s)
    })
    .await;
    assert_eq!(condition(&s, "ProtocolsDeclared").unwrap().status, "False");
    assert_eq!(condition(&s, "ExternalAudit").unwrap().status, "True");

    // And then it settles: the foreign condition is not a reason to write again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes = || {
        plane
            .operator_writes(|e| e["objectRef"]["namespace"] == ns)
            .len()
    };
    let settled = writes();
    // Changes the checks do not care about make reconciles; none of them may write.
    for i in 0..3 {
        apply_yaml(&client, &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}, labels: {{touch: 't{i}'}}}}\nspec:\n  selector: {{app: web}}\n  ports: [{{port: 8080}}]\n")).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert_eq!(
        writes(),
        settled,
        "the operator keeps writing: {:?}",
        plane.operator_writes(|e| e["objectRef"]["namespace"] == ns)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_but_legal_objects_are_analyzed() {
    let (client, plane) = setup().await;
    let metrics = operator(plane);
    let ns = "t-odd";
    let errors = || {
        use prometheus::core::Collector;
        metrics
            .reconcile_errors
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .map(|m| m.get_counter().get_value())
            .sum::<f64>()
    };
    let errors_before = errors();
    apply_yaml(
        &client,
        &format!(
            "{}---\napiVersion: meshreadiness.io/v1alpha1\nkind: MeshReadiness\nmetadata: {{name: ready, namespace: {ns}}}\nspec: {{}}\n",
            support::odd::odd_namespace(ns, false)
        ),
    )
    .await;
    let s = eventually(WAIT, "the odd namespace's findings", || async {
        let s = status(&client, ns, "ready").await?;
        s.findings
            .iter()
            .any(|f| f.code.as_str() == "MR804" && f.name == "many-ports")
            .then_some(s)
    })
    .await;
    assert!(
        s.findings.iter().all(|f| f.message.len() < 4096),
        "a message grew with the object"
    );
    assert_eq!(errors(), errors_before, "a reconcile failed");
}
