//! One cluster object of a kind the checks read, decoded from JSON or taken from a watch.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::MeshReadiness;
use crate::api::istio::{DestinationRule, EnvoyFilter, PeerAuthentication, VirtualService};
use crate::api::k8s::{
    ConfigMap, CronJob, DaemonSet, Deployment, Job, Namespace, Pod, ReplicaSet, Service,
    StatefulSet,
};
use crate::snapshot::cached::{CachedPod, CachedService};

/// A cluster object the snapshot is built from.
// Unboxed on purpose: each object is moved once, from a decoder or a watch cache into the
// snapshot builder, so the size difference costs nothing that boxing would save.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum ClusterObject {
    Namespace(Namespace),
    Pod(Pod),
    /// A Pod as the operator's cache holds it.
    CachedPod(CachedPod),
    ReplicaSet(ReplicaSet),
    Deployment(Deployment),
    StatefulSet(StatefulSet),
    DaemonSet(DaemonSet),
    Job(Job),
    CronJob(CronJob),
    Service(Service),
    /// A Service as the operator's cache holds it.
    CachedService(CachedService),
    ConfigMap(ConfigMap),
    PeerAuthentication(PeerAuthentication),
    DestinationRule(DestinationRule),
    VirtualService(VirtualService),
    EnvoyFilter(EnvoyFilter),
    MeshReadiness(MeshReadiness),
}

#[derive(Debug, thiserror::Error)]
#[error("{kind} {name:?}: {}{source}", field_prefix(.path))]
pub struct DecodeError {
    pub kind: String,
    pub name: String,
    /// The field that failed to decode, e.g. `spec.ports[0].port`; empty for the object itself.
    pub path: String,
    #[source]
    pub source: serde_json::Error,
}

fn field_prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

/// Decodes and remembers where it failed, so a loader can point at the offending line.
fn decode<T: DeserializeOwned>(value: Value) -> Result<T, (String, serde_json::Error)> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        (path, error.into_inner())
    })
}

impl ClusterObject {
    /// Decodes one manifest document. `Ok(None)` for documents that are not Kubernetes objects
    /// or are of a kind the checks do not read.
    pub fn from_value(value: Value) -> Result<Option<ClusterObject>, DecodeError> {
        let (Some(api_version), Some(kind)) = (
            value.get("apiVersion").and_then(Value::as_str),
            value.get("kind").and_then(Value::as_str),
        ) else {
            return Ok(None);
        };
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        let kind = kind.to_string();
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let object = match (group, kind.as_str()) {
            ("", "Namespace") => decode(value).map(ClusterObject::Namespace),
            ("", "Pod") => decode(value).map(ClusterObject::Pod),
            ("", "Service") => decode(value).map(ClusterObject::Service),
            ("", "ConfigMap") => decode(value).map(ClusterObject::ConfigMap),
            ("apps", "ReplicaSet") => decode(value).map(ClusterObject::ReplicaSet),
            ("apps", "Deployment") => decode(value).map(ClusterObject::Deployment),
            ("apps", "StatefulSet") => decode(value).map(ClusterObject::StatefulSet),
            ("apps", "DaemonSet") => decode(value).map(ClusterObject::DaemonSet),
            ("batch", "Job") => decode(value).map(ClusterObject::Job),
            ("batch", "CronJob") => decode(value).map(ClusterObject::CronJob),
            ("security.istio.io", "PeerAuthentication") => {
                decode(value).map(ClusterObject::PeerAuthentication)
            }
            ("networking.istio.io", "DestinationRule") => {
                decode(value).map(ClusterObject::DestinationRule)
            }
            ("networking.istio.io", "VirtualService") => {
                decode(value).map(ClusterObject::VirtualService)
            }
            ("networking.istio.io", "EnvoyFilter") => decode(value).map(ClusterObject::EnvoyFilter),
            ("meshreadiness.io", "MeshReadiness") => {
                decode(value).map(ClusterObject::MeshReadiness)
            }
            _ => return Ok(None),
        };
        object.map(Some).map_err(|(path, source)| DecodeError {
            kind,
            name,
            path,
            source,
        })
    }
}
