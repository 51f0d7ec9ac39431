//! `/metrics` scraped from a running operator: the named series with the values the statuses
//! imply, and a number of series that does not grow with the number of namespaces checked. A
//! binary of its own, so that no other test's objects add series.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::{OPERATOR_NAMESPACE, apply_yaml, control_plane, eventually, http_get, local_address};

/// The state gauges' series of a scrape (findings, Ready, remediations), by name and labels.
/// Counters and the histogram have label sets fixed by the code (kind, verb, reason).
fn series(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| {
            [
                "meshreadiness_findings{",
                "meshreadiness_ready{",
                "meshreadiness_remediations{",
            ]
            .iter()
            .any(|name| l.starts_with(name))
        })
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_string()))
        .collect()
}

fn namespaces(from: usize, to: usize) -> String {
    (from..to)
        .map(|i| {
            format!(
                "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: m-clean-{i}, labels: {{istio-injection: enabled, fleet: metrics}}}}\n"
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_have_the_right_values_and_do_not_grow_with_namespaces() {
    let plane = control_plane(true);
    let admin = local_address();
    support::start_operator(plane, Some(admin));
    let client = plane.client().await;
    // One namespace with known findings: two unnamed ports on two Services (MR201, Warning
    // each), and a fleet of clean namespaces selected from the operator's namespace.
    apply_yaml(
        &client,
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: m-shop, labels: {{istio-injection: enabled}}}}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {{name: a, namespace: m-shop}}\nspec: {{ports: [{{port: 8080}}]}}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {{name: b, namespace: m-shop}}\nspec: {{ports: [{{port: 9090}}]}}\n---\n\
             apiVersion: meshreadiness.io/v1alpha1\nkind: MeshReadiness\nmetadata: {{name: shop, namespace: m-shop}}\nspec: {{readyThreshold: Warning}}\n---\n\
             apiVersion: meshreadiness.io/v1alpha1\nkind: MeshReadiness\nmetadata: {{name: fleet, namespace: {OPERATOR_NAMESPACE}}}\n\
             spec: {{namespaceSelector: {{matchLabels: {{fleet: metrics}}}}}}\n{}",
            namespaces(0, 5)
        ),
    )
    .await;
    let scrape = || async { http_get(admin, "/metrics").map(|(_, body)| body) };
    let first = eventually(Duration::from_secs(60), "both objects reported", || async {
        let body = scrape().await?;
        (body.contains(r#"meshreadiness_ready{name="shop",namespace="m-shop"} 0"#)
            && body.contains(&format!(
                r#"meshreadiness_ready{{name="fleet",namespace="{OPERATOR_NAMESPACE}"}} 1"#
            )))
        .then_some(body)
    })
    .await;
    for expected in [
        r#"meshreadiness_findings{code="MR201",namespace="m-shop",severity="Warning"} 2"#,
        r#"meshreadiness_api_writes_total{kind="MeshReadiness",verb="patch"}"#,
        "meshreadiness_reconcile_duration_seconds_bucket",
    ] {
        assert!(
            first.contains(expected),
            "{expected} missing from:\n{first}"
        );
    }
    assert!(
        !first.contains("meshreadiness_reconcile_errors_total{"),
        "no reconcile failed:\n{first}"
    );
    assert!(
        !first.contains("m-clean-"),
        "clean namespaces add no series:\n{first}"
    );

    // Fifty more namespaces for the fleet: the same series, once they are checked.
    apply_yaml(&client, &namespaces(5, 55)).await;
    let status = || async {
        kube::Api::<meshready::api::MeshReadiness>::namespaced(client.clone(), OPERATOR_NAMESPACE)
            .get_status("fleet")
            .await
            .ok()?
            .status
    };
    eventually(
        Duration::from_secs(60),
        "the fleet to cover 55 namespaces",
        || async { (status().await?.namespaces == 55).then_some(()) },
    )
    .await;
    let later = scrape().await.unwrap();
    assert!(!later.contains("m-clean-"), "{later}");
    assert_eq!(
        series(&later),
        series(&first),
        "series changed with the number of namespaces"
    );
}
