//! Compact forms of the most numerous objects, Pods and Services, holding only what the
//! snapshot reads of them. The operator's watch caches hold these: a k8s-openapi `Pod` takes
//! 2.4 KB before any field is set, and a `BTreeMap` ~500 B for even one label. The snapshot
//! builder reads every Pod and Service through these types, decoded or cached, so both
//! build the same snapshot.

use std::collections::BTreeMap;

use crate::api::k8s::{
    Container, IntOrString, Pod, PodSpec, PodStatus, Service, ServicePort, Time,
};
use crate::api::keys;
use crate::snapshot::build::{controller_of, meta_from, meta_of};
use crate::snapshot::model::{Labels, Meta, PodState, ServiceInfo, ServicePortInfo, TargetPort};

/// Labels, annotations or a selector, sorted by key, the pairs in one allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactMap(Box<[(Box<str>, Box<str>)]>);

impl CompactMap {
    fn new(map: Option<BTreeMap<String, String>>) -> Self {
        let pairs = map.into_iter().flatten();
        CompactMap(pairs.map(|(k, v)| (k.into(), v.into())).collect())
    }

    fn into_labels(self) -> Labels {
        let pairs = self.0.into_vec().into_iter();
        pairs.map(|(k, v)| (k.into(), v.into())).collect()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Kinds the snapshot takes pod templates from (a ReplicaSet's may come from its Deployment, a
/// Job's from its CronJob), so that a pod they control needs no spec of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateKind {
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
}

impl TemplateKind {
    const ALL: [TemplateKind; 4] = [
        TemplateKind::ReplicaSet,
        TemplateKind::StatefulSet,
        TemplateKind::DaemonSet,
        TemplateKind::Job,
    ];

    fn as_str(self) -> &'static str {
        match self {
            TemplateKind::ReplicaSet => "ReplicaSet",
            TemplateKind::StatefulSet => "StatefulSet",
            TemplateKind::DaemonSet => "DaemonSet",
            TemplateKind::Job => "Job",
        }
    }

    fn parse(kind: &str) -> Option<TemplateKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

/// A Pod as the snapshot reads it.
#[derive(Clone, Debug, PartialEq)]
pub enum CachedPod {
    /// Controlled by a kind whose template the snapshot reads: only what shows the pod's state.
    Controlled(ControlledPod),
    /// A bare pod, or one whose controller carries no template the snapshot reads (e.g. a
    /// ReplicationController): its spec and annotations stand in for a template. Rare, so
    /// kept whole.
    Whole(Box<Pod>),
}

/// What the checks read of a pod whose template comes from its controller.
#[derive(Clone, Debug, PartialEq)]
pub struct ControlledPod {
    namespace: Box<str>,
    name: Box<str>,
    labels: CompactMap,
    controller_kind: TemplateKind,
    controller: Box<str>,
    facts: PodFacts,
}

/// What shows whether a pod runs, and with which proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PodFacts {
    /// The phase is neither Succeeded nor Failed.
    live: bool,
    /// An `istio-proxy` container.
    proxy_container: bool,
    /// An `istio-proxy` init container with `restartPolicy: Always`.
    native_sidecar: bool,
    host_network: bool,
}

impl PodFacts {
    fn of(pod: &Pod) -> PodFacts {
        let spec = pod.spec.as_ref();
        let is_proxy = |c: &Container| c.name == keys::PROXY_CONTAINER;
        let init = spec.and_then(|s| s.init_containers.as_ref());
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        PodFacts {
            live: !matches!(phase, Some("Succeeded" | "Failed")),
            proxy_container: spec.is_some_and(|s| s.containers.iter().any(is_proxy)),
            native_sidecar: init
                .into_iter()
                .flatten()
                .any(|c| is_proxy(c) && c.restart_policy.as_deref() == Some("Always")),
            host_network: spec.and_then(|s| s.host_network) == Some(true),
        }
    }

    fn state(self, name: String, labels: Labels) -> PodState {
        PodState {
            name,
            labels: labels.into(),
            live: self.live,
            has_proxy: self.proxy_container || self.native_sidecar,
            native_sidecar: self.native_sidecar,
            host_network: self.host_network,
        }
    }

    /// The pod's spec as far as it is kept: the template while its controller is not cached.
    fn spec(self) -> PodSpec {
        let stub = |restart_policy: Option<&str>| Container {
            name: keys::PROXY_CONTAINER.to_string(),
            restart_policy: restart_policy.map(str::to_string),
            ..Container::default()
        };
        PodSpec {
            containers: self
                .proxy_container
                .then(|| stub(None))
                .into_iter()
                .collect(),
            init_containers: self.native_sidecar.then(|| vec![stub(Some("Always"))]),
            host_network: self.host_network.then_some(true),
            ..PodSpec::default()
        }
    }
}

/// What the snapshot builder takes from a pod.
pub(super) struct PodParts {
    pub meta: Meta,
    /// The kind and name of its controller (else of its first owner).
    pub owner: Option<(String, String)>,
    pub state: PodState,
    /// What stands in for the template when the owner supplies none.
    pub spec: PodSpec,
}

impl CachedPod {
    /// The operator's projection: of a pod controlled by a [`TemplateKind`], only what shows
    /// its state; any other keeps its spec and metadata, and of its status only the phase.
    pub fn project(mut pod: Pod) -> CachedPod {
        let controller = controller_of(&pod.metadata)
            .filter(|o| o.controller == Some(true))
            .and_then(|o| Some((TemplateKind::parse(&o.kind)?, o.name.as_str().into())));
        let Some((controller_kind, controller)) = controller else {
            pod.status = pod.status.map(|s| PodStatus {
                phase: s.phase,
                ..PodStatus::default()
            });
            return CachedPod::Whole(Box::new(pod));
        };
        let facts = PodFacts::of(&pod);
        let meta = pod.metadata;
        CachedPod::Controlled(ControlledPod {
            namespace: meta.namespace.unwrap_or_default().into(),
            name: meta.name.unwrap_or_default().into(),
            labels: CompactMap::new(meta.labels),
            controller_kind,
            controller,
            facts,
        })
    }

    /// A decoded pod, all of it: read from files, its controller may be missing, so its spec
    /// may have to stand in for the template.
    pub fn whole(pod: Pod) -> CachedPod {
        CachedPod::Whole(Box::new(pod))
    }

    pub fn name(&self) -> &str {
        match self {
            CachedPod::Controlled(pod) => &pod.name,
            CachedPod::Whole(pod) => pod.metadata.name.as_deref().unwrap_or_default(),
        }
    }

    pub fn namespace(&self) -> Option<&str> {
        match self {
            CachedPod::Controlled(pod) => Some(&*pod.namespace).filter(|ns| !ns.is_empty()),
            CachedPod::Whole(pod) => pod.metadata.namespace.as_deref(),
        }
    }

    pub(super) fn into_parts(self, default_namespace: &str) -> PodParts {
        match self {
            CachedPod::Whole(pod) => {
                let meta = meta_of(&pod.metadata, default_namespace);
                let owner = controller_of(&pod.metadata).map(|o| (o.kind.clone(), o.name.clone()));
                let state = PodFacts::of(&pod).state(meta.name.clone(), meta.labels.clone());
                PodParts {
                    meta,
                    owner,
                    state,
                    spec: pod.spec.unwrap_or_default(),
                }
            }
            CachedPod::Controlled(pod) => {
                let labels = pod.labels.into_labels();
                let name = String::from(pod.name);
                let state = pod.facts.state(name.clone(), labels.clone());
                let meta = meta_from(
                    Some(pod.namespace.into()),
                    name,
                    None,
                    labels,
                    Labels::new(),
                    default_namespace,
                );
                PodParts {
                    meta,
                    owner: Some((pod.controller_kind.as_str().into(), pod.controller.into())),
                    state,
                    spec: pod.facts.spec(),
                }
            }
        }
    }
}

/// A Service as the snapshot reads it: metadata, selector, type and ports; not the cluster
/// IPs, families, affinity, node ports or status.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedService {
    namespace: Option<Box<str>>,
    name: Box<str>,
    creation: Option<Time>,
    labels: CompactMap,
    annotations: CompactMap,
    /// Empty for none: the snapshot treats both alike.
    selector: CompactMap,
    type_: Option<Box<str>>,
    ports: Box<[ServicePortInfo]>,
}

impl From<Service> for CachedService {
    fn from(svc: Service) -> CachedService {
        let meta = svc.metadata;
        let spec = svc.spec.unwrap_or_default();
        CachedService {
            namespace: meta.namespace.map(String::into_boxed_str),
            name: meta.name.unwrap_or_default().into(),
            creation: meta.creation_timestamp,
            labels: CompactMap::new(meta.labels),
            annotations: CompactMap::new(meta.annotations),
            selector: CompactMap::new(spec.selector),
            type_: spec.type_.map(String::into_boxed_str),
            ports: spec.ports.into_iter().flatten().map(port_info).collect(),
        }
    }
}

impl CachedService {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    pub(super) fn into_info(self, default_namespace: &str) -> ServiceInfo {
        let meta = meta_from(
            self.namespace.map(String::from),
            self.name.into(),
            self.creation,
            self.labels.into_labels(),
            self.annotations.into_labels(),
            default_namespace,
        );
        ServiceInfo {
            meta,
            selector: (!self.selector.is_empty()).then(|| self.selector.into_labels()),
            type_: self.type_.map_or_else(|| "ClusterIP".into(), String::from),
            ports: self.ports.into_vec(),
        }
    }
}

fn port_info(p: ServicePort) -> ServicePortInfo {
    let target_port = match p.target_port {
        Some(IntOrString::Int(n)) => TargetPort::Number(n),
        Some(IntOrString::String(s)) => match s.parse() {
            Ok(n) => TargetPort::Number(n),
            Err(_) => TargetPort::Name(s),
        },
        None => TargetPort::Number(p.port),
    };
    ServicePortInfo::new(
        p.name.filter(|n| !n.is_empty()),
        p.port,
        target_port,
        p.protocol.unwrap_or_else(|| "TCP".to_string()),
        p.app_protocol.filter(|a| !a.is_empty()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_saphyr::from_str(yaml).expect("test pod decodes")
    }

    fn service(yaml: &str) -> ServiceInfo {
        let svc: Service = serde_saphyr::from_str(yaml).expect("test service decodes");
        CachedService::from(svc).into_info("default")
    }

    /// What the builder reads of `pod`, projected and whole: they must agree, except that a
    /// controlled pod keeps no annotations, creation time or spec (its template comes from
    /// its controller).
    fn assert_projection_keeps_what_is_read(pod: Pod, controlled: bool) {
        let projected = CachedPod::project(pod.clone());
        assert_eq!(matches!(projected, CachedPod::Controlled(_)), controlled);
        assert_eq!(
            projected.name(),
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        assert_eq!(projected.namespace(), pod.metadata.namespace.as_deref());
        let (cached, whole) = (
            projected.into_parts("default"),
            CachedPod::whole(pod).into_parts("default"),
        );
        assert_eq!(cached.state, whole.state);
        assert_eq!(cached.owner, whole.owner);
        assert_eq!(cached.meta.namespace, whole.meta.namespace);
        assert_eq!(cached.meta.name, whole.meta.name);
        assert_eq!(cached.meta.labels, whole.meta.labels);
        if !controlled {
            assert_eq!(cached.meta, whole.meta);
            assert_eq!(cached.spec, whole.spec);
        }
    }

    const CONTROLLED: &str = "
metadata:
  name: web-5d4f-x
  namespace: shop
  labels: {app: web, pod-template-hash: 5d4f}
  annotations: {sidecar.istio.io/status: '{}'}
  creationTimestamp: '2026-11-30T09:14:07Z'
  ownerReferences:
  - {apiVersion: apps/v1, kind: ReplicaSet, name: web-5d4f, uid: u1, controller: true}
status: {phase: Running, podIP: 10.0.0.1}
spec:
  containers:
    - {name: app, image: node:20, ports: [{containerPort: 8080}]}
    - {name: istio-proxy, image: proxyv2}
";

    #[test]
    fn a_controlled_pod_keeps_its_state_labels_and_controller() {
        assert_projection_keeps_what_is_read(pod(CONTROLLED), true);
        let CachedPod::Controlled(cached) = CachedPod::project(pod(CONTROLLED)) else {
            panic!("controlled by a ReplicaSet");
        };
        assert_eq!(cached.controller_kind, TemplateKind::ReplicaSet);
        assert_eq!(&*cached.controller, "web-5d4f");
        assert!(cached.facts.live && cached.facts.proxy_container);
        assert!(!cached.facts.native_sidecar && !cached.facts.host_network);
    }

    #[test]
    fn every_template_kind_phase_and_proxy_form_is_kept() {
        let variants = [
            (
                "StatefulSet",
                "Pending",
                "initContainers: [{name: istio-proxy, restartPolicy: Always}]",
            ),
            ("DaemonSet", "Succeeded", "hostNetwork: true"),
            ("Job", "Failed", "initContainers: [{name: istio-proxy}]"),
            ("ReplicaSet", "Unknown", "hostNetwork: false"),
        ];
        for (kind, phase, spec) in variants {
            let yaml = format!(
                "
metadata:
  name: p
  namespace: ns
  labels: {{app: a}}
  ownerReferences: [{{apiVersion: apps/v1, kind: {kind}, name: owner, uid: u, controller: true}}]
spec:
  containers: [{{name: app}}]
  {spec}
status: {{phase: {phase}}}
"
            );
            assert_projection_keeps_what_is_read(pod(&yaml), true);
        }
        let native = pod(&format!(
            "{CONTROLLED}  initContainers: [{{name: istio-proxy, restartPolicy: Always}}]\n"
        ));
        let parts = CachedPod::project(native).into_parts("default");
        assert!(parts.state.native_sidecar && parts.state.has_proxy);
    }

    #[test]
    fn a_pod_without_a_template_kind_controller_is_kept_whole_but_its_status() {
        let bare = "
metadata:
  name: debug
  namespace: shop
  annotations: {meshreadiness.io/ignore: MR102}
spec:
  containers: [{name: app, image: curl}]
status: {phase: Running, podIP: 10.0.0.2}
";
        let replication_controller = "
metadata:
  name: legacy-abc
  namespace: shop
  ownerReferences: [{apiVersion: v1, kind: ReplicationController, name: legacy, uid: u, controller: true}]
spec:
  containers: [{name: app}]
";
        let not_a_controller = "
metadata:
  name: adopted
  namespace: shop
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: rs, uid: u}]
spec:
  containers: [{name: app}]
";
        for yaml in [bare, replication_controller, not_a_controller] {
            assert_projection_keeps_what_is_read(pod(yaml), false);
        }
        let CachedPod::Whole(kept) = CachedPod::project(pod(bare)) else {
            panic!("a bare pod is kept whole");
        };
        let status = kept.status.as_ref().expect("status kept");
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip, None);
    }

    #[test]
    fn a_controlled_pod_stands_in_for_a_missing_template_with_what_it_keeps() {
        let yaml = format!("{CONTROLLED}  hostNetwork: true\n");
        let spec = CachedPod::project(pod(&yaml)).into_parts("default").spec;
        let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, [keys::PROXY_CONTAINER]);
        assert_eq!(spec.host_network, Some(true));
        assert_eq!(spec.init_containers, None);
    }

    #[test]
    fn a_service_keeps_metadata_selector_type_and_ports() {
        let info = service(
            "
metadata:
  name: web
  namespace: shop
  creationTimestamp: '2026-11-30T09:14:07Z'
  labels: {app: web}
  annotations: {meshreadiness.io/ignore: 'MR201', meshreadiness.io/app-idle-timeout: 60s}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http, nodePort: 30080, appProtocol: kubernetes.io/h2c}
  - {name: metrics, port: 9090, targetPort: 9091}
  - {name: '', port: 8443, targetPort: '8444', protocol: TCP, appProtocol: ''}
  - {name: dns, port: 53, protocol: UDP}
status: {loadBalancer: {}}
",
        );
        assert_eq!(
            (info.meta.namespace.as_str(), info.meta.name.as_str()),
            ("shop", "web")
        );
        assert!(info.meta.creation.is_some());
        assert_eq!(info.meta.labels.get("app").map(String::as_str), Some("web"));
        let timeout = info.meta.annotations.get(keys::APP_IDLE_TIMEOUT);
        assert_eq!(timeout.map(String::as_str), Some("60s"));
        assert!(
            info.meta
                .ignored
                .contains(&"MR201".parse().expect("a code"))
        );
        assert_eq!(info.type_, "NodePort");
        assert_eq!(
            info.selector,
            Some(Labels::from([("app".into(), "web".into())]))
        );
        let port = |name: Option<&str>, port, target_port, transport: &str, app: Option<&str>| {
            ServicePortInfo::new(
                name.map(String::from),
                port,
                target_port,
                transport.into(),
                app.map(String::from),
            )
        };
        assert_eq!(
            info.ports,
            [
                port(
                    Some("http"),
                    80,
                    TargetPort::Name("http".into()),
                    "TCP",
                    Some("kubernetes.io/h2c")
                ),
                port(Some("metrics"), 9090, TargetPort::Number(9091), "TCP", None),
                port(None, 8443, TargetPort::Number(8444), "TCP", None),
                port(Some("dns"), 53, TargetPort::Number(53), "UDP", None),
            ]
        );
    }

    #[test]
    fn a_service_without_a_selector_or_type_reads_as_before() {
        for selector in ["", "selector: {}"] {
            let info = service(&format!(
                "metadata: {{name: ext}}\nspec:\n  {selector}\n  ports: [{{port: 443}}]\n"
            ));
            assert_eq!(info.selector, None);
            assert_eq!(info.type_, "ClusterIP");
            assert_eq!(info.meta.namespace, "default");
        }
    }
}
