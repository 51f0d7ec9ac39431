//! The operator on a cluster without Istio's CRDs: it runs, says `IstioNotDetected`, and starts
//! checking once the CRDs are installed, without a restart; when they are deleted while it runs
//! it says `IstioNotDetected` again, and recovers when they are back. A test binary of its own,
//! because its control plane must start without them.

mod support;

use std::time::Duration;

use kube::api::Api;
use meshready::api::MeshReadiness;
use support::{apply_yaml, control_plane, eventually, operator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_crds_installed_late_deleted_and_reinstalled_are_followed() {
    let plane = control_plane(false);
    operator(plane);
    let client = plane.client().await;
    apply_yaml(
        &client,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: t-late, labels: {istio-injection: enabled}}\n---\n\
         apiVersion: meshreadiness.io/v1alpha1\nkind: MeshReadiness\nmetadata: {name: ready, namespace: t-late}\nspec: {}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: t-late}\nspec: {selector: {app: web}, ports: [{name: web, port: 80}]}\n",
    )
    .await;
    let api: Api<MeshReadiness> = Api::namespaced(client.clone(), "t-late");
    let reason = |api: Api<MeshReadiness>| async move {
        let status = api.get("ready").await.ok()?.status?;
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
        Some((ready.status.clone(), ready.reason.clone(), status))
    };
    let (status, why, _) = eventually(
        Duration::from_secs(60),
        "Ready=False IstioNotDetected",
        || async {
            reason(api.clone())
                .await
                .filter(|(_, r, _)| r == "IstioNotDetected")
        },
    )
    .await;
    assert_eq!(status, "False");
    assert_eq!(why, "IstioNotDetected");

    plane.install_istio_crds(&client).await;
    let (_, _, checked) = eventually(
        Duration::from_secs(90),
        "checks to run once Istio's CRDs exist",
        || async {
            reason(api.clone())
                .await
                .filter(|(_, r, _)| r == "NoBlockingFindings")
        },
    )
    .await;
    assert!(
        checked.findings.iter().any(|f| f.code.as_str() == "MR201"),
        "{:?}",
        checked.findings
    );

    // Istio uninstalled while the operator runs.
    let crds = plane.envtest.istio_crds.display().to_string();
    plane.kubectl(&["delete", "-f", &crds, "--wait=true"]);
    eventually(
        Duration::from_secs(30),
        "IstioNotDetected after the CRDs' deletion",
        || async {
            reason(api.clone())
                .await
                .filter(|(_, r, _)| r == "IstioNotDetected")
        },
    )
    .await;

    // And installed again.
    plane.install_istio_crds(&client).await;
    eventually(
        Duration::from_secs(30),
        "checks to run again once the CRDs are back",
        || async {
            reason(api.clone())
                .await
                .filter(|(_, r, s)| r == "NoBlockingFindings" && !s.findings.is_empty())
        },
    )
    .await;
}
