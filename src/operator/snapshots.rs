//! One snapshot (and its index) for every reconcile that sees the same caches. Built from every
//! cached object, it used to be built again by each reconcile: at a cold start all MeshReadiness
//! objects reconcile at once and each built the whole cluster (benchmark 4 in BENCHMARKS.md).
//!
//! The build is the operator's one long piece of CPU work (half a second on the large cluster
//! of BENCHMARKS.md), so it runs on a blocking thread: on the async workers it would stall the
//! watches, the other reconciles and the health and metrics endpoints while it lasts.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kube::runtime::reflector::Store;

use crate::api::MeshReadiness;
use crate::checks::Index;
use crate::operator::error::Result;
use crate::operator::stores::Stores;
use crate::snapshot::{BuildOptions, Snapshot};

/// Counts the writes to the watch caches. Each watch bumps it after its store has taken an event
/// (and after a relist has replaced the store), so a count read before a build is never newer
/// than what the build reads: a snapshot may only be older than its count says, never newer.
#[derive(Clone, Debug, Default)]
pub struct CacheWrites(Arc<AtomicU64>);

impl CacheWrites {
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// A built snapshot and its index, shared by the reconciles that read the same caches.
pub struct Built {
    pub snapshot: Snapshot,
    pub index: Index,
}

/// What a snapshot was built from: the cache writes counted before the build, and the
/// MeshReadiness objects as the snapshot reads them. Their store is the controller's own and
/// not counted, since our own status writes change it on every reconcile without changing
/// anything a snapshot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BuiltFrom {
    cache_writes: u64,
    mesh_readiness: u64,
}

#[derive(Default)]
pub struct SharedSnapshot {
    // Async, so that a reconcile waiting for another's build gives its worker back meanwhile.
    last: tokio::sync::Mutex<Option<(BuiltFrom, Arc<Built>)>>,
}

impl SharedSnapshot {
    /// The snapshot of the caches as they are now: the last one when nothing changed since it
    /// was built, else a new one. A reconcile that finds another building waits for it rather
    /// than building the same thing beside it.
    pub async fn current(
        &self,
        stores: &Stores,
        mesh_readiness: &Store<MeshReadiness>,
    ) -> Result<Arc<Built>> {
        let mut last = self.last.lock().await;
        let from = BuiltFrom {
            cache_writes: stores.writes.count(),
            mesh_readiness: fingerprint(mesh_readiness),
        };
        if let Some((built_from, built)) = last.as_ref()
            && *built_from == from
        {
            return Ok(Arc::clone(built));
        }
        let (stores, mesh_readiness) = (stores.clone(), mesh_readiness.clone());
        let built = tokio::task::spawn_blocking(move || build(&stores, &mesh_readiness)).await??;
        let built = Arc::new(built);
        *last = Some((from, Arc::clone(&built)));
        Ok(built)
    }
}

/// A snapshot of every cached object, and its index.
fn build(stores: &Stores, mesh_readiness: &Store<MeshReadiness>) -> Result<Built> {
    let options = BuildOptions {
        assume_injected: false,
        native_sidecars: Some(stores.native_sidecars()),
        ..BuildOptions::default()
    };
    let snapshot = Snapshot::build(stores.objects(mesh_readiness), &options)?;
    let index = Index::new(&snapshot);
    Ok(Built { snapshot, index })
}

/// What of the MeshReadiness objects a snapshot holds: identity, metadata and spec (through the
/// generation), and whether one is being deleted (then the snapshot leaves it out). Not the
/// status, nor the resourceVersion, which every status write changes.
fn fingerprint(mesh_readiness: &Store<MeshReadiness>) -> u64 {
    let mut objects: Vec<_> = mesh_readiness
        .state()
        .iter()
        .map(|mr| {
            let meta = &mr.metadata;
            let mut hasher = DefaultHasher::new();
            (&meta.namespace, &meta.name, &meta.uid, meta.generation).hash(&mut hasher);
            meta.deletion_timestamp.is_some().hash(&mut hasher);
            (&meta.labels, &meta.annotations).hash(&mut hasher);
            hasher.finish()
        })
        .collect();
    // The store's order is a hash map's: sorted, the same objects give the same fingerprint.
    objects.sort_unstable();
    let mut hasher = DefaultHasher::new();
    objects.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector::store;
    use kube::runtime::watcher::Event;

    fn mr(name: &str, generation: i64) -> MeshReadiness {
        let mut mr = MeshReadiness::new(name, Default::default());
        mr.metadata.namespace = Some("shop".into());
        mr.metadata.uid = Some(format!("uid-{name}"));
        mr.metadata.generation = Some(generation);
        mr
    }

    fn store_of(objects: &[MeshReadiness]) -> Store<MeshReadiness> {
        let (reader, mut writer) = store();
        for object in objects {
            writer.apply_watcher_event(&Event::Apply(object.clone()));
        }
        reader
    }

    #[test]
    fn a_status_write_keeps_the_fingerprint() {
        let before = mr("a", 1);
        let mut after = before.clone();
        after.metadata.resource_version = Some("42".into());
        after.status = Some(Default::default());
        assert_eq!(
            fingerprint(&store_of(&[before, mr("b", 1)])),
            fingerprint(&store_of(&[mr("b", 1), after]))
        );
    }

    #[test]
    fn a_spec_change_deletion_or_new_object_changes_the_fingerprint() {
        let base = fingerprint(&store_of(&[mr("a", 1)]));
        let mut deleting = mr("a", 1);
        deleting.metadata.deletion_timestamp = Some(crate::api::k8s::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        let mut labelled = mr("a", 1);
        labelled.metadata.labels = Some([("team".to_string(), "x".to_string())].into());
        for changed in [
            vec![mr("a", 2)],
            vec![deleting],
            vec![labelled],
            vec![mr("a", 1), mr("b", 1)],
            vec![],
        ] {
            assert_ne!(fingerprint(&store_of(&changed)), base, "{changed:?}");
        }
    }
}
