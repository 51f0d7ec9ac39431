//! Remediations across namespaces and operator restarts: a MeshReadiness in the operator's
//! namespace selects two namespaces, so no ownerReference can reach its objects and a finalizer
//! cleans up. Changes made while the operator is down are caught up on without duplicates or
//! orphans. No garbage collector runs here: every deletion is meshready's own.

mod support;

use std::time::Duration;

use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use meshready::api::MeshReadiness;
use meshready::api::istio::DestinationRule;
use support::{OPERATOR_NAMESPACE, apply_yaml, control_plane, eventually};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(60);
const FINALIZER: &str = "meshreadiness.io/cleanup";

/// Starts an operator as its ServiceAccount; it stops (as a process would die) when the sender
/// is dropped or used.
fn start(plane: &'static support::ControlPlane) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    support::start_operator_as_service_account(plane, async move {
        let _ = stopped.await;
    });
    stop
}

fn app(ns: &str, fleet: &str, timeout: &str) -> String {
    format!(
        "---
apiVersion: v1
kind: Namespace
metadata: {{name: {ns}, labels: {{istio-injection: enabled, fleet: \"{fleet}\"}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: cart, namespace: {ns}, annotations: {{meshreadiness.io/app-idle-timeout: {timeout}}}}}
spec: {{selector: {{app: cart}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: cart, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: cart}}}}
  template:
    metadata: {{labels: {{app: cart}}}}
    spec: {{containers: [{{name: app, image: shop/cart, ports: [{{containerPort: 8080}}]}}]}}
"
    )
}

/// Every DestinationRule meshready wrote for MeshReadiness `fleet`, as `namespace/name`.
async fn ours(client: &Client) -> Vec<String> {
    let params = ListParams::default().labels("meshreadiness.io/owner=meshreadiness-system.fleet");
    let mut names: Vec<String> = Api::<DestinationRule>::all(client.clone())
        .list(&params)
        .await
        .unwrap()
        .items
        .iter()
        .map(|dr| format!("{}/{}", dr.namespace().unwrap_or_default(), dr.name_any()))
        .collect();
    names.sort();
    names
}

async fn idle_timeout(client: &Client, ns: &str) -> Option<String> {
    let dr = Api::<DestinationRule>::namespaced(client.clone(), ns)
        .get_opt("cart-meshreadiness")
        .await
        .unwrap()?;
    dr.spec.traffic_policy?.connection_pool?.http?.idle_timeout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_in_other_namespaces_survive_restarts_and_go_with_their_owner() {
    let plane = control_plane(true);
    support::install_rbac(plane, true);
    let client = plane.client().await;
    let fleet = format!(
        "{}{}---
apiVersion: meshreadiness.io/v1alpha1
kind: MeshReadiness
metadata: {{name: fleet, namespace: {OPERATOR_NAMESPACE}}}
spec: {{namespaceSelector: {{matchLabels: {{fleet: \"yes\"}}}}, remediation: {{mode: Apply, idleTimeout: true}}}}
",
        app("fleet-a", "yes", "60s"),
        app("fleet-b", "yes", "60s")
    );
    apply_yaml(&client, &fleet).await;
    let mrs = Api::<MeshReadiness>::namespaced(client.clone(), OPERATOR_NAMESPACE);

    let first = start(plane);
    let both = vec![
        "fleet-a/cart-meshreadiness".to_string(),
        "fleet-b/cart-meshreadiness".to_string(),
    ];
    eventually(WAIT, "a DestinationRule in each namespace", || async {
        (ours(&client).await == both).then_some(())
    })
    .await;
    let mr = mrs.get("fleet").await.unwrap();
    assert!(
        mr.finalizers().iter().any(|f| f == FINALIZER),
        "no ownerReference reaches another namespace: a finalizer must"
    );
    let dr = Api::<DestinationRule>::namespaced(client.clone(), "fleet-a")
        .get("cart-meshreadiness")
        .await
        .unwrap();
    assert!(dr.owner_references().is_empty());

    // Down: one namespace leaves the selector, the other's app changes its timeout.
    first.send(()).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    apply_yaml(&client, &app("fleet-b", "no", "60s")).await;
    apply_yaml(&client, &app("fleet-a", "yes", "30s")).await;

    let second = start(plane);
    eventually(WAIT, "fleet-b's DestinationRule deleted", || async {
        (ours(&client).await == ["fleet-a/cart-meshreadiness"]).then_some(())
    })
    .await;
    eventually(WAIT, "fleet-a's DestinationRule updated", || async {
        (idle_timeout(&client, "fleet-a").await.as_deref() == Some("27s")).then_some(())
    })
    .await;
    let status = eventually(WAIT, "one remediation, Applied", || async {
        let s = mrs.get("fleet").await.ok()?.status?;
        (s.remediations.len() == 1 && s.remediations[0].namespace == "fleet-a").then_some(s)
    })
    .await;
    assert_eq!(
        status.remediations[0].state,
        meshready::api::RemediationState::Applied
    );

    // Deleted while the operator is down: the finalizer holds it until it returns.
    second.send(()).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    mrs.delete("fleet", &Default::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = mrs.get("fleet").await.expect("held by the finalizer");
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(ours(&client).await, ["fleet-a/cart-meshreadiness"]);

    let _third = start(plane);
    eventually(WAIT, "the MeshReadiness gone", || async {
        mrs.get_opt("fleet").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(ours(&client).await.is_empty(), "an orphan was left");
}
