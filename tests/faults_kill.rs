//! The operator (the real binary) is killed with SIGKILL while it applies remediations, and
//! started again: the end state is the one an uninterrupted run reaches, with no duplicate and
//! no orphan, and deleting the MeshReadiness still removes everything it made.

mod support;

use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use meshready::api::istio::DestinationRule;
use meshready::api::{MeshReadiness, RemediationState};
use support::{OPERATOR_NAMESPACE, OperatorProcess, apply_yaml, control_plane, eventually};

const NAMESPACES: usize = 3;
const SERVICES: usize = 8;

fn start(plane: &support::ControlPlane, name: &str) -> OperatorProcess {
    OperatorProcess::start(plane, name, &["--debounce-ms", "100"], &[])
}

fn fleet() -> String {
    let mut out = String::new();
    for n in 0..NAMESPACES {
        let ns = format!("k-fleet-{n}");
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{istio-injection: enabled, fleet: kill}}}}\n\
             ---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: shop, namespace: {ns}}}\n\
             spec:\n  selector: {{matchLabels: {{app: shop}}}}\n  template:\n    metadata: {{labels: {{app: shop}}}}\n    \
             spec: {{containers: [{{name: app, image: shop/app, ports: [{{containerPort: 8080}}]}}]}}\n"
        ));
        for s in 0..SERVICES {
            out.push_str(&format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{s}, namespace: {ns}, annotations: {{meshreadiness.io/app-idle-timeout: 60s}}}}\n\
                 spec: {{selector: {{app: shop}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n"
            ));
        }
    }
    out
}

/// The end state an uninterrupted run reaches: one DestinationRule per Service.
fn expected() -> Vec<String> {
    let mut names: Vec<String> = (0..NAMESPACES)
        .flat_map(|n| (0..SERVICES).map(move |s| format!("k-fleet-{n}/svc-{s}-meshreadiness")))
        .collect();
    names.sort();
    names
}

/// Every DestinationRule in the fleet's namespaces (ours or not), as `namespace/name`.
async fn destination_rules(client: &Client) -> Vec<DestinationRule> {
    let mut all = Vec::new();
    for n in 0..NAMESPACES {
        let api = Api::<DestinationRule>::namespaced(client.clone(), &format!("k-fleet-{n}"));
        all.extend(api.list(&ListParams::default()).await.unwrap().items);
    }
    all
}

fn names(rules: &[DestinationRule]) -> Vec<String> {
    let mut names: Vec<String> = rules
        .iter()
        .map(|dr| format!("{}/{}", dr.namespace().unwrap_or_default(), dr.name_any()))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_applying_then_restart_converges() {
    let plane = control_plane(true);
    let client = plane.client().await;
    apply_yaml(&client, &fleet()).await;

    let mut first = start(plane, "first");
    apply_yaml(
        &client,
        &format!(
            "apiVersion: meshreadiness.io/v1alpha1\nkind: MeshReadiness\nmetadata: {{name: fleet, namespace: {OPERATOR_NAMESPACE}}}\n\
             spec: {{readyThreshold: Warning, checks: {{disabled: [MR701, MR502, MR504]}}, namespaceSelector: {{matchLabels: {{fleet: kill}}}}, remediation: {{mode: Apply, idleTimeout: true}}}}\n"
        ),
    )
    .await;
    // Killed as soon as the first object is there: mid-way through the writes.
    let deadline = Instant::now() + Duration::from_secs(60);
    let at_kill = loop {
        let n = destination_rules(&client).await.len();
        if n > 0 {
            first.0.kill().unwrap();
            first.0.wait().unwrap();
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "the first operator wrote nothing"
        );
    };
    eprintln!(
        "killed with {at_kill} of {} DestinationRules written",
        expected().len()
    );

    let _second = start(plane, "second");
    let rules = eventually(Duration::from_secs(60), "every DestinationRule", || async {
        let rules = destination_rules(&client).await;
        (names(&rules) == expected()).then_some(rules)
    })
    .await;
    for dr in &rules {
        let labels = dr.labels();
        assert_eq!(labels["app.kubernetes.io/managed-by"], "meshreadiness");
        assert_eq!(
            labels["meshreadiness.io/owner"],
            "meshreadiness-system.fleet"
        );
        let idle = dr
            .spec
            .traffic_policy
            .as_ref()
            .and_then(|t| t.connection_pool.as_ref())
            .and_then(|p| p.http.as_ref())
            .and_then(|h| h.idle_timeout.clone());
        assert_eq!(idle.as_deref(), Some("54s"), "{}", dr.name_any());
    }
    let api: Api<MeshReadiness> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let status = eventually(Duration::from_secs(30), "all Applied in status", || async {
        let status = api.get("fleet").await.ok()?.status?;
        (status.remediations.len() == expected().len()
            && status
                .remediations
                .iter()
                .all(|r| r.state == RemediationState::Applied))
        .then_some(status)
    })
    .await;
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "Mitigated");
    let mr = api.get("fleet").await.unwrap();
    assert!(
        mr.finalizers()
            .iter()
            .any(|f| f == "meshreadiness.io/cleanup"),
        "objects in other namespaces are held by the finalizer"
    );

    // No orphan: deleting the MeshReadiness removes all of them, then the object itself.
    api.delete("fleet", &Default::default()).await.unwrap();
    eventually(
        Duration::from_secs(60),
        "the MeshReadiness gone",
        || async { api.get_opt("fleet").await.unwrap().is_none().then_some(()) },
    )
    .await;
    assert!(
        destination_rules(&client).await.is_empty(),
        "orphans: {:?}",
        names(&destination_rules(&client).await)
    );
}
