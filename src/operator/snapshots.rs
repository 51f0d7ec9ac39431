//! One snapshot (and its index) for every reconcile, kept and brought up to date as the caches
//! change. Built from every cached object, it used to be built again by each reconcile (at a
//! cold start all MeshReadiness objects reconcile at once and each built the whole cluster),
//! then whole after every cache write; now only the namespaces written since are rebuilt
//! (benchmark 4 in BENCHMARKS.md).
//!
//! Building is the operator's one long piece of CPU work (half a second on the large cluster
//! of BENCHMARKS.md when whole), so it runs on a blocking thread: on the async workers it would
//! stall the watches, the other reconciles and the health and metrics endpoints while it lasts.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use kube::runtime::reflector::Store;
use tokio::sync::{OwnedRwLockReadGuard, RwLock};

use crate::api::MeshReadiness;
use crate::checks::Incremental;
use crate::operator::error::Result;
use crate::operator::stores::Stores;
use crate::snapshot::{BuildOptions, Snapshot};

/// Counts the writes to the watch caches and notes which namespaces they touched. Each watch
/// records an event after its store has taken it (and after a relist has replaced the store),
/// so what [`CacheWrites::take`] returns is never newer than what a build then reads: a
/// snapshot may only be older than its count says, never newer.
#[derive(Clone, Debug, Default)]
pub struct CacheWrites(Arc<std::sync::Mutex<Touched>>);

/// What the caches were written since the last [`CacheWrites::take`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Touched {
    /// Writes ever counted, up to this one.
    count: u64,
    /// The namespaces of the objects written (a Namespace object counts as its own).
    namespaces: BTreeSet<String>,
    /// Something not of one namespace was written (a Node, or a whole store on a relist): only
    /// a whole build is sure to be up to date.
    everything: bool,
}

/// Which part of the snapshot one cache write touches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Touch {
    Namespace(String),
    Everything,
}

impl CacheWrites {
    pub fn record(&self, touch: Touch) {
        let mut touched = self.lock();
        touched.count += 1;
        match touch {
            Touch::Namespace(namespace) => {
                touched.namespaces.insert(namespace);
            }
            Touch::Everything => touched.everything = true,
        }
    }

    fn count(&self) -> u64 {
        self.lock().count
    }

    /// The writes since the last take, which starts anew.
    fn take(&self) -> Touched {
        let mut touched = self.lock();
        Touched {
            count: touched.count,
            namespaces: std::mem::take(&mut touched.namespaces),
            everything: std::mem::take(&mut touched.everything),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Touched> {
        // Plain counters and a set: a panic elsewhere leaves them whole.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
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

/// The kept snapshot and index, and what they were last brought up to date from.
pub struct Kept {
    /// `None` until built, and while (or after failing) being brought up to date: then the next
    /// update builds it whole, as the writes it was taking in are no longer listed.
    from: Option<BuiltFrom>,
    native_sidecars: bool,
    /// [`fingerprints`] of the MeshReadiness objects it holds.
    mesh_readiness: BTreeMap<String, u64>,
    analysis: Incremental,
}

impl Default for Kept {
    fn default() -> Self {
        Kept {
            from: None,
            native_sidecars: false,
            mesh_readiness: BTreeMap::new(),
            analysis: Incremental::new(Snapshot::default()),
        }
    }
}

/// The snapshot and index a reconcile reads, kept from changing while it reads them.
pub type Current = OwnedRwLockReadGuard<Kept, Incremental>;

/// One snapshot and index for all reconciles, brought up to date when the caches changed: the
/// namespaces written since (or whose MeshReadiness objects changed) are rebuilt and spliced in
/// ([`Incremental`]), and only a change that shapes every namespace (a relist, a Node, the mesh
/// config or the root namespace, the native-sidecar setting) builds it whole again. On the
/// large cluster of BENCHMARKS.md one namespace takes about 0.3 ms, the whole about 0.5 s.
#[derive(Default)]
pub struct SharedSnapshot {
    // Async, so that a reconcile waiting for an update gives its worker back meanwhile; the
    // update waits for the reconciles reading the snapshot to finish.
    kept: Arc<RwLock<Kept>>,
}

impl SharedSnapshot {
    /// The snapshot of the caches as they are now: the kept one when nothing changed since, else
    /// the kept one brought up to date. A reconcile that finds another updating waits for it
    /// rather than doing the same beside it.
    pub async fn current(
        &self,
        stores: &Stores,
        mesh_readiness: &Store<MeshReadiness>,
    ) -> Result<Current> {
        let now = || BuiltFrom {
            cache_writes: stores.writes.count(),
            mesh_readiness: fingerprint(mesh_readiness),
        };
        let read = Arc::clone(&self.kept).read_owned().await;
        if read.from == Some(now()) {
            return Ok(analysis(read));
        }
        drop(read);
        let mut write = Arc::clone(&self.kept).write_owned().await;
        if write.from != Some(now()) {
            let (stores, mesh_readiness) = (stores.clone(), mesh_readiness.clone());
            // The update is CPU work: off the async workers, with the lock.
            let updated;
            (write, updated) = tokio::task::spawn_blocking(move || {
                update(&mut write, &stores, &mesh_readiness).map(|updated| (write, updated))
            })
            .await??;
            tracing::debug!(?updated, "snapshot brought up to date");
        }
        Ok(analysis(write.downgrade()))
    }
}

fn analysis(kept: OwnedRwLockReadGuard<Kept>) -> Current {
    OwnedRwLockReadGuard::map(kept, |kept| &kept.analysis)
}

/// How [`update`] brought a snapshot up to date.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Updated {
    /// These namespaces were rebuilt and spliced in.
    Namespaces(BTreeSet<String>),
    Whole,
}

/// Brings `kept` up to date with the caches: the namespaces written since are rebuilt in place
/// when that is all that changed, else all of it is built anew.
fn update(
    kept: &mut Kept,
    stores: &Stores,
    mesh_readiness: &Store<MeshReadiness>,
) -> Result<Updated> {
    let built = kept.from.take().is_some();
    let touched = stores.writes.take();
    let mesh_readiness_now = fingerprints(mesh_readiness);
    let from = BuiltFrom {
        cache_writes: touched.count,
        mesh_readiness: hash(&mesh_readiness_now),
    };
    let native_sidecars = stores.native_sidecars();
    let options = BuildOptions {
        assume_injected: false,
        native_sidecars: Some(native_sidecars),
        ..BuildOptions::default()
    };
    if built && !touched.everything && kept.native_sidecars == native_sidecars {
        // A MeshReadiness is an object of its namespace like any other; which namespaces it
        // covers is read from the snapshot by each reconcile.
        let mut namespaces = touched.namespaces;
        namespaces.extend(changed(&kept.mesh_readiness, &mesh_readiness_now));
        let objects = stores.objects_in(&namespaces, mesh_readiness);
        let replaced = objects.into_iter().try_for_each(|(namespace, objects)| {
            kept.analysis
                .replace_namespace(&namespace, objects, &options)
                .map(drop)
        });
        match replaced {
            Ok(()) => {
                kept.from = Some(from);
                kept.mesh_readiness = mesh_readiness_now;
                return Ok(Updated::Namespaces(namespaces));
            }
            // The mesh-wide namespaces (mesh config, root policies) shape every namespace.
            Err(error) => tracing::debug!(%error, "building the snapshot whole"),
        }
    }
    let snapshot = Snapshot::build(stores.objects(mesh_readiness), &options)?;
    *kept = Kept {
        from: Some(from),
        native_sidecars,
        mesh_readiness: mesh_readiness_now,
        analysis: Incremental::new(snapshot),
    };
    Ok(Updated::Whole)
}

/// What of the MeshReadiness objects a snapshot holds: identity, metadata and spec (through the
/// generation), and whether one is being deleted (then the snapshot leaves it out). Not the
/// status, nor the resourceVersion, which every status write changes.
fn fingerprint(mesh_readiness: &Store<MeshReadiness>) -> u64 {
    hash(&fingerprints(mesh_readiness))
}

/// [`fingerprint`] namespace by namespace, for the namespaces that hold any.
fn fingerprints(mesh_readiness: &Store<MeshReadiness>) -> BTreeMap<String, u64> {
    let mut by_namespace: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for mr in mesh_readiness.state() {
        let meta = &mr.metadata;
        let of_object = hash(&(
            (&meta.namespace, &meta.name, &meta.uid, meta.generation),
            meta.deletion_timestamp.is_some(),
            (&meta.labels, &meta.annotations),
        ));
        by_namespace
            .entry(meta.namespace.clone().unwrap_or_default())
            .or_default()
            .push(of_object);
    }
    by_namespace
        .into_iter()
        .map(|(namespace, mut objects)| {
            // The store's order is a hash map's: sorted, the same objects give the same hash.
            objects.sort_unstable();
            (namespace, hash(&objects))
        })
        .collect()
}

fn hash(value: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// The namespaces whose MeshReadiness objects differ between two [`fingerprints`].
fn changed(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeSet<String> {
    let differs = |namespace: &&String| before.get(*namespace) != after.get(*namespace);
    before
        .keys()
        .chain(after.keys())
        .filter(differs)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;
    use kube::runtime::reflector::{Lookup, store, store::Writer};
    use kube::runtime::watcher::Event;
    use serde_json::Value;

    use crate::api::k8s::Service;
    use crate::checks::testing::examples;
    use crate::checks::{self, CheckRequest};
    use crate::operator::cache::{cache_service, strip_config_map, strip_meta, strip_node};
    use crate::operator::stores::IstioPresence;
    use crate::snapshot::CachedService;

    /// A store of the documents of kind `K`, each passed through `cache`, and its writer.
    fn filled<K, C>(docs: &[Value], cache: fn(K) -> C) -> (Store<C>, Writer<C>)
    where
        K: Resource<DynamicType = ()> + serde::de::DeserializeOwned,
        C: Lookup<DynamicType = ()> + Clone + 'static,
    {
        let (store, mut writer) = store();
        for doc in docs.iter().filter(|d| d["kind"] == K::kind(&()).as_ref()) {
            let object: K = serde_json::from_value(doc.clone()).expect("example decodes");
            writer.apply_watcher_event(&Event::Apply(cache(object)));
        }
        (store, writer)
    }

    /// The examples in stores as the watches fill them, and the MeshReadiness store; the
    /// writers of Services and MeshReadiness objects, to change one.
    fn caches(docs: &[Value]) -> (Stores, Store<MeshReadiness>, Writers) {
        let (services, services_writer) = filled(docs, cache_service);
        let (mrs, mrs_writer) = filled(docs, strip_meta);
        let stores = Stores {
            namespaces: filled(docs, strip_meta).0,
            pods: filled(docs, crate::operator::cache::cache_pod).0,
            replica_sets: filled(docs, strip_meta).0,
            deployments: filled(docs, strip_meta).0,
            stateful_sets: filled(docs, strip_meta).0,
            daemon_sets: filled(docs, strip_meta).0,
            jobs: filled(docs, strip_meta).0,
            cron_jobs: filled(docs, strip_meta).0,
            services,
            config_maps: filled(docs, strip_config_map).0,
            peer_authentications: filled(docs, strip_meta).0,
            destination_rules: filled(docs, strip_meta).0,
            virtual_services: filled(docs, strip_meta).0,
            envoy_filters: filled(docs, strip_meta).0,
            nodes: filled(docs, strip_node).0,
            istio: IstioPresence::new().0,
            writes: CacheWrites::default(),
        };
        let writers = Writers {
            services: services_writer,
            mesh_readiness: mrs_writer,
        };
        (stores, mrs, writers)
    }

    struct Writers {
        services: Writer<CachedService>,
        mesh_readiness: Writer<MeshReadiness>,
    }

    /// The kept snapshot is the one a whole build of the caches makes, and so are its findings.
    fn assert_as_if_built_whole(kept: &Kept, stores: &Stores, mrs: &Store<MeshReadiness>) {
        let options = BuildOptions {
            assume_injected: false,
            native_sidecars: Some(stores.native_sidecars()),
            ..BuildOptions::default()
        };
        let whole = Snapshot::build(stores.objects(mrs), &options).expect("builds");
        assert_eq!(kept.analysis.snapshot(), &whole);
        let all = CheckRequest {
            namespaces: whole.checkable_namespaces(),
            ..CheckRequest::default()
        };
        assert_eq!(kept.analysis.run(&all), checks::run(&whole, &all));
    }

    #[test]
    fn a_write_in_one_namespace_rebuilds_only_that_namespace() {
        let docs = examples();
        let (stores, mrs, mut writers) = caches(&docs);
        let mut kept = Kept::default();
        assert_eq!(
            update(&mut kept, &stores, &mrs).expect("builds"),
            Updated::Whole
        );
        assert_as_if_built_whole(&kept, &stores, &mrs);

        // The reporting Service gets its ports named, as the fix for its MR201 says.
        let namespace = "legacy-reporting".to_string();
        let only = CheckRequest {
            namespaces: [namespace.clone()].into(),
            ..CheckRequest::default()
        };
        let mr201 = |kept: &Kept| {
            let findings = kept.analysis.run(&only);
            findings
                .iter()
                .any(|f| f.code == crate::checks::Code::MR201)
        };
        assert!(mr201(&kept), "the example's unnamed port");
        let doc = docs
            .iter()
            .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "reporting")
            .expect("the reporting Service");
        let mut fixed: Service = serde_json::from_value(doc.clone()).expect("decodes");
        for port in fixed
            .spec
            .iter_mut()
            .flat_map(|s| s.ports.iter_mut().flatten())
        {
            port.name = Some(format!("http-{}", port.port));
            port.app_protocol = None;
        }
        writers
            .services
            .apply_watcher_event(&Event::Apply(cache_service(fixed)));
        stores.writes.record(Touch::Namespace(namespace.clone()));
        assert_eq!(
            update(&mut kept, &stores, &mrs).expect("updates"),
            Updated::Namespaces([namespace].into())
        );
        assert_as_if_built_whole(&kept, &stores, &mrs);
        assert!(!mr201(&kept), "the fix shows");

        // Nothing written since: nothing to rebuild.
        assert_eq!(
            update(&mut kept, &stores, &mrs).expect("updates"),
            Updated::Namespaces(BTreeSet::new())
        );
    }

    #[test]
    fn a_mesh_readiness_spec_change_rebuilds_only_its_namespace() {
        let docs = examples();
        let (stores, mrs, mut writers) = caches(&docs);
        let mut kept = Kept::default();
        update(&mut kept, &stores, &mrs).expect("builds");
        let mut changed = (*mrs.state()[0]).clone();
        changed
            .spec
            .checks
            .disabled
            .push(crate::checks::Code::MR201);
        changed.metadata.generation = Some(changed.metadata.generation.unwrap_or(1) + 1);
        let namespace = changed.metadata.namespace.clone().expect("namespaced");
        writers
            .mesh_readiness
            .apply_watcher_event(&Event::Apply(changed));
        assert_eq!(
            update(&mut kept, &stores, &mrs).expect("updates"),
            Updated::Namespaces([namespace].into())
        );
        assert_as_if_built_whole(&kept, &stores, &mrs);
    }

    #[test]
    fn a_relist_or_a_mesh_wide_write_builds_it_whole() {
        let docs = examples();
        let (stores, mrs, _) = caches(&docs);
        let mut kept = Kept::default();
        update(&mut kept, &stores, &mrs).expect("builds");
        for touch in [
            Touch::Everything,
            Touch::Namespace(crate::snapshot::ISTIO_SYSTEM_NAMESPACE.to_string()),
        ] {
            stores.writes.record(touch.clone());
            assert_eq!(
                update(&mut kept, &stores, &mrs).expect("builds"),
                Updated::Whole,
                "{touch:?}"
            );
            assert_as_if_built_whole(&kept, &stores, &mrs);
        }
    }

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
