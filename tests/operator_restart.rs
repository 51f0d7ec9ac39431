//! An operator that starts against a cluster whose statuses are already current writes nothing:
//! no status patch, no Event, no Ready flicker while its caches fill. A binary of its own, so
//! that no other test changes objects meanwhile.

mod support;

use std::time::Duration;

use support::{
    apply_yaml, control_plane, eventually, http_get, local_address, operator, start_operator,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_writes_nothing_new() {
    let plane = control_plane(true);
    operator(plane);
    let client = plane.client().await;
    apply_yaml(
        &client,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: t-restart, labels: {istio-injection: enabled}}\n---\n\
         apiVersion: meshreadiness.io/v1alpha1\nkind: MeshReadiness\nmetadata: {name: ready, namespace: t-restart}\nspec: {}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: t-restart}\nspec: {selector: {app: web}, ports: [{name: web, port: 80}]}\n",
    )
    .await;
    let writes = || {
        plane
            .operator_writes(|e| e["objectRef"]["namespace"] == "t-restart")
            .len()
    };
    eventually(
        Duration::from_secs(60),
        "the first status and Events",
        || async { (writes() >= 2).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settled = writes();

    let admin = local_address();
    let second = start_operator(plane, Some(admin));
    let reconciles = || {
        second
            .reconcile_duration
            .with_label_values(&[] as &[&str])
            .get_sample_count()
    };
    eventually(
        Duration::from_secs(60),
        "the new instance to reconcile",
        || async { (reconciles() > 0).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        writes(),
        settled,
        "the new instance wrote: {:#?}",
        plane.operator_writes(|e| e["objectRef"]["namespace"] == "t-restart")
    );

    // Its admin server: alive, ready once synced, and metrics read from its caches.
    assert_eq!(http_get(admin, "/healthz").map(|r| r.0), Some(200));
    assert_eq!(http_get(admin, "/readyz").map(|r| r.0), Some(200));
    let (code, metrics) = http_get(admin, "/metrics").unwrap();
    assert_eq!(code, 200);
    for series in [
        r#"meshreadiness_findings{code="MR201",namespace="t-restart",severity="Warning"} 1"#,
        r#"meshreadiness_ready{name="ready",namespace="t-restart"} 1"#,
        "meshreadiness_reconcile_duration_seconds_count",
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from:\n{metrics}"
        );
    }
    assert!(
        !metrics.contains("meshreadiness_api_writes_total{kind=\"MeshReadiness\""),
        "it wrote nothing"
    );
}
