//! The API server goes away while the operator runs: killed for 30 seconds, or restarted after
//! etcd has been compacted past what the operator's watches last saw (so they expire with 410
//! Gone). Meanwhile the cluster changes through a second kube-apiserver on the same etcd, as it
//! would for other clients. The operator must not crash or spin, must relist, and every status
//! must be right soon after the API server is back, with no duplicate Events. A binary of its
//! own: the outages would disturb other tests.

mod support;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, ListParams};
use meshready::api::{MeshReadiness, MeshReadinessStatus};
use support::{ControlPlane, apply_yaml, control_plane, eventually};

/// One outage at a time: both tests stop the same API server.
static OUTAGE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How soon after the API server's return every status must be right.
const RECOVERY: Duration = Duration::from_secs(15);

async fn setup() -> (Client, &'static ControlPlane) {
    let plane = control_plane(true);
    support::operator(plane);
    (plane.client().await, plane)
}

fn shop(ns: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{istio-injection: enabled}}}}\n---\n\
         apiVersion: meshreadiness.io/v1alpha1\nkind: MeshReadiness\nmetadata: {{name: ready, namespace: {ns}}}\nspec: {{}}\n---\n\
         {}",
        service(ns, "web", "8080")
    )
}

/// A Service whose only port is named `port_name` (a bare number is no protocol: MR201).
fn service(ns: &str, name: &str, port_name: &str) -> String {
    let name_field = if port_name.parse::<u16>().is_ok() {
        String::new()
    } else {
        format!("name: {port_name}, ")
    };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec: {{selector: {{app: {name}}}, ports: [{{{name_field}port: 8080}}]}}\n"
    )
}

async fn status(client: &Client, ns: &str) -> Option<MeshReadinessStatus> {
    Api::<MeshReadiness>::namespaced(client.clone(), ns)
        .get_opt("ready")
        .await
        .ok()
        .flatten()?
        .status
}

/// The names of the objects MR201 is reported on.
fn mr201(s: &MeshReadinessStatus) -> Vec<String> {
    let mut names: Vec<String> = s
        .findings
        .iter()
        .filter(|f| f.code.as_str() == "MR201")
        .map(|f| f.name.clone())
        .collect();
    names.sort();
    names
}

async fn wait_mr201(client: &Client, ns: &str, within: Duration, expected: &[&str]) {
    eventually(
        within,
        &format!("MR201 on exactly {expected:?}"),
        || async {
            let s = status(client, ns).await?;
            (mr201(&s) == expected).then_some(())
        },
    )
    .await;
}

/// How many times an MR201 Event with `reason` was recorded in `ns` for `Service/<name>`.
async fn events(client: &Client, ns: &str, reason: &str, name: &str) -> usize {
    let needle = format!("MR201 PortProtocolUndeclared on Service/{name} ");
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| e.note.as_deref().is_some_and(|n| n.starts_with(&needle)))
        .map(|e| e.series.as_ref().map_or(1, |s| s.count as usize))
        .sum()
}

/// Holds the dead API server's port for `duration`, counting the connections the operator
/// attempts meanwhile (each is closed at once, as a refused connection would be).
fn count_attempts(port: u16, duration: Duration) -> std::thread::JoinHandle<usize> {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            match listener.accept() {
                Ok((stream, _)) => {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    drop(stream);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        attempts.load(Ordering::Relaxed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_down_for_30_seconds() {
    let _one = OUTAGE.lock().await;
    let (client, plane) = setup().await;
    let ns = "f-outage";
    apply_yaml(&client, &shop(ns)).await;
    wait_mr201(&client, ns, Duration::from_secs(60), &["web"]).await;

    plane.stop_apiserver();
    let attempts = count_attempts(plane.api_port(), Duration::from_secs(30));
    // While it is down, the cluster changes: `web` is fixed, `api` is broken.
    let other = plane.second_apiserver(&[]).await;
    apply_yaml(&other, &service(ns, "web", "http")).await;
    apply_yaml(&other, &service(ns, "api", "9090")).await;
    let attempts = attempts.join().unwrap();
    plane.start_apiserver().await;
    let back = Instant::now();

    wait_mr201(&client, ns, RECOVERY, &["api"]).await;
    eprintln!(
        "status right {:?} after the API server's return; {attempts} connection attempts in 30 s of outage",
        back.elapsed()
    );
    // Backoff, not a tight loop. 17 watches, each retrying at most every 5 s (500 ms doubling,
    // jittered) make about 12 attempts each in 30 s; hyper may open a second connection for a
    // request whose pooled one was closed. A loop without backoff makes thousands.
    assert!(attempts > 0, "the operator never tried to reconnect");
    assert!(
        attempts <= 17 * 12 * 3,
        "{attempts} connection attempts in 30 s: a retry loop"
    );
    // The operator still works: a change made now is seen.
    apply_yaml(&client, &service(ns, "api", "grpc")).await;
    wait_mr201(&client, ns, Duration::from_secs(30), &[]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(events(&client, ns, "FindingAppeared", "web").await, 1);
    assert_eq!(events(&client, ns, "FindingCleared", "web").await, 1);
    assert_eq!(events(&client, ns, "FindingAppeared", "api").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_expired_by_compaction_relist() {
    let _one = OUTAGE.lock().await;
    let (client, plane) = setup().await;
    let ns = "f-compaction";
    apply_yaml(&client, &shop(ns)).await;
    wait_mr201(&client, ns, Duration::from_secs(60), &["web"]).await;
    let lists_before = plane.operator_lists("services").len();

    plane.stop_apiserver();
    // Changes, then compaction of etcd past them: the operator's watches cannot resume from
    // the resourceVersion they last saw.
    let other = plane
        .second_apiserver(&["--etcd-compaction-interval=1s"])
        .await;
    apply_yaml(&other, &service(ns, "web", "http")).await;
    for i in 0..20 {
        apply_yaml(&other, &service(ns, &format!("churn-{i}"), "http")).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    plane.start_apiserver().await;

    wait_mr201(&client, ns, RECOVERY, &[]).await;
    eventually(Duration::from_secs(10), "a relist of services", || async {
        (plane.operator_lists("services").len() > lists_before).then_some(())
    })
    .await;
    let s = status(&client, ns).await.unwrap();
    assert!(s.findings.iter().all(|f| f.code.as_str() != "MR201"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(events(&client, ns, "FindingAppeared", "web").await, 1);
    assert_eq!(events(&client, ns, "FindingCleared", "web").await, 1);
}
