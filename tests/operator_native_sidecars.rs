//! The operator reads istiod's native-sidecar setting: an init container that needs the network
//! (MR501) is fine once istiod runs the proxy as a native sidecar. A binary of its own, because
//! istiod's setting is cluster-wide.

mod support;

use std::time::Duration;

use kube::api::Api;
use meshready::api::MeshReadiness;
use support::{apply_yaml, control_plane, eventually, operator};

const APP: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: t-native, labels: {istio-injection: enabled}}\n---
apiVersion: meshreadiness.io/v1alpha1\nkind: MeshReadiness\nmetadata: {name: ready, namespace: t-native}\nspec: {}\n---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: t-native}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      initContainers:
      - {name: wait-db, image: curlimages/curl:8.10.1, command: [sh, -c, 'until curl -fs http://db:5432; do sleep 1; done']}
      containers:
      - {name: web, image: ghcr.io/shop/web:1.0}
";

fn istiod(native: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: istio-system}}\n---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: istiod, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{app: istiod}}}}
  template:
    metadata: {{labels: {{app: istiod}}}}
    spec:
      containers:
      - name: discovery
        image: docker.io/istio/pilot:1.30.3
        env: [{{name: ENABLE_NATIVE_SIDECARS, value: '{native}'}}]
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istiod_native_sidecars_clear_init_container_findings() {
    let plane = control_plane(true);
    operator(plane);
    let client = plane.client().await;
    apply_yaml(&client, &istiod("false")).await;
    apply_yaml(&client, APP).await;
    let api: Api<MeshReadiness> = Api::namespaced(client.clone(), "t-native");
    let has_mr501 = |api: Api<MeshReadiness>| async move {
        let status = api.get("ready").await.ok()?.status?;
        status
            .conditions
            .iter()
            .find(|c| c.type_ == "LifecycleSafe")?;
        Some(status.findings.iter().any(|f| f.code.as_str() == "MR501"))
    };
    eventually(
        Duration::from_secs(60),
        "MR501 without native sidecars",
        || async { has_mr501(api.clone()).await.filter(|x| *x) },
    )
    .await;
    apply_yaml(&client, &istiod("true")).await;
    eventually(
        Duration::from_secs(60),
        "MR501 gone with native sidecars",
        || async { has_mr501(api.clone()).await.filter(|x| !*x) },
    )
    .await;
}
