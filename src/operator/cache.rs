//! What each watch caches of the objects it sees: stripped of what no check reads, and for
//! Pods and Services (most of a cluster's objects) a projection of our own
//! (`snapshot::CachedPod`, `CachedService`) instead of the k8s-openapi struct. Public for the
//! heap benchmark (`benches/heap.rs`), which measures what the caches hold.

use std::borrow::Cow;
use std::marker::PhantomData;

use kube::api::Resource;
use kube::core::{ObjectMeta, PartialObjectMeta};
use kube::runtime::reflector::Lookup;
use kube::runtime::watcher;

use crate::api::k8s::{ConfigMap, Pod, Service};
use crate::snapshot::{CachedPod, CachedService};
use k8s_openapi::api::core::v1::{Node, NodeStatus, NodeSystemInfo};

/// Drops what no check reads: managedFields (often the largest part of an object) and
/// kubectl's copy of the last applied manifest.
pub fn strip_meta<K: Resource>(mut object: K) -> K {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    object
}

/// Pods: of one whose controller carries the template, only its name, labels, phase,
/// `hostNetwork`, controller and what shows the proxy; see [`CachedPod::project`].
pub fn cache_pod(pod: Pod) -> CachedPod {
    CachedPod::project(strip_meta(pod))
}

/// Services: metadata, selector, type and ports.
pub fn cache_service(svc: Service) -> CachedService {
    CachedService::from(strip_meta(svc))
}

/// Nodes: only the kubelet version is read (for istiod's native-sidecar default).
pub(super) fn strip_node(node: Node) -> Node {
    let mut node = strip_meta(node);
    node.metadata.labels = None;
    node.metadata.annotations = None;
    node.spec = None;
    let kubelet_version = node
        .status
        .take()
        .and_then(|s| s.node_info)
        .map(|i| i.kubelet_version)
        .unwrap_or_default();
    node.status = Some(NodeStatus {
        node_info: Some(NodeSystemInfo {
            kubelet_version,
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    });
    node
}

/// ConfigMaps in istio-system: only the mesh config and injector values are read.
pub(super) fn strip_config_map(cm: ConfigMap) -> ConfigMap {
    let mut cm = strip_meta(cm);
    cm.binary_data = None;
    if let Some(data) = cm.data.as_mut() {
        data.retain(|key, _| key == "mesh" || key == "values");
    }
    cm
}

/// A watch event with its objects as the cache keeps them. A deleted object is projected too:
/// the store finds it by the kind, namespace and name that the projection keeps.
pub fn project_event<K, C>(event: watcher::Event<K>, cache: fn(K) -> C) -> watcher::Event<C> {
    match event {
        watcher::Event::Apply(object) => watcher::Event::Apply(cache(object)),
        watcher::Event::Delete(object) => watcher::Event::Delete(cache(object)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(object) => watcher::Event::InitApply(cache(object)),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// What the controller is told of a touched object of kind `K`: its namespace and name, all its
/// mappers read. A projection is no `Resource`, which the controller's trigger streams take.
pub fn touched<K, C: Lookup>(object: &C) -> PartialObjectMeta<K> {
    PartialObjectMeta {
        types: None,
        metadata: ObjectMeta {
            name: object.name().map(Cow::into_owned),
            namespace: object.namespace().map(Cow::into_owned),
            ..ObjectMeta::default()
        },
        _phantom: PhantomData,
    }
}

/// Lets a reflector store hold a projection in place of the kind it was projected from.
macro_rules! cached_as {
    ($cached:ty, $kind:ty) => {
        impl Lookup for $cached {
            type DynamicType = ();

            fn kind(_: &()) -> Cow<'_, str> {
                <$kind as Resource>::kind(&())
            }

            fn group(_: &()) -> Cow<'_, str> {
                <$kind as Resource>::group(&())
            }

            fn version(_: &()) -> Cow<'_, str> {
                <$kind as Resource>::version(&())
            }

            fn plural(_: &()) -> Cow<'_, str> {
                <$kind as Resource>::plural(&())
            }

            fn name(&self) -> Option<Cow<'_, str>> {
                Some(Cow::Borrowed(<$cached>::name(self)))
            }

            fn namespace(&self) -> Option<Cow<'_, str>> {
                <$cached>::namespace(self).map(Cow::Borrowed)
            }

            // Not kept: the store's keys compare by namespace and name alone, and would
            // otherwise hold a copy of each (the uid alone is 36 bytes per object).
            fn resource_version(&self) -> Option<Cow<'_, str>> {
                None
            }

            fn uid(&self) -> Option<Cow<'_, str>> {
                None
            }
        }
    };
}

cached_as!(CachedPod, Pod);
cached_as!(CachedService, Service);
