//! SIGTERM, as the kubelet sends it: the operator (the real binary, with leader election) stops
//! well within the Deployment's grace period and releases its Lease, so a standby takes over at
//! once instead of after the lease expires.

mod support;

use std::time::{Duration, Instant};

use support::{OperatorProcess, control_plane, eventually, lease_holder, terminate};

fn start(plane: &support::ControlPlane, identity: &str) -> OperatorProcess {
    OperatorProcess::start(
        plane,
        identity,
        &["--leader-elect"],
        &[("POD_NAME", identity)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_at_once_and_hands_the_lease_over() {
    let plane = control_plane(true);
    let client = plane.client().await;

    let mut first = start(plane, "replica-a");
    eventually(Duration::from_secs(60), "replica-a to lead", || async {
        (lease_holder(&client).await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    let second = start(plane, "replica-b");
    // The standby waits while the leader renews.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(lease_holder(&client).await.as_deref(), Some("replica-a"));

    let stopping = Instant::now();
    // The Deployment's grace period is 30 s; the operator needs far less.
    let status = terminate(&mut first.0, Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(plane.dir.join("replica-a.log")).unwrap();
    assert!(log.contains("released the leader lease"), "{log}");

    // The standby takes over well before the 15 s the lease would otherwise have held.
    eventually(Duration::from_secs(8), "replica-b to take over", || async {
        (lease_holder(&client).await.as_deref() == Some("replica-b")).then_some(())
    })
    .await;
    eprintln!("replica-b leads {:?} after the SIGTERM", stopping.elapsed());
    drop(second);
}
