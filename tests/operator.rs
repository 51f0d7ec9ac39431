//! The operator against a real kube-apiserver with Istio's CRDs: findings appear in status and as
//! Events, and clear when fixed; Ready works with kubectl; nothing is written when nothing changed.

mod support;

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, ListParams};
use meshready::api::{MeshReadiness, MeshReadinessStatus};
use support::{apply_yaml, control_plane, eventually, operator};

const WAIT: Duration = Duration::from_secs(60);

async fn setup() -> (Client, &'static support::ControlPlane) {
    let plane = control_plane(true);
    operator(plane);
    (plane.client().await, plane)
}

async fn status(client: &Client, ns: &str, name: &str) -> Option<MeshReadinessStatus> {
    Api::<MeshReadiness>::namespaced(client.clone(), ns).get_opt(name).await.ok().flatten()?.status
}

fn condition<'a>(status: &'a MeshReadinessStatus, type_: &str) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// Waits until the condition `type_` has `want` status, and returns the status.
async fn wait_condition(client: &Client, ns: &str, name: &str, type_: &str, want: &str) -> MeshReadinessStatus {
    eventually(WAIT, &format!("{ns}/{name} {type_}={want}"), || async {
        let s = status(client, ns, name).await?;
        (condition(&s, type_)?.status == want).then_some(s)
    })
    .await
}

async fn events(client: &Client, ns: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), ns).list(&ListParams::default()).await.unwrap().items
}

async fn wait_event(client: &Client, ns: &str, reason: &str, note_contains: &str) -> Event {
    eventually(WAIT, &format!("event {reason} in {ns} mentioning {note_contains}"), || async {
        events(client, ns).await.into_iter().find(|e| e.reason.as_deref() == Some(reason) && e.note.as_deref().unwrap_or_default().contains(note_contains))
    })
    .await
}

fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{istio-injection: enabled}}\n---\napiVersion: meshreadiness.io/v1alpha1\nkind: MeshReadiness\nmetadata: {{name: ready, namespace: {name}}}\nspec: {{}}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_port_appears_and_clears() {
    let (client, _) = setup().await;
    let ns = "t-protocols";
    apply_yaml(&client, &namespace(ns)).await;
    apply_yaml(&client, &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  selector: {{app: web}}\n  ports: [{{name: web, port: 8080}}]\n")).await;
    let s = wait_condition(&client, ns, "ready", "ProtocolsDeclared", "False").await;
    assert!(s.findings.iter().any(|f| f.code.as_str() == "MR201" && f.name == "web"), "{:?}", s.findings);
    assert_eq!(condition(&s, "Ready").unwrap().status, "True", "a Warning does not block Ready by default");
    wait_event(&client, ns, "FindingAppeared", "MR201").await;

    apply_yaml(&client, &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  selector: {{app: web}}\n  ports: [{{name: http-web, port: 8080}}]\n")).await;
    let s = wait_condition(&client, ns, "ready", "ProtocolsDeclared", "True").await;
    assert!(!s.findings.iter().any(|f| f.code.as_str() == "MR201"));
    let cleared = wait_event(&client, ns, "FindingCleared", "MR201").await;
    assert_eq!(cleared.type_.as_deref(), Some("Normal"));
}
