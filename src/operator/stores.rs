//! Watch caches: one reflector per kind the checks read, holding only what they read
//! (`cache.rs`).
//! Reconciles read only these stores, never the API server.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use futures::{Stream, StreamExt, TryStreamExt};
use kube::api::{Api, Resource};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Lookup, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;

use crate::api::MeshReadiness;
use crate::api::istio::{DestinationRule, EnvoyFilter, PeerAuthentication, VirtualService};
use crate::api::k8s::{
    ConfigMap, CronJob, DaemonSet, Deployment, Job, Namespace, Pod, ReplicaSet, Service,
    StatefulSet,
};
use crate::operator::snapshots::{CacheWrites, Touch};
use crate::snapshot::{CachedPod, CachedService, ClusterObject, ISTIO_SYSTEM_NAMESPACE};
use k8s_openapi::api::core::v1::Node;

use super::cache::{
    cache_pod, cache_service, project_event, strip_config_map, strip_meta, strip_node, touched,
};

/// A watch's stream of the objects it touched, by name and namespace (all the controller's
/// mappers read), which drives the controller.
pub type Changes<K> =
    std::pin::Pin<Box<dyn Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send>>;

/// Whether Istio's CRDs are served, as the Istio watches last found. A change either way
/// (installed, or deleted while running) is announced on a channel that re-checks every
/// MeshReadiness, since no object of theirs changed.
#[derive(Clone, Debug)]
pub struct IstioPresence {
    state: Arc<AtomicU8>,
    changed: futures::channel::mpsc::UnboundedSender<()>,
}

const UNKNOWN: u8 = 0;
const PRESENT: u8 = 1;
const ABSENT: u8 = 2;

impl IstioPresence {
    /// A presence not yet known, and the stream of its changes.
    pub fn new() -> (Self, futures::channel::mpsc::UnboundedReceiver<()>) {
        let (changed, changes) = futures::channel::mpsc::unbounded();
        let presence = IstioPresence {
            state: Arc::new(AtomicU8::new(UNKNOWN)),
            changed,
        };
        (presence, changes)
    }

    pub fn detected(&self) -> bool {
        self.state.load(Ordering::Relaxed) == PRESENT
    }

    fn observe<K>(&self, event: &Result<watcher::Event<K>, watcher::Error>) {
        let not_served =
            |error: &kube::Error| matches!(error, kube::Error::Api(s) if s.code == 404);
        let now = match event {
            Ok(watcher::Event::InitDone) => PRESENT,
            // Absent at start (the list), or deleted while running (the watch that resumes
            // after the CRD's deletion ended the old one).
            Err(watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e))
                if not_served(e) =>
            {
                ABSENT
            }
            _ => return,
        };
        let before = self.state.swap(now, Ordering::Relaxed);
        if before != now && before != UNKNOWN {
            tracing::info!(present = now == PRESENT, "Istio's CRDs changed");
            let _ = self.changed.unbounded_send(());
        }
    }

    pub fn known(&self) -> bool {
        self.state.load(Ordering::Relaxed) != UNKNOWN
    }
}

/// Watches `K` and caches each object as `cache` makes it (stripped, or projected to a type of
/// our own). The stream says which objects were touched, by name and namespace.
fn reflect<K, C>(
    api: Api<K>,
    cache: fn(K) -> C,
    istio: Option<&IstioPresence>,
    writes: &CacheWrites,
) -> (Store<C>, Changes<K>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    C: Lookup<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let presence = istio.cloned();
    let writes = writes.clone();
    let events = match istio {
        Some(_) => relisting_when_unserved(api).boxed(),
        None => watcher(api, watcher::Config::default().any_semantic()).boxed(),
    };
    let events = events
        .map(move |event| {
            if let Some(presence) = &presence {
                presence.observe(&event);
            }
            event
        })
        .backoff(super::backoff::WatchBackoff::default())
        .map_ok(move |event| project_event(event, cache));
    // `reflector` rather than `.reflect()`, which would want `C` to be a `Resource`.
    let changes = reflector::reflector(writer, events)
        // Every event, not only the objects passed on: a relist replaces the store at its end.
        .inspect(move |event| {
            if let Ok(event) = event {
                writes.record(touch::<K, C>(event));
            }
        })
        .touched_objects()
        .map_ok(|object| touched::<K, C>(&object))
        .filter_map(|change| std::future::ready(retried_here(change)))
        .boxed();
    (reader, changes)
}

/// The part of the snapshot a cache event touches: the object's namespace (a Namespace's own),
/// or all of it for a cluster-scoped object of another kind (a Node) and for a relist, which
/// replaces the whole store.
fn touch<K: Resource<DynamicType = ()>, C: Lookup>(event: &watcher::Event<C>) -> Touch {
    let object = match event {
        watcher::Event::Apply(object)
        | watcher::Event::Delete(object)
        | watcher::Event::InitApply(object) => object,
        watcher::Event::Init | watcher::Event::InitDone => return Touch::Everything,
    };
    match object.namespace() {
        Some(namespace) => Touch::Namespace(namespace.into_owned()),
        None if K::kind(&()) == "Namespace" => {
            Touch::Namespace(object.name().unwrap_or_default().into_owned())
        }
        None => Touch::Everything,
    }
}

/// A watcher of a kind whose CRD may be deleted and installed again (Istio's). When its CRD is
/// deleted, kube's watcher keeps retrying the watch from the resourceVersion it last saw, and
/// would resume there, without a relist, once the CRD is back: nothing would say it is served
/// again. So on a 404 this watcher ends and a fresh one starts, whose list tells.
fn relisting_when_unserved<K>(
    api: Api<K>,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    futures::stream::repeat(()).flat_map(move |()| {
        watcher(api.clone(), watcher::Config::default().any_semantic()).scan(
            false,
            |ended, event| {
                if *ended {
                    return std::future::ready(None);
                }
                *ended = matches!(
                    &event,
                    Err(watcher::Error::WatchStartFailed(kube::Error::Api(s))) if s.code == 404
                );
                std::future::ready(Some(event))
            },
        )
    })
}

/// A watch error stops here: logged, and retried by this watch's own backoff. Passed on, it
/// would reach the controller's trigger stream, which kube-runtime backs off as one, so that
/// every watch waits while any one fails (after an API server outage, statuses stayed stale
/// for minutes: tests/faults_apiserver.rs).
pub fn retried_here<K: Resource<DynamicType = ()>>(
    change: Result<K, watcher::Error>,
) -> Option<Result<K, watcher::Error>> {
    match change {
        Ok(object) => Some(Ok(object)),
        Err(error) => {
            tracing::warn!(kind = %K::kind(&()), %error, "watch failed; retrying");
            None
        }
    }
}

/// The stores every reconcile reads.
#[derive(Clone)]
pub struct Stores {
    pub namespaces: Store<Namespace>,
    pub pods: Store<CachedPod>,
    pub replica_sets: Store<ReplicaSet>,
    pub deployments: Store<Deployment>,
    pub stateful_sets: Store<StatefulSet>,
    pub daemon_sets: Store<DaemonSet>,
    pub jobs: Store<Job>,
    pub cron_jobs: Store<CronJob>,
    pub services: Store<CachedService>,
    pub config_maps: Store<ConfigMap>,
    pub peer_authentications: Store<PeerAuthentication>,
    pub destination_rules: Store<DestinationRule>,
    pub virtual_services: Store<VirtualService>,
    pub envoy_filters: Store<EnvoyFilter>,
    pub nodes: Store<Node>,
    pub istio: IstioPresence,
    /// Bumped by every watch after its store changed.
    pub writes: CacheWrites,
}

/// The change streams, one per kind, to be wired into the controller.
pub struct ChangeStreams {
    pub namespaces: Changes<Namespace>,
    pub pods: Changes<Pod>,
    pub replica_sets: Changes<ReplicaSet>,
    pub deployments: Changes<Deployment>,
    pub stateful_sets: Changes<StatefulSet>,
    pub daemon_sets: Changes<DaemonSet>,
    pub jobs: Changes<Job>,
    pub cron_jobs: Changes<CronJob>,
    pub services: Changes<Service>,
    pub config_maps: Changes<ConfigMap>,
    pub peer_authentications: Changes<PeerAuthentication>,
    pub destination_rules: Changes<DestinationRule>,
    pub virtual_services: Changes<VirtualService>,
    pub envoy_filters: Changes<EnvoyFilter>,
    /// Not a trigger (kubelets heartbeat): only keeps the node store current.
    pub nodes: Changes<Node>,
    /// Istio's CRDs appeared or went: every MeshReadiness is re-checked.
    pub istio: futures::channel::mpsc::UnboundedReceiver<()>,
}

impl Stores {
    /// Starts nothing by itself: the returned streams run the watches once polled.
    pub fn new(client: &kube::Client) -> (Stores, ChangeStreams) {
        let (istio, istio_changes) = IstioPresence::new();
        let writes = CacheWrites::default();
        let all = || client.clone();
        let (namespaces, ns) = reflect(Api::all(all()), strip_meta, None, &writes);
        let (pods, po) = reflect(Api::all(all()), cache_pod, None, &writes);
        let (replica_sets, rs) = reflect(Api::all(all()), strip_meta, None, &writes);
        let (deployments, deploy) = reflect(Api::all(all()), strip_meta, None, &writes);
        let (stateful_sets, sts) = reflect(Api::all(all()), strip_meta, None, &writes);
        let (daemon_sets, ds) = reflect(Api::all(all()), strip_meta, None, &writes);
        let (jobs, job) = reflect(Api::all(all()), strip_meta, None, &writes);
        let (cron_jobs, cj) = reflect(Api::all(all()), strip_meta, None, &writes);
        let (services, svc) = reflect(Api::all(all()), cache_service, None, &writes);
        let (config_maps, cm) = reflect(
            Api::namespaced(all(), ISTIO_SYSTEM_NAMESPACE),
            strip_config_map,
            None,
            &writes,
        );
        let (peer_authentications, pa) =
            reflect(Api::all(all()), strip_meta, Some(&istio), &writes);
        let (destination_rules, dr) = reflect(Api::all(all()), strip_meta, Some(&istio), &writes);
        let (virtual_services, vs) = reflect(Api::all(all()), strip_meta, Some(&istio), &writes);
        let (envoy_filters, ef) = reflect(Api::all(all()), strip_meta, Some(&istio), &writes);
        let (nodes, node) = reflect(Api::all(all()), strip_node, None, &writes);
        let stores = Stores {
            namespaces,
            pods,
            replica_sets,
            deployments,
            stateful_sets,
            daemon_sets,
            jobs,
            cron_jobs,
            services,
            config_maps,
            peer_authentications,
            destination_rules,
            virtual_services,
            envoy_filters,
            nodes,
            istio,
            writes,
        };
        let streams = ChangeStreams {
            namespaces: ns,
            pods: po,
            replica_sets: rs,
            deployments: deploy,
            stateful_sets: sts,
            daemon_sets: ds,
            jobs: job,
            cron_jobs: cj,
            services: svc,
            config_maps: cm,
            peer_authentications: pa,
            destination_rules: dr,
            virtual_services: vs,
            envoy_filters: ef,
            nodes: node,
            istio: istio_changes,
        };
        (stores, streams)
    }

    /// Every cached object, for one snapshot. MeshReadiness objects come from the controller's
    /// own store.
    pub fn objects(&self, mesh_readiness: &Store<MeshReadiness>) -> Vec<ClusterObject> {
        let mut objects = Vec::new();
        self.each(mesh_readiness, &|_| true, &mut |_, object| {
            objects.push(object)
        });
        objects
    }

    /// The cached objects of these namespaces (each one's Namespace object with them), by
    /// namespace: every one of them is a key, emptied or not.
    pub fn objects_in(
        &self,
        namespaces: &BTreeSet<String>,
        mesh_readiness: &Store<MeshReadiness>,
    ) -> BTreeMap<String, Vec<ClusterObject>> {
        let mut by_namespace: BTreeMap<String, Vec<ClusterObject>> = namespaces
            .iter()
            .map(|namespace| (namespace.clone(), Vec::new()))
            .collect();
        let wanted = |namespace: &str| namespaces.contains(namespace);
        self.each(mesh_readiness, &wanted, &mut |namespace, object| {
            if let Some(objects) = by_namespace.get_mut(namespace) {
                objects.push(object);
            }
        });
        by_namespace
    }

    /// Hands `into` each cached object whose namespace (a Namespace's own name) is `wanted`.
    fn each(
        &self,
        mesh_readiness: &Store<MeshReadiness>,
        wanted: &dyn Fn(&str) -> bool,
        into: &mut dyn FnMut(&str, ClusterObject),
    ) {
        fn all<K: Lookup + Clone + 'static>(
            store: &Store<K>,
            wrap: fn(K) -> ClusterObject,
            wanted: &dyn Fn(&str) -> bool,
            into: &mut dyn FnMut(&str, ClusterObject),
        ) where
            K::DynamicType: Eq + std::hash::Hash + Clone,
        {
            for object in store.state() {
                let namespace = object
                    .namespace()
                    .or_else(|| object.name())
                    .unwrap_or_default();
                if wanted(&namespace) {
                    into(&namespace, wrap((*object).clone()));
                }
            }
        }
        all(&self.namespaces, ClusterObject::Namespace, wanted, into);
        all(&self.pods, ClusterObject::CachedPod, wanted, into);
        all(&self.replica_sets, ClusterObject::ReplicaSet, wanted, into);
        all(&self.deployments, ClusterObject::Deployment, wanted, into);
        all(
            &self.stateful_sets,
            ClusterObject::StatefulSet,
            wanted,
            into,
        );
        all(&self.daemon_sets, ClusterObject::DaemonSet, wanted, into);
        all(&self.jobs, ClusterObject::Job, wanted, into);
        all(&self.cron_jobs, ClusterObject::CronJob, wanted, into);
        all(&self.services, ClusterObject::CachedService, wanted, into);
        all(&self.config_maps, ClusterObject::ConfigMap, wanted, into);
        all(
            &self.peer_authentications,
            ClusterObject::PeerAuthentication,
            wanted,
            into,
        );
        all(
            &self.destination_rules,
            ClusterObject::DestinationRule,
            wanted,
            into,
        );
        all(
            &self.virtual_services,
            ClusterObject::VirtualService,
            wanted,
            into,
        );
        all(
            &self.envoy_filters,
            ClusterObject::EnvoyFilter,
            wanted,
            into,
        );
        // One being deleted neither reports nor remediates: another may take over at once.
        for mr in mesh_readiness.state() {
            let namespace = mr.metadata.namespace.as_deref().unwrap_or_default();
            if mr.metadata.deletion_timestamp.is_none() && wanted(namespace) {
                into(namespace, ClusterObject::MeshReadiness((*mr).clone()));
            }
        }
    }

    /// istiod's native-sidecar setting: its `ENABLE_NATIVE_SIDECARS`, else (unset or `auto`) its
    /// version and every node's kubelet version decide.
    pub fn native_sidecars(&self) -> bool {
        let istiod = self.deployments.state().into_iter().find(|d| {
            d.metadata.namespace.as_deref() == Some(ISTIO_SYSTEM_NAMESPACE)
                && d.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n == "istiod" || n.starts_with("istiod-"))
        });
        let discovery = istiod.as_ref().and_then(|d| {
            let spec = d.spec.as_ref()?.template.spec.as_ref()?;
            spec.containers
                .iter()
                .find(|c| c.name == "discovery")
                .cloned()
        });
        let env = discovery.as_ref().and_then(|c| {
            c.env
                .iter()
                .flatten()
                .find(|e| e.name == "ENABLE_NATIVE_SIDECARS")
                .and_then(|e| e.value.clone())
        });
        let version = discovery
            .as_ref()
            .and_then(|c| c.image.as_deref())
            .and_then(crate::istio::sidecar::minor_version);
        let kubelets: Vec<(u32, u32)> = self
            .nodes
            .state()
            .iter()
            .filter_map(|n| n.status.as_ref()?.node_info.as_ref())
            .filter_map(|i| crate::istio::sidecar::minor_version(&i.kubelet_version))
            .collect();
        crate::istio::sidecar::istiod_native_sidecars(env.as_deref(), version, &kubelets)
    }

    /// Resolves once every Kubernetes watch has delivered its first list. The Istio watches are
    /// not waited for: their CRDs may be absent, which the reconcile reports instead.
    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.namespaces.wait_until_ready().await?;
        self.pods.wait_until_ready().await?;
        self.replica_sets.wait_until_ready().await?;
        self.deployments.wait_until_ready().await?;
        self.stateful_sets.wait_until_ready().await?;
        self.daemon_sets.wait_until_ready().await?;
        self.jobs.wait_until_ready().await?;
        self.cron_jobs.wait_until_ready().await?;
        self.services.wait_until_ready().await?;
        self.nodes.wait_until_ready().await?;
        self.config_maps.wait_until_ready().await
    }
}
