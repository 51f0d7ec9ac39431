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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{BuildOptions, ClusterObject, Snapshot};
    use kube::runtime::reflector::{self, ObjectRef, Store};

    /// Pods of every template kind, phase and proxy form, bare pods and one of a kind the
    /// snapshot takes no template from; Services with named, numbered and missing target
    /// ports; two pods of one name in two namespaces.
    const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: legacy}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}, annotations: {proxy.istio.io/config: "holdApplicationUntilProxyStarts: true"}}
    spec:
      containers:
        - name: app
          image: node:20
          ports: [{name: http, containerPort: 8080}]
          readinessProbe: {tcpSocket: {port: 8080}}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-5d4f
  namespace: shop
  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, uid: u0, controller: true}]
spec:
  selector: {matchLabels: {app: web}}
  template: {metadata: {labels: {app: web}}, spec: {containers: [{name: app, image: node:20}]}}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-5d4f-a
  namespace: shop
  labels: {app: web, pod-template-hash: 5d4f}
  annotations: {sidecar.istio.io/status: "{}"}
  managedFields: [{manager: kubelet, operation: Update, apiVersion: v1}]
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-5d4f, uid: u1, controller: true}]
spec:
  containers: [{name: app, image: node:20}, {name: istio-proxy, image: proxyv2}]
status: {phase: Running, podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-5d4f-b
  namespace: shop
  labels: {app: web, pod-template-hash: 5d4f}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-5d4f, uid: u1, controller: true}]
spec:
  initContainers: [{name: istio-proxy, image: proxyv2, restartPolicy: Always}]
  containers: [{name: app, image: node:20}]
status: {phase: Pending}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-5d4f-c
  namespace: shop
  labels: {app: web}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-5d4f, uid: u1, controller: true}]
spec:
  containers: [{name: app, image: node:20}]
status: {phase: Succeeded}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-5d4f-d
  namespace: shop
  labels: {app: web}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-5d4f, uid: u1, controller: true}]
spec:
  hostNetwork: true
  initContainers: [{name: istio-proxy, image: proxyv2}]
  containers: [{name: app, image: node:20}]
status: {phase: Failed}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  serviceName: db
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: postgres:16, ports: [{containerPort: 5432}]}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: db-0
  namespace: shop
  labels: {app: db}
  ownerReferences: [{apiVersion: apps/v1, kind: StatefulSet, name: db, uid: u2, controller: true}]
spec:
  containers: [{name: db, image: postgres:16}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: legacy}
spec:
  selector: {matchLabels: {app: db}}
  serviceName: db
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: postgres:16}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: db-0
  namespace: legacy
  labels: {app: db}
  ownerReferences: [{apiVersion: apps/v1, kind: StatefulSet, name: db, uid: u3, controller: true}]
spec:
  containers: [{name: db, image: postgres:16}]
status: {phase: Running}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: legacy}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {hostNetwork: true, containers: [{name: agent, image: agent:1}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: agent-x1
  namespace: legacy
  labels: {app: agent}
  ownerReferences: [{apiVersion: apps/v1, kind: DaemonSet, name: agent, uid: u4, controller: true}]
spec:
  hostNetwork: true
  containers: [{name: agent, image: agent:1}]
status: {phase: Running}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: shop}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec: {restartPolicy: Never, containers: [{name: job, image: curl, args: [curl, http://web]}]}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: nightly-1
  namespace: shop
  ownerReferences: [{apiVersion: batch/v1, kind: CronJob, name: nightly, uid: u5, controller: true}]
spec:
  template:
    spec: {restartPolicy: Never, containers: [{name: job, image: curl}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: nightly-1-z
  namespace: shop
  ownerReferences: [{apiVersion: batch/v1, kind: Job, name: nightly-1, uid: u6, controller: true}]
spec:
  restartPolicy: Never
  containers: [{name: job, image: curl}, {name: istio-proxy, image: proxyv2}]
status: {phase: Succeeded}
---
apiVersion: v1
kind: Pod
metadata:
  name: debug
  namespace: shop
  creationTimestamp: "2026-11-30T09:14:07Z"
  annotations: {meshreadiness.io/ignore: MR504, sidecar.istio.io/rewriteAppHTTPProbers: "false"}
spec:
  containers:
    - name: app
      image: curl
      ports: [{containerPort: 15020}]
      livenessProbe: {httpGet: {port: 8080, path: /}}
status: {phase: Running}
---
apiVersion: v1
kind: Pod
metadata:
  name: legacy-rc-abc
  namespace: legacy
  labels: {app: legacy}
  annotations: {sidecar.istio.io/inject: "true"}
  ownerReferences: [{apiVersion: v1, kind: ReplicationController, name: legacy-rc, uid: u7, controller: true}]
spec:
  containers: [{name: app, image: node:20, ports: [{name: http, containerPort: 3000}]}]
status: {phase: Running}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  creationTimestamp: "2026-11-30T09:14:07Z"
  labels: {app: web}
  annotations: {meshreadiness.io/app-idle-timeout: 3s, meshreadiness.io/ignore: MR804}
spec:
  selector: {app: web}
  clusterIP: 10.96.0.10
  ports:
    - {name: http, port: 80, targetPort: http}
    - {name: metrics, port: 9090, targetPort: 9090, appProtocol: http}
    - {port: 8443, targetPort: "8444"}
status: {loadBalancer: {}}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  type: NodePort
  selector: {app: db}
  ports: [{name: tcp-pg, port: 5432, nodePort: 30432}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: legacy}
spec:
  selector: {app: db}
  ports: [{port: 5432, targetPort: 5432}, {name: dns, port: 53, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: legacy}
spec:
  selector: {app: legacy}
  ports: [{name: http, port: 80, targetPort: 3000}]
---
apiVersion: v1
kind: Service
metadata: {name: external, namespace: legacy}
spec:
  type: ExternalName
  externalName: example.com
  selector: {}
"#;

    fn documents() -> Vec<serde_json::Value> {
        serde_saphyr::from_multiple(CLUSTER).expect("test YAML parses")
    }

    /// `documents` of kind `K` as a reflector store holds them after a watch's initial list,
    /// each passed through `cache`.
    fn cached<K, C>(docs: &[serde_json::Value], cache: fn(K) -> C) -> Store<C>
    where
        K: Resource<DynamicType = ()> + serde::de::DeserializeOwned,
        C: Lookup<DynamicType = ()> + Clone + 'static,
    {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        for doc in docs.iter().filter(|d| d["kind"] == K::kind(&()).as_ref()) {
            let object: K = serde_json::from_value(doc.clone()).expect("test object decodes");
            writer.apply_watcher_event(&project_event(watcher::Event::InitApply(object), cache));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        store
    }

    /// The cached form of the object with `meta`'s namespace and name.
    fn held<C: Lookup<DynamicType = ()> + Clone>(store: &Store<C>, meta: &ObjectMeta) -> C {
        let name = meta.name.as_deref().unwrap_or_default();
        let key = ObjectRef::new(name);
        let key = match meta.namespace.as_deref() {
            Some(namespace) => key.within(namespace),
            None => key,
        };
        (*store.get(&key).expect("cached")).clone()
    }

    /// Builds the snapshot of `docs` decoded, and again with their Pods and Services taken
    /// from the caches, and compares snapshots and findings.
    fn assert_caches_build_the_same_snapshot(docs: &[serde_json::Value]) {
        let full: Vec<ClusterObject> = docs
            .iter()
            .filter_map(|d| ClusterObject::from_value(d.clone()).expect("test object decodes"))
            .collect();
        let (pods, services) = (cached(docs, cache_pod), cached(docs, cache_service));
        // In the documents' order: a workload lists its pods in the order they come.
        let from_caches: Vec<ClusterObject> = full
            .iter()
            .map(|object| match object {
                ClusterObject::Pod(pod) => ClusterObject::CachedPod(held(&pods, &pod.metadata)),
                ClusterObject::Service(svc) => {
                    ClusterObject::CachedService(held(&services, &svc.metadata))
                }
                other => other.clone(),
            })
            .collect();
        for native_sidecars in [None, Some(true)] {
            let options = BuildOptions {
                native_sidecars,
                ..BuildOptions::default()
            };
            let expected = Snapshot::build(full.clone(), &options).expect("builds");
            let actual = Snapshot::build(from_caches.clone(), &options).expect("builds");
            assert_eq!(actual, expected);
            let findings = crate::checks::testing::run_all(&actual);
            assert_eq!(findings, crate::checks::testing::run_all(&expected));
            assert!(findings.len() > 5, "the objects exercise the checks");
        }
    }

    #[test]
    fn a_snapshot_from_the_caches_equals_one_from_the_full_objects() {
        let docs = documents();
        let pods = cached(&docs, cache_pod).state();
        assert_eq!(pods.len(), 10, "two pods of one name in two namespaces");
        let controlled = pods
            .iter()
            .filter(|p| matches!(***p, CachedPod::Controlled(_)));
        assert_eq!(controlled.count(), 8, "all but the bare and the RC's pod");
        assert_eq!(cached(&docs, cache_service).state().len(), 5);
        assert_caches_build_the_same_snapshot(&docs);
    }

    #[test]
    fn the_examples_build_the_same_snapshot_from_the_caches() {
        assert_caches_build_the_same_snapshot(&crate::checks::testing::examples());
    }

    #[test]
    fn a_deleted_object_leaves_the_cache_and_touches_its_namespace() {
        let pods = documents()
            .into_iter()
            .filter(|d| d["kind"] == "Pod")
            .map(|d| serde_json::from_value::<Pod>(d).expect("test pod decodes"));
        let (store, mut writer) = reflector::store::<CachedPod>();
        for pod in pods.clone() {
            writer.apply_watcher_event(&project_event(watcher::Event::Apply(pod), cache_pod));
        }
        let db = pods
            .filter(|p| p.metadata.name.as_deref() == Some("db-0"))
            .find(|p| p.metadata.namespace.as_deref() == Some("legacy"))
            .expect("db-0 in legacy");
        let event = project_event(watcher::Event::Delete(db), cache_pod);
        writer.apply_watcher_event(&event);
        let names: Vec<(String, String)> = store
            .state()
            .iter()
            .map(|p| (p.namespace().unwrap_or_default().into(), p.name().into()))
            .filter(|(_, name)| name == "db-0")
            .collect();
        assert_eq!(names, [("shop".to_string(), "db-0".to_string())]);
        let watcher::Event::Delete(deleted) = event else {
            panic!("a deletion stays one");
        };
        let change = touched::<Pod, _>(&deleted);
        assert_eq!(change.metadata.namespace.as_deref(), Some("legacy"));
        assert_eq!(change.metadata.name.as_deref(), Some("db-0"));
        assert_eq!(<CachedPod as Lookup>::kind(&()), "Pod");
    }

    #[test]
    fn the_caches_drop_managed_fields_and_the_last_applied_manifest() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web", "namespace": "shop",
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    "meshreadiness.io/ignore": "MR201",
                },
                "managedFields": [{"manager": "kubectl"}],
            },
        }))
        .expect("decodes");
        let info = Snapshot::build(
            [ClusterObject::CachedService(cache_service(svc))],
            &BuildOptions::default(),
        )
        .expect("builds")
        .services
        .remove(0);
        let keys: Vec<&String> = info.meta.annotations.keys().collect();
        assert_eq!(keys, ["meshreadiness.io/ignore"]);
    }
}
