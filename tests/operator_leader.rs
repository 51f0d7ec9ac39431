//! Two replicas with leader election against one API server: exactly one writes; when it dies
//! (SIGKILL: no chance to release its lease), the other takes over within about 20 seconds.
//! The leader is the real binary, so that it can be killed; the standby runs in-process, so
//! that its writes can be counted.

mod support;

use std::time::{Duration, Instant};

use kube::api::Api;
use meshready::api::MeshReadiness;
use meshready::operator::leader::LeaderElection;
use support::{
    OPERATOR_NAMESPACE, OperatorProcess, apply_yaml, control_plane, eventually, lease_holder,
    start_operator_with,
};

fn election(identity: &str) -> Option<LeaderElection> {
    Some(LeaderElection {
        namespace: OPERATOR_NAMESPACE.into(),
        name: "meshready-leader".into(),
        identity: identity.into(),
    })
}

fn service(port_name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: t-leader}}\nspec: {{selector: {{app: web}}, ports: [{{name: {port_name}, port: 80}}]}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_writes_and_a_standby_takes_over() {
    let plane = control_plane(true);
    let client = plane.client().await;

    let mut a = OperatorProcess::start(
        plane,
        "replica-a",
        &["--leader-elect"],
        &[("POD_NAME", "a")],
    );
    eventually(Duration::from_secs(30), "replica a to lead", || async {
        lease_holder(&client).await.filter(|h| h == "a")
    })
    .await;
    let b = start_operator_with(plane, None, election("b"), std::future::pending());

    apply_yaml(&client, "apiVersion: v1\nkind: Namespace\nmetadata: {name: t-leader, labels: {istio-injection: enabled}}\n---\napiVersion: meshreadiness.io/v1alpha1\nkind: MeshReadiness\nmetadata: {name: ready, namespace: t-leader}\nspec: {}\n").await;
    apply_yaml(&client, &service("web")).await;
    let api: Api<MeshReadiness> = Api::namespaced(client.clone(), "t-leader");
    let protocols = |api: Api<MeshReadiness>| async move {
        let status = api.get("ready").await.ok()?.status?;
        Some(
            status
                .conditions
                .iter()
                .find(|c| c.type_ == "ProtocolsDeclared")?
                .status
                .clone(),
        )
    };
    eventually(Duration::from_secs(60), "the leader's status", || async {
        protocols(api.clone()).await.filter(|s| s == "False")
    })
    .await;
    let status_writes = |m: &meshready::operator::metrics::Metrics| {
        m.api_writes
            .with_label_values(&["MeshReadiness", "patch"])
            .get()
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !plane
            .operator_writes(|e| e["objectRef"]["namespace"] == "t-leader")
            .is_empty(),
        "the leader writes"
    );
    assert_eq!(status_writes(&b), 0, "the standby writes nothing");

    // The leader dies without releasing its lease; the standby takes over once it expires.
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    let died = Instant::now();
    apply_yaml(&client, &service("http-web")).await;
    eventually(
        Duration::from_secs(40),
        "the standby to take over and write",
        || async { protocols(api.clone()).await.filter(|s| s == "True") },
    )
    .await;
    let took = died.elapsed();
    assert!(took < Duration::from_secs(25), "took over after {took:?}");
    assert_eq!(lease_holder(&client).await.as_deref(), Some("b"));
    assert!(status_writes(&b) > 0);
}
