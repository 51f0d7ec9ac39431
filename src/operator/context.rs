//! What the reconciler and the web server share.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use kube::Client;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;

use crate::api::MeshReadiness;
use crate::checks::Finding;
use crate::operator::metrics::Metrics;
use crate::operator::snapshots::SharedSnapshot;
use crate::operator::stores::Stores;
use crate::snapshot::ObjectRef;

/// A finding's identity across reconciles: the same code on the same object.
pub type FindingKey = (crate::checks::Code, ObjectRef);

pub struct Context {
    pub client: Client,
    pub stores: Stores,
    pub mesh_readiness: Store<MeshReadiness>,
    /// The snapshot of the caches, built once for every reconcile that sees them unchanged.
    pub snapshots: SharedSnapshot,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// The namespace whose MeshReadiness objects may select other namespaces.
    pub operator_namespace: String,
    /// The findings last reported per MeshReadiness (namespace, name), so Events are sent on
    /// transitions only. Seeded from the status after a restart.
    pub reported: Mutex<HashMap<(String, String), BTreeMap<FindingKey, Finding>>>,
    /// Every watch has delivered its first list and Istio's presence is known. Until then a
    /// reconcile would judge a partial cache (and, say, flip Ready on every restart).
    pub synced: AtomicBool,
    /// When writes of a remediation kind in a namespace were last refused (403), so a missing
    /// role is not asked again on every reconcile.
    pub forbidden: Mutex<HashMap<(crate::remediation::Kind, String), std::time::Instant>>,
    /// This replica holds the leader lease (always true without leader election).
    pub leader: std::sync::Arc<AtomicBool>,
}

impl Context {
    /// Only the leader writes.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Waits for the caches, then marks the context synced.
    pub async fn sync(&self) {
        if self.stores.wait_until_ready().await.is_err() {
            return;
        }
        while !self.stores.istio.known() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        tracing::info!(istio = self.stores.istio.detected(), "watch caches synced");
        self.synced.store(true, Ordering::Release);
    }
}
