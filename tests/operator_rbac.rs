//! The operator with exactly the RBAC of `config/rbac`, impersonating its ServiceAccount on an
//! API server whose authorizer is RBAC: it does its whole job (watches, status, Events, Lease),
//! is refused Secrets, and without the opt-in remediation binding reports `Blocked` with reason
//! `Forbidden` instead of failing; once the binding exists, it applies.

mod support;

use std::time::Duration;

use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use meshready::api::istio::DestinationRule;
use meshready::api::{MeshReadiness, MeshReadinessStatus, RemediationState};
use support::{OPERATOR_SERVICE_ACCOUNT, apply_yaml, control_plane, eventually};

const YAML: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: rbac-shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: rbac-shop, annotations: {meshreadiness.io/app-idle-timeout: 60s}}
spec: {selector: {app: cart}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart, namespace: rbac-shop}
spec:
  selector: {matchLabels: {app: cart}}
  template:
    metadata: {labels: {app: cart}}
    spec: {containers: [{name: app, image: shop/cart, ports: [{containerPort: 8080}]}]}
---
apiVersion: meshreadiness.io/v1alpha1
kind: MeshReadiness
metadata: {name: ready, namespace: rbac-shop}
spec: {interval: 30s, remediation: {mode: Apply, idleTimeout: true}}
";

async fn status(client: &kube::Client) -> Option<MeshReadinessStatus> {
    Api::<MeshReadiness>::namespaced(client.clone(), "rbac-shop")
        .get_opt("ready")
        .await
        .ok()??
        .status
}

fn remediations_applied(s: &MeshReadinessStatus) -> (&str, &str) {
    s.conditions
        .iter()
        .find(|c| c.type_ == "RemediationsApplied")
        .map(|c| (c.status.as_str(), c.reason.as_str()))
        .unwrap_or(("", ""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privilege_does_the_job_and_remediation_waits_for_its_binding() {
    let plane = control_plane(true);
    support::install_rbac(plane, false);
    let client = plane.client().await;
    apply_yaml(&client, YAML).await;
    support::start_operator_as_service_account(plane, std::future::pending());

    // Its whole job: findings in status, Events, no failure.
    let s = eventually(
        Duration::from_secs(60),
        "Blocked, reason Forbidden",
        || async {
            let s = status(&client).await?;
            let entry = s.remediations.first()?;
            (entry.state == RemediationState::Blocked && entry.reason == "Forbidden").then_some(s)
        },
    )
    .await;
    assert!(s.findings.iter().any(|f| f.code.as_str() == "MR601"));
    assert_eq!(remediations_applied(&s), ("False", "Forbidden"));
    assert!(
        s.remediations[0].message.contains("meshready-remediation"),
        "{}",
        s.remediations[0].message
    );
    assert!(
        Api::<DestinationRule>::namespaced(client.clone(), "rbac-shop")
            .get_opt("cart-meshreadiness")
            .await
            .unwrap()
            .is_none()
    );

    // The same identity is refused Secrets.
    let kubeconfig = Kubeconfig::read_from(&plane.kubeconfig).unwrap();
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
    config.auth_info.impersonate = Some(OPERATOR_SERVICE_ACCOUNT.to_string());
    let operator = kube::Client::try_from(config).unwrap();
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::all(operator)
        .list(&ListParams::default())
        .await;
    assert!(
        matches!(&secrets, Err(kube::Error::Api(s)) if s.code == 403),
        "{secrets:?}"
    );

    // Opting in: the remediation is applied at the next attempt.
    support::bind_remediation_role(plane);
    eventually(Duration::from_secs(120), "the DestinationRule", || async {
        Api::<DestinationRule>::namespaced(client.clone(), "rbac-shop")
            .get_opt("cart-meshreadiness")
            .await
            .unwrap()
    })
    .await;
    eventually(Duration::from_secs(60), "Applied", || async {
        let s = status(&client).await?;
        (remediations_applied(&s) == ("True", "Applied")).then_some(())
    })
    .await;
}
