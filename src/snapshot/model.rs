//! The owned, normalised view the checks read.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::MeshReadinessSpec;
use crate::api::istio::{
    DestinationRuleSpec, EnvoyFilterSpec, PeerAuthenticationSpec, VirtualServiceSpec,
};
use crate::api::k8s::{PodSpec, Time};
use crate::checks::Code;
use crate::istio::mesh::{InjectorValues, MeshConfig};
use crate::istio::protocol::Declared;

pub type Labels = BTreeMap<String, String>;

/// What a finding is about: kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(
        kind: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// The metadata the checks read, common to every object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Meta {
    pub namespace: String,
    pub name: String,
    pub creation: Option<Time>,
    pub labels: Labels,
    pub annotations: Labels,
    /// Codes suppressed on this object by `meshreadiness.io/ignore`.
    pub ignored: BTreeSet<Code>,
}

/// How a namespace stands towards sidecar injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    /// `istio-injection=enabled`, `istio.io/rev`, or the injector's namespaces-by-default.
    Enabled,
    /// `istio-injection=disabled`: nothing is injected, whatever the pods say.
    Disabled,
    /// No label: only pods that ask for it are injected.
    Unlabelled,
    /// `istio.io/dataplane-mode=ambient`: in the mesh through ztunnel, without sidecars.
    Ambient,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NamespaceInfo {
    pub meta: Meta,
    pub injection: Injection,
    /// Both `istio-injection` and `istio.io/rev` are set.
    pub conflicting_labels: bool,
    /// False when the namespace was only implied by the objects in it (offline input).
    pub declared: bool,
}

/// The kinds that own pods, and bare pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Job,
    CronJob,
    Pod,
    /// An owner the snapshot holds no object for (e.g. a ReplicationController).
    Other,
}

/// A pod-owning workload (or a bare pod): the unit that pod-level findings are reported on.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub kind: String,
    pub meta: Meta,
    /// The pod template's labels and annotations, and its spec.
    pub template: PodTemplate,
    /// Its pods in the cluster (or the bare pod itself).
    pub pods: Vec<PodState>,
    /// True when the template came from the workload object (not borrowed from a pod).
    pub has_template: bool,
}

impl Workload {
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::new(
            self.kind.clone(),
            self.meta.namespace.clone(),
            self.meta.name.clone(),
        )
    }

    /// Pods that are running or about to (phase not Succeeded or Failed).
    pub fn live_pods(&self) -> impl Iterator<Item = &PodState> {
        self.pods.iter().filter(|pod| pod.live)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodTemplate {
    pub labels: Labels,
    pub annotations: Labels,
    pub spec: PodSpec,
}

/// What a running pod shows about its proxy.
#[derive(Clone, Debug, PartialEq)]
pub struct PodState {
    pub name: String,
    /// Shared by the pods of one workload that carry the same labels (a ReplicaSet's all do),
    /// so that reading them once serves them all ([`std::sync::Arc::ptr_eq`]).
    pub labels: std::sync::Arc<Labels>,
    pub live: bool,
    /// An `istio-proxy` container (or native sidecar init container) is present.
    pub has_proxy: bool,
    /// The proxy runs as a native sidecar (init container with `restartPolicy: Always`).
    pub native_sidecar: bool,
    pub host_network: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServiceInfo {
    pub meta: Meta,
    /// `None` for Services without a selector (endpoints managed elsewhere).
    pub selector: Option<Labels>,
    pub type_: String,
    pub ports: Vec<ServicePortInfo>,
}

impl ServiceInfo {
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::new(
            "Service",
            self.meta.namespace.clone(),
            self.meta.name.clone(),
        )
    }

    pub fn fqdn(&self) -> String {
        crate::istio::hosts::service_fqdn(&self.meta.name, &self.meta.namespace)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePortInfo {
    pub name: Option<String>,
    pub port: i32,
    pub target_port: TargetPort,
    /// TCP, UDP or SCTP (as written).
    pub transport: String,
    pub app_protocol: Option<String>,
    /// The protocol Istio takes from `app_protocol`, `name` and `port`: decided once, as most
    /// families of checks ask it of every port.
    pub declared: Declared,
}

impl ServicePortInfo {
    pub fn new(
        name: Option<String>,
        port: i32,
        target_port: TargetPort,
        transport: String,
        app_protocol: Option<String>,
    ) -> Self {
        let declared =
            crate::istio::protocol::select(name.as_deref(), app_protocol.as_deref(), port);
        ServicePortInfo {
            name,
            port,
            target_port,
            transport,
            app_protocol,
            declared,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TargetPort {
    Number(i32),
    Name(String),
}

impl std::fmt::Display for TargetPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetPort::Number(n) => write!(f, "{n}"),
            TargetPort::Name(name) => f.write_str(name),
        }
    }
}

/// An Istio object: its metadata and spec.
#[derive(Clone, Debug, PartialEq)]
pub struct IstioObject<S> {
    pub meta: Meta,
    pub spec: S,
}

pub type PeerAuthenticationInfo = IstioObject<PeerAuthenticationSpec>;
pub type DestinationRuleInfo = IstioObject<DestinationRuleSpec>;
pub type VirtualServiceInfo = IstioObject<VirtualServiceSpec>;
pub type EnvoyFilterInfo = IstioObject<EnvoyFilterSpec>;
pub type MeshReadinessInfo = IstioObject<MeshReadinessSpec>;

/// Istio objects labelled `app.kubernetes.io/managed-by: meshreadiness`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OwnedObjects {
    pub peer_authentications: Vec<PeerAuthenticationInfo>,
    pub destination_rules: Vec<DestinationRuleInfo>,
    pub virtual_services: Vec<VirtualServiceInfo>,
}

impl Meta {
    /// Created by meshready (and so never counted by the checks).
    pub fn is_owned(&self) -> bool {
        self.labels
            .get(crate::api::keys::MANAGED_BY)
            .map(String::as_str)
            == Some(crate::api::keys::MANAGED_BY_VALUE)
    }
}

/// Everything the checks read, owned.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub namespaces: BTreeMap<String, NamespaceInfo>,
    pub workloads: Vec<Workload>,
    pub services: Vec<ServiceInfo>,
    pub peer_authentications: Vec<PeerAuthenticationInfo>,
    pub destination_rules: Vec<DestinationRuleInfo>,
    pub virtual_services: Vec<VirtualServiceInfo>,
    pub envoy_filters: Vec<EnvoyFilterInfo>,
    pub mesh_readiness: Vec<MeshReadinessInfo>,
    /// meshready's own remediation objects, kept apart: findings are computed on the user's
    /// configuration alone, so a remediation never hides the need that justified it.
    pub owned: OwnedObjects,
    pub mesh: MeshConfig,
    pub injector: InjectorValues,
    /// Native sidecars are on cluster-wide (istiod's setting, or `--native-sidecars on`).
    pub native_sidecars: bool,
}

impl Snapshot {
    /// Namespaces the checks never look into: Kubernetes' own and Istio's root namespace.
    pub fn is_system_namespace(&self, namespace: &str) -> bool {
        matches!(namespace, "kube-system" | "kube-public" | "kube-node-lease")
            || namespace == self.mesh.root_namespace
    }

    /// Namespaces the snapshot knows, system ones excluded.
    pub fn checkable_namespaces(&self) -> BTreeSet<String> {
        self.namespaces
            .keys()
            .filter(|ns| !self.is_system_namespace(ns))
            .cloned()
            .collect()
    }

    pub fn namespace(&self, name: &str) -> Option<&NamespaceInfo> {
        self.namespaces.get(name)
    }
}
