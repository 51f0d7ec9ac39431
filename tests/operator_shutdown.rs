//! SIGTERM, as the kubelet sends it: the operator (the real binary, with leader election) stops
//! well within the Deployment's grace period and releases its Lease, so a standby takes over at
//! once instead of after the lease expires.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use support::{OPERATOR_NAMESPACE, control_plane, eventually, local_address};

/// The operator process, killed if the test ends without stopping it.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(plane: &support::ControlPlane, identity: &str) -> Operator {
    let log = std::fs::File::create(plane.dir.join(format!("{identity}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_meshready"))
        .args(["controller", "--leader-elect", "--log-level", "info"])
        .arg("--kubeconfig")
        .arg(&plane.kubeconfig)
        .arg("--admin-address")
        .arg(local_address().to_string())
        .env("POD_NAME", identity)
        .env("OPERATOR_NAMESPACE", OPERATOR_NAMESPACE)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Operator(child)
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("meshready-leader")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_at_once_and_hands_the_lease_over() {
    let plane = control_plane(true);
    let client = plane.client().await;
    let leases: Api<Lease> = Api::namespaced(client, OPERATOR_NAMESPACE);

    let mut first = start(plane, "replica-a");
    eventually(Duration::from_secs(60), "replica-a to lead", || async {
        (holder(&leases).await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    let second = start(plane, "replica-b");
    // The standby waits while the leader renews.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(holder(&leases).await.as_deref(), Some("replica-a"));

    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(first.0.id() as i32, libc::SIGTERM) };
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = first.0.try_wait().unwrap() {
            break status;
        }
        // The Deployment's grace period is 30 s; the operator needs far less.
        assert!(
            stopping.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(plane.dir.join("replica-a.log")).unwrap();
    assert!(log.contains("released the leader lease"), "{log}");

    // The standby takes over well before the 15 s the lease would otherwise have held.
    eventually(Duration::from_secs(8), "replica-b to take over", || async {
        (holder(&leases).await.as_deref() == Some("replica-b")).then_some(())
    })
    .await;
    eprintln!("replica-b leads {:?} after the SIGTERM", stopping.elapsed());
    drop(second);
}
