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
            labels,
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
            CachedPod::Controlled(pod) => Some(&pod.namespace),
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
    ServicePortInfo {
        target_port: match p.target_port {
            Some(IntOrString::Int(n)) => TargetPort::Number(n),
            Some(IntOrString::String(s)) => match s.parse() {
                Ok(n) => TargetPort::Number(n),
                Err(_) => TargetPort::Name(s),
            },
            None => TargetPort::Number(p.port),
        },
        name: p.name.filter(|n| !n.is_empty()),
        port: p.port,
        transport: p.protocol.unwrap_or_else(|| "TCP".to_string()),
        app_protocol: p.app_protocol.filter(|a| !a.is_empty()),
    }
}
