//! Remediation against a real kube-apiserver with Istio's real CRDs, whose schemas and CEL rules
//! validate every object meshready writes. The operator runs as its ServiceAccount with exactly
//! the roles of `config/rbac` plus the opt-in remediation binding, and kube-controller-manager's
//! garbage collector runs, so ownerReferences do what they do in a cluster.

mod support;

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use kube::{Client, Resource, ResourceExt};
use meshready::api::istio::{DestinationRule, PeerAuthentication, VirtualService};
use meshready::api::{MeshReadiness, MeshReadinessStatus, RemediationState};
use support::{ControlPlane, apply_yaml, control_plane_with, eventually};

const WAIT: Duration = Duration::from_secs(60);

static OPERATOR: OnceLock<meshready::operator::metrics::Metrics> = OnceLock::new();

async fn setup() -> (Client, &'static ControlPlane) {
    let plane = control_plane_with(true, true);
    OPERATOR.get_or_init(|| {
        support::install_rbac(plane, true);
        support::start_operator_as_service_account(plane, std::future::pending())
    });
    (plane.client().await, plane)
}

/// What `/metrics` would show.
fn scrape() -> String {
    use prometheus::Encoder;
    let metrics = OPERATOR.get().expect("the operator runs");
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&metrics.registry.gather(), &mut out)
        .unwrap();
    String::from_utf8(out).unwrap()
}

async fn status(client: &Client, ns: &str, name: &str) -> Option<MeshReadinessStatus> {
    Api::<MeshReadiness>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()?
        .status
}

/// Waits until `probe` holds for the status of `ns/name`, and returns that status.
async fn wait_status(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    probe: impl Fn(&MeshReadinessStatus) -> bool,
) -> MeshReadinessStatus {
    eventually(WAIT, what, || async {
        let s = status(client, ns, name).await?;
        probe(&s).then_some(s)
    })
    .await
}

fn condition<'a>(s: &'a MeshReadinessStatus, type_: &str) -> (&'a str, &'a str) {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.as_str(), c.reason.as_str()))
        .unwrap_or(("", ""))
}

fn state_of(s: &MeshReadinessStatus, kind: &str, name: &str) -> Option<RemediationState> {
    s.remediations
        .iter()
        .find(|r| r.kind == kind && r.name == name)
        .map(|r| r.state)
}

async fn get<K>(client: &Client, ns: &str, name: &str) -> Option<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()
}

/// Waits until the object exists and `probe` holds for it.
async fn wait_for<K>(client: &Client, ns: &str, name: &str, probe: impl Fn(&K) -> bool) -> K
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let what = format!("{} {ns}/{name}", K::kind(&()));
    eventually(WAIT, &what, || async {
        get::<K>(client, ns, name).await.filter(|o| probe(o))
    })
    .await
}

async fn wait_gone<K>(client: &Client, ns: &str, name: &str)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let what = format!("{} {ns}/{name} to be deleted", K::kind(&()));
    eventually(WAIT, &what, || async {
        get::<K>(client, ns, name).await.is_none().then_some(())
    })
    .await
}

fn idle_timeouts(dr: &DestinationRule) -> (Option<String>, Option<String>) {
    let pool = dr
        .spec
        .traffic_policy
        .as_ref()
        .and_then(|t| t.connection_pool.as_ref());
    (
        pool.and_then(|p| p.http.as_ref())
            .and_then(|h| h.idle_timeout.clone()),
        pool.and_then(|p| p.tcp.as_ref())
            .and_then(|t| t.idle_timeout.clone()),
    )
}

/// Waits for an Event with `reason` in `ns` (Events are sent after the status is written).
async fn wait_event(client: &Client, ns: &str, reason: &str) {
    eventually(WAIT, &format!("a {reason} Event in {ns}"), || async {
        let events = Api::<Event>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .ok()?;
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some(reason))
            .then_some(())
    })
    .await
}

fn app(ns: &str, name: &str, timeout: Option<&str>) -> String {
    let annotations = timeout
        .map(|t| format!(", annotations: {{meshreadiness.io/app-idle-timeout: {t}}}"))
        .unwrap_or_default();
    format!(
        "---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}{annotations}}}
spec: {{selector: {{app: {name}}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: app, image: shop/{name}, ports: [{{containerPort: 8080}}]}}]}}
"
    )
}

fn namespace(ns: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{istio-injection: enabled}}}}\n"
    )
}

fn mesh_readiness(ns: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: meshreadiness.io/v1alpha1\nkind: MeshReadiness\nmetadata: {{name: ready, namespace: {ns}}}\nspec: {spec}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_rule_and_virtual_service_follow_their_findings() {
    let (client, _) = setup().await;
    let ns = "rem-idle";
    // MR301 is another test's business (it makes the mesh STRICT); here it would only add a
    // Warning to the Ready threshold.
    let spec = |mode: &str, retries: bool| {
        format!(
            "{{readyThreshold: Warning, checks: {{disabled: [MR301]}}, remediation: {{mode: \"{mode}\", idleTimeout: true, resetRetries: {retries}}}}}"
        )
    };
    let yaml = format!(
        "{}{}{}",
        namespace(ns),
        app(ns, "cart", Some("60s")),
        mesh_readiness(ns, &spec("Apply", true))
    );
    apply_yaml(&client, &yaml).await;
    let name = "cart-meshreadiness";

    // Created, with meshready's labels and an ownerReference to the MeshReadiness.
    let dr = wait_for::<DestinationRule>(&client, ns, name, |_| true).await;
    assert_eq!(idle_timeouts(&dr), (Some("54s".into()), Some("54s".into())));
    let labels = dr.labels();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "meshreadiness");
    assert_eq!(labels["meshreadiness.io/owner"], "rem-idle.ready");
    let mr = get::<MeshReadiness>(&client, ns, "ready").await.unwrap();
    let owner = &dr.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("MeshReadiness", mr.uid().unwrap().as_str())
    );
    assert!(
        dr.managed_fields()
            .iter()
            .any(|m| m.manager.as_deref() == Some("meshreadiness")
                && m.operation.as_deref() == Some("Apply")),
        "written by server-side apply with field manager meshreadiness"
    );
    assert!(
        mr.finalizers().is_empty(),
        "an ownerReference serves: no finalizer"
    );
    let vs = wait_for::<VirtualService>(&client, ns, name, |_| true).await;
    assert_eq!(
        vs.spec.http.len(),
        2,
        "two routes: idempotent methods, then the rest"
    );

    let s = wait_status(
        &client,
        ns,
        "ready",
        "both Applied and Ready Mitigated",
        |s| {
            state_of(s, "DestinationRule", name) == Some(RemediationState::Applied)
                && state_of(s, "VirtualService", name) == Some(RemediationState::Applied)
                && condition(s, "Ready") == ("True", "Mitigated")
        },
    )
    .await;
    let mr601 = s
        .findings
        .iter()
        .find(|f| f.code.as_str() == "MR601")
        .expect("MR601 stays listed");
    assert_eq!(
        mr601.mitigated_by.as_deref(),
        Some("DestinationRule/cart-meshreadiness")
    );
    assert_eq!(condition(&s, "RemediationsApplied"), ("True", "Applied"));
    assert_eq!(s.warnings, 0, "counts are of unmitigated findings");
    wait_event(&client, ns, "RemediationApplied").await;

    // Updated when its input changes: the app's idle timeout.
    apply_yaml(&client, &app(ns, "cart", Some("30s"))).await;
    wait_for::<DestinationRule>(&client, ns, name, |dr| {
        idle_timeouts(dr) == (Some("27s".into()), Some("27s".into()))
    })
    .await;

    // Removed when the kind's flag is turned off; the other stays.
    apply_yaml(&client, &mesh_readiness(ns, &spec("Apply", false))).await;
    wait_gone::<VirtualService>(&client, ns, name).await;
    assert!(get::<DestinationRule>(&client, ns, name).await.is_some());

    // Removed when the finding clears.
    apply_yaml(&client, &app(ns, "cart", None)).await;
    wait_gone::<DestinationRule>(&client, ns, name).await;
    let s = wait_status(&client, ns, "ready", "no remediation listed", |s| {
        s.remediations.is_empty()
    })
    .await;
    assert_eq!(
        condition(&s, "RemediationsApplied"),
        ("True", "NothingToApply")
    );
    wait_event(&client, ns, "RemediationRemoved").await;

    // Removed when the mode leaves Apply; DryRun lists the exact object instead.
    apply_yaml(&client, &app(ns, "cart", Some("60s"))).await;
    wait_for::<DestinationRule>(&client, ns, name, |_| true).await;
    apply_yaml(&client, &mesh_readiness(ns, &spec("DryRun", false))).await;
    wait_gone::<DestinationRule>(&client, ns, name).await;
    let s = wait_status(&client, ns, "ready", "DryRun lists the object", |s| {
        state_of(s, "DestinationRule", name) == Some(RemediationState::Planned)
    })
    .await;
    let planned = s.remediations.iter().find(|r| r.name == name).unwrap();
    let object = planned.object.as_ref().expect("the exact object in status");
    assert_eq!(
        object["spec"]["trafficPolicy"]["connectionPool"]["http"]["idleTimeout"],
        "54s"
    );
    assert_eq!(condition(&s, "RemediationsApplied"), ("False", "DryRun"));
    assert_eq!(
        condition(&s, "Ready").1,
        "BlockingFindings",
        "DryRun mitigates nothing"
    );
    wait_event(&client, ns, "RemediationPlanned").await;

    // Removed when the MeshReadiness is deleted: the garbage collector follows the
    // ownerReference.
    apply_yaml(&client, &mesh_readiness(ns, &spec("Apply", false))).await;
    wait_for::<DestinationRule>(&client, ns, name, |_| true).await;
    Api::<MeshReadiness>::namespaced(client.clone(), ns)
        .delete("ready", &Default::default())
        .await
        .unwrap();
    wait_gone::<MeshReadiness>(&client, ns, "ready").await;
    wait_gone::<DestinationRule>(&client, ns, name).await;
}

/// The user objects (no managed-by label) of kind `K` in `ns`: `Kind/name` to resourceVersion.
async fn versions_of<K>(client: &Client, ns: &str, out: &mut BTreeMap<String, String>)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let params = ListParams::default().labels("!app.kubernetes.io/managed-by");
    for o in Api::<K>::namespaced(client.clone(), ns)
        .list(&params)
        .await
        .unwrap()
    {
        out.insert(
            format!("{}/{}", K::kind(&()), o.name_any()),
            o.resource_version().unwrap(),
        );
    }
}

/// Every user object of the three kinds in a namespace, by name: its resourceVersion.
async fn user_versions(client: &Client, ns: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    versions_of::<PeerAuthentication>(client, ns, &mut out).await;
    versions_of::<DestinationRule>(client, ns, &mut out).await;
    versions_of::<VirtualService>(client, ns, &mut out).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_objects_are_left_untouched_in_every_mode() {
    let (client, _) = setup().await;
    let ns = "rem-user";
    let users = format!(
        "---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: {ns}}}
spec: {{mtls: {{mode: STRICT}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: cart-rules, namespace: {ns}}}
spec: {{host: cart}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: cart, namespace: {ns}}}
spec: {{hosts: [cart], http: [{{route: [{{destination: {{host: cart}}}}]}}]}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: api-meshreadiness, namespace: {ns}}}
spec: {{host: reports.example.com}}
"
    );
    let yaml = format!(
        "{}{}{}{users}",
        namespace(ns),
        app(ns, "cart", Some("60s")),
        app(ns, "api", Some("60s"))
    );
    apply_yaml(&client, &yaml).await;
    let before = user_versions(&client, ns).await;
    assert_eq!(before.len(), 4, "{before:?}");
    let spec = |mode: &str| {
        format!(
            "{{remediation: {{mode: \"{mode}\", permissiveMtls: true, idleTimeout: true, resetRetries: true}}}}"
        )
    };
    apply_yaml(&client, &mesh_readiness(ns, &spec("Apply"))).await;
    let s = wait_status(&client, ns, "ready", "the user's objects block ours", |s| {
        state_of(s, "DestinationRule", "cart-meshreadiness") == Some(RemediationState::Blocked)
            && state_of(s, "VirtualService", "cart-meshreadiness")
                == Some(RemediationState::Blocked)
            && state_of(s, "DestinationRule", "api-meshreadiness")
                == Some(RemediationState::Blocked)
            && state_of(s, "VirtualService", "api-meshreadiness") == Some(RemediationState::Applied)
    })
    .await;
    let reason = |kind: &str, name: &str| {
        s.remediations
            .iter()
            .find(|r| r.kind == kind && r.name == name)
            .map(|r| r.reason.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        reason("DestinationRule", "cart-meshreadiness"),
        "UserObjectForHost"
    );
    assert_eq!(
        reason("VirtualService", "cart-meshreadiness"),
        "UserObjectForHost"
    );
    assert_eq!(reason("DestinationRule", "api-meshreadiness"), "NameTaken");
    let blocked = s
        .remediations
        .iter()
        .find(|r| r.name == "cart-meshreadiness" && r.kind == "DestinationRule")
        .unwrap();
    assert!(
        blocked
            .message
            .contains("kubectl -n rem-user patch destinationrule cart-rules"),
        "{}",
        blocked.message
    );
    assert_eq!(condition(&s, "RemediationsApplied"), ("False", "Blocked"));
    assert_eq!(
        user_versions(&client, ns).await,
        before,
        "Apply touched a user object"
    );

    apply_yaml(&client, &mesh_readiness(ns, &spec("DryRun"))).await;
    wait_gone::<VirtualService>(&client, ns, "api-meshreadiness").await;
    wait_status(&client, ns, "ready", "DryRun", |s| {
        condition(s, "RemediationsApplied").1 == "Blocked"
            && state_of(s, "VirtualService", "api-meshreadiness") == Some(RemediationState::Planned)
    })
    .await;
    assert_eq!(
        user_versions(&client, ns).await,
        before,
        "DryRun touched a user object"
    );

    apply_yaml(&client, &mesh_readiness(ns, &spec("Off"))).await;
    wait_status(&client, ns, "ready", "Off lists nothing", |s| {
        s.remediations.is_empty()
    })
    .await;
    Api::<MeshReadiness>::namespaced(client.clone(), ns)
        .delete("ready", &Default::default())
        .await
        .unwrap();
    wait_gone::<MeshReadiness>(&client, ns, "ready").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        user_versions(&client, ns).await,
        before,
        "a user object changed or went"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissive_policy_is_visible_and_expires() {
    let (client, _) = setup().await;
    let ns = "rem-strict";
    // STRICT from the mesh-wide policy; `legacy` opts out and calls `api` in plaintext.
    let yaml = format!(
        "---
apiVersion: v1
kind: Namespace
metadata: {{name: istio-system}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: istio-system}}
spec: {{mtls: {{mode: STRICT}}}}
{}{}---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: legacy, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: legacy}}}}
  template:
    metadata: {{labels: {{app: legacy, sidecar.istio.io/inject: \"false\"}}}}
    spec: {{containers: [{{name: legacy, image: shop/legacy}}]}}
{}",
        namespace(ns),
        app(ns, "api", None),
        mesh_readiness(
            ns,
            "{remediation: {mode: Apply, permissiveMtls: true, permissiveMtlsTtl: 20s}}"
        )
    );
    apply_yaml(&client, &yaml).await;
    let name = "meshreadiness-permissive";
    let pa = wait_for::<PeerAuthentication>(&client, ns, name, |_| true).await;
    assert!(pa.spec.selector.is_none(), "namespace-wide");
    assert_eq!(
        serde_json::to_value(&pa.spec.mtls).unwrap()["mode"],
        "PERMISSIVE"
    );
    let s = wait_status(&client, ns, "ready", "PERMISSIVE applied", |s| {
        state_of(s, "PeerAuthentication", name) == Some(RemediationState::Applied)
            && condition(s, "Ready") == ("True", "Mitigated")
    })
    .await;
    let message = &s
        .conditions
        .iter()
        .find(|c| c.type_ == "RemediationsApplied")
        .unwrap()
        .message;
    assert!(
        message.contains("PERMISSIVE PeerAuthentication rem-strict/meshreadiness-permissive"),
        "{message}"
    );
    wait_event(&client, ns, "PermissiveMtlsApplied").await;
    let scrape = scrape();
    assert!(
        scrape
            .contains(r#"meshreadiness_remediations{kind="PeerAuthentication",state="Applied"} 1"#),
        "{scrape}"
    );

    // The TTL passes: the policy goes, the finding counts again, and it is not created again.
    wait_gone::<PeerAuthentication>(&client, ns, name).await;
    let s = wait_status(&client, ns, "ready", "Expired", |s| {
        state_of(s, "PeerAuthentication", name) == Some(RemediationState::Expired)
    })
    .await;
    assert_eq!(condition(&s, "Ready"), ("False", "BlockingFindings"));
    assert_eq!(condition(&s, "RemediationsApplied"), ("False", "Expired"));
    wait_event(&client, ns, "RemediationExpired").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        get::<PeerAuthentication>(&client, ns, name).await.is_none(),
        "created again"
    );

    // Never in the root namespace, whatever covers it.
    let roots = Api::<PeerAuthentication>::namespaced(client.clone(), "istio-system")
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=meshreadiness"))
        .await
        .unwrap();
    assert!(roots.items.is_empty());
    // Leave the mesh as the other tests expect it.
    Api::<PeerAuthentication>::namespaced(client.clone(), "istio-system")
        .delete("default", &Default::default())
        .await
        .unwrap();
}
