//! The types meshready speaks: its own `MeshReadiness` resource, the Istio kinds it reads and
//! writes, the Kubernetes kinds it reads, and the label and annotation keys it knows.

pub mod istio;
pub mod keys;
mod meshreadiness;

pub use meshreadiness::*;

/// Every Kubernetes type in use, from one place.
pub mod k8s {
    pub use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
    pub use k8s_openapi::api::batch::v1::{CronJob, Job};
    pub use k8s_openapi::api::core::v1::{
        ConfigMap, Container, ContainerPort, Namespace, Pod, PodSpec, PodStatus, PodTemplateSpec,
        Probe, Service, ServicePort,
    };
    pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        Condition, LabelSelector, ObjectMeta, OwnerReference, Time,
    };
    pub use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
}
