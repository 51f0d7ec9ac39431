//! Builds a [`Snapshot`] from cluster objects: resolves pod ownership, namespace injection state and
//! the mesh configuration, and drops everything the checks do not read.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::api::k8s::{ObjectMeta, OwnerReference, PodTemplateSpec, Time};
use crate::api::keys;
use crate::checks::Code;
use crate::istio::mesh::{InjectorValues, MeshConfig};
use crate::snapshot::cached::{CachedPod, CachedService, PodParts};
use crate::snapshot::model::*;
use crate::snapshot::object::ClusterObject;

/// Where the Istio control plane keeps its ConfigMaps.
pub const ISTIO_SYSTEM_NAMESPACE: &str = "istio-system";

/// Choices that differ between a live cluster and manifest files.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The namespace of objects that name none (manifest files).
    pub default_namespace: String,
    /// Namespaces with no Namespace object count as injected: the question offline is what
    /// would break once they are meshed.
    pub assume_injected: bool,
    /// Native sidecars on cluster-wide; `None` leaves it to the injector's values.
    pub native_sidecars: Option<bool>,
    /// A mesh config that wins over any `istio` ConfigMap among the objects.
    pub mesh_config: Option<MeshConfig>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            default_namespace: "default".to_string(),
            assume_injected: true,
            native_sidecars: None,
            mesh_config: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("ConfigMap {namespace}/{name}: {source}")]
    Config {
        namespace: String,
        name: String,
        #[source]
        source: crate::istio::mesh::ConfigError,
    },
}

type WorkloadKey = (String, String, String); // namespace, kind, name

pub(super) fn meta_of(meta: &ObjectMeta, default_namespace: &str) -> Meta {
    meta_from(
        meta.namespace.clone(),
        meta.name.clone().unwrap_or_default(),
        meta.creation_timestamp.clone(),
        meta.labels.clone().unwrap_or_default(),
        meta.annotations.clone().unwrap_or_default(),
        default_namespace,
    )
}

/// The metadata of an object in `namespace`, or in the default one when it names none.
pub(super) fn meta_from(
    namespace: Option<String>,
    name: String,
    creation: Option<Time>,
    labels: Labels,
    annotations: Labels,
    default_namespace: &str,
) -> Meta {
    let ignored = annotations
        .get(keys::IGNORE)
        .map(|codes| parse_ignored(codes))
        .unwrap_or_default();
    Meta {
        namespace: namespace_or(namespace, default_namespace),
        name,
        creation,
        labels,
        annotations,
        ignored,
    }
}

/// An object's namespace; the default one when it names none (manifest files).
fn namespace_or(namespace: Option<String>, default_namespace: &str) -> String {
    namespace
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| default_namespace.to_string())
}

/// `"MR201, mr702"`: unknown codes are ignored, as a typo must not break the analysis.
fn parse_ignored(codes: &str) -> BTreeSet<Code> {
    codes
        .split(',')
        .filter(|code| !code.trim().is_empty())
        .filter_map(|code| code.parse().ok())
        .collect()
}

pub(super) fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    let owners = meta.owner_references.as_deref()?;
    owners
        .iter()
        .find(|owner| owner.controller == Some(true))
        .or_else(|| owners.first())
}

/// Takes the template out of its (owned) workload object: pod specs are large, so they are
/// moved, never cloned.
fn template_of(template: PodTemplateSpec) -> PodTemplate {
    let meta = template.metadata.unwrap_or_default();
    PodTemplate {
        labels: meta.labels.unwrap_or_default(),
        annotations: meta.annotations.unwrap_or_default(),
        spec: template.spec.unwrap_or_default(),
    }
}

/// Builds a [`Snapshot`] from objects added one at a time, so a reader of many files need not
/// hold every decoded object at once: what the checks do not read is dropped as each arrives.
pub struct SnapshotBuilder {
    options: BuildOptions,
    snapshot: Snapshot,
    declared_namespaces: BTreeMap<String, Meta>,
    workloads: BTreeMap<WorkloadKey, Workload>,
    /// ReplicaSet or Job -> the Deployment or CronJob that owns it.
    owner_of: BTreeMap<WorkloadKey, WorkloadKey>,
    pods: Vec<CachedPod>,
    /// The controllers (namespace, kind, name) a pod was added for. Only the first pod of a
    /// controller can stand in for its template (`attach_pods`), so later ones keep no spec.
    pods_seen_for: BTreeSet<WorkloadKey>,
    config_maps: Vec<(Meta, BTreeMap<String, String>)>,
    objects: usize,
}

impl Extend<ClusterObject> for SnapshotBuilder {
    fn extend<I: IntoIterator<Item = ClusterObject>>(&mut self, objects: I) {
        for object in objects {
            self.add(object);
        }
    }
}

impl SnapshotBuilder {
    pub fn new(options: BuildOptions) -> Self {
        Self::seeded(options, Snapshot::default())
    }

    fn seeded(options: BuildOptions, seed: Snapshot) -> Self {
        SnapshotBuilder {
            options,
            snapshot: seed,
            declared_namespaces: BTreeMap::new(),
            workloads: BTreeMap::new(),
            owner_of: BTreeMap::new(),
            pods: Vec::new(),
            pods_seen_for: BTreeSet::new(),
            config_maps: Vec::new(),
            objects: 0,
        }
    }

    /// No object was added.
    pub fn is_empty(&self) -> bool {
        self.objects == 0
    }

    /// A decoded pod: whole while it may have to stand in for its controller's template (the
    /// controller may be missing from the files), projected once an earlier pod of the same
    /// controller holds that place.
    fn decoded_pod(&mut self, pod: crate::api::k8s::Pod) -> CachedPod {
        let Some(owner) = controller_of(&pod.metadata) else {
            return CachedPod::whole(pod);
        };
        let namespace = namespace_or(
            pod.metadata.namespace.clone(),
            &self.options.default_namespace,
        );
        let key = (namespace, owner.kind.clone(), owner.name.clone());
        if self.pods_seen_for.insert(key) {
            CachedPod::whole(pod)
        } else {
            CachedPod::project(pod)
        }
    }

    fn workload(&mut self, kind: &str, meta: &ObjectMeta, template: Option<PodTemplateSpec>) {
        let meta = meta_of(meta, &self.options.default_namespace);
        let key = (meta.namespace.clone(), kind.to_string(), meta.name.clone());
        let template = template.map(template_of);
        self.workloads.insert(
            key,
            Workload {
                kind: kind.to_string(),
                meta,
                has_template: template.is_some(),
                template: template.unwrap_or_default(),
                pods: Vec::new(),
            },
        );
    }

    /// Remembers that a ReplicaSet or Job is run by a Deployment or CronJob.
    fn owned(&mut self, kind: &str, meta: &ObjectMeta, owner_kinds: &[&str]) -> bool {
        let Some(owner) = controller_of(meta).filter(|o| owner_kinds.contains(&o.kind.as_str()))
        else {
            return false;
        };
        let own = meta_of(meta, &self.options.default_namespace);
        self.owner_of.insert(
            (own.namespace.clone(), kind.to_string(), own.name.clone()),
            (own.namespace, owner.kind.clone(), owner.name.clone()),
        );
        true
    }

    pub fn add(&mut self, object: ClusterObject) {
        self.objects += 1;
        let ns = self.options.default_namespace.clone();
        match object {
            ClusterObject::Namespace(n) => {
                let mut meta = meta_of(&n.metadata, &ns);
                meta.namespace = meta.name.clone();
                self.declared_namespaces.insert(meta.name.clone(), meta);
            }
            ClusterObject::Pod(pod) => {
                let pod = self.decoded_pod(pod);
                self.pods.push(pod);
            }
            ClusterObject::CachedPod(pod) => self.pods.push(pod),
            ClusterObject::ReplicaSet(rs) => {
                if !self.owned("ReplicaSet", &rs.metadata, &["Deployment"]) {
                    let template = rs.spec.and_then(|s| s.template);
                    self.workload("ReplicaSet", &rs.metadata, template);
                }
            }
            ClusterObject::Deployment(d) => {
                self.workload("Deployment", &d.metadata, d.spec.map(|s| s.template))
            }
            ClusterObject::StatefulSet(s) => {
                self.workload("StatefulSet", &s.metadata, s.spec.map(|s| s.template))
            }
            ClusterObject::DaemonSet(d) => {
                self.workload("DaemonSet", &d.metadata, d.spec.map(|s| s.template))
            }
            ClusterObject::Job(job) => {
                if !self.owned("Job", &job.metadata, &["CronJob"]) {
                    self.workload("Job", &job.metadata, job.spec.map(|s| s.template));
                }
            }
            ClusterObject::CronJob(cron) => {
                let template = cron.spec.job_template.spec.map(|s| s.template);
                self.workload("CronJob", &cron.metadata, template)
            }
            ClusterObject::Service(svc) => self.service(svc.into()),
            ClusterObject::CachedService(svc) => self.service(svc),
            ClusterObject::ConfigMap(cm) => {
                let meta = meta_of(&cm.metadata, &ns);
                self.config_maps.push((meta, cm.data.unwrap_or_default()));
            }
            ClusterObject::PeerAuthentication(pa) => {
                let meta = meta_of(&pa.metadata, &ns);
                let list = if meta.is_owned() {
                    &mut self.snapshot.owned.peer_authentications
                } else {
                    &mut self.snapshot.peer_authentications
                };
                list.push(IstioObject {
                    meta,
                    spec: pa.spec,
                });
            }
            ClusterObject::DestinationRule(dr) => {
                let meta = meta_of(&dr.metadata, &ns);
                let list = if meta.is_owned() {
                    &mut self.snapshot.owned.destination_rules
                } else {
                    &mut self.snapshot.destination_rules
                };
                list.push(IstioObject {
                    meta,
                    spec: dr.spec,
                });
            }
            ClusterObject::VirtualService(vs) => {
                let meta = meta_of(&vs.metadata, &ns);
                let list = if meta.is_owned() {
                    &mut self.snapshot.owned.virtual_services
                } else {
                    &mut self.snapshot.virtual_services
                };
                list.push(IstioObject {
                    meta,
                    spec: vs.spec,
                });
            }
            ClusterObject::EnvoyFilter(ef) => {
                let meta = meta_of(&ef.metadata, &ns);
                self.snapshot.envoy_filters.push(IstioObject {
                    meta,
                    spec: ef.spec,
                });
            }
            ClusterObject::MeshReadiness(mr) => {
                let meta = meta_of(&mr.metadata, &ns);
                self.snapshot.mesh_readiness.push(IstioObject {
                    meta,
                    spec: mr.spec,
                });
            }
        }
    }

    fn service(&mut self, svc: CachedService) {
        let info = svc.into_info(&self.options.default_namespace);
        self.snapshot.services.push(info);
    }

    /// The workload a pod reports under: follows ReplicaSet -> Deployment and Job -> CronJob.
    fn pod_workload_key(
        &self,
        namespace: &str,
        owner: Option<(String, String)>,
    ) -> Option<WorkloadKey> {
        let (kind, name) = owner?;
        let mut key = (namespace.to_string(), kind, name);
        while let Some(parent) = self.owner_of.get(&key) {
            key = parent.clone();
        }
        Some(key)
    }

    fn attach_pods(&mut self) {
        for pod in std::mem::take(&mut self.pods) {
            let PodParts {
                meta,
                owner,
                state,
                spec,
            } = pod.into_parts(&self.options.default_namespace);
            let key = self
                .pod_workload_key(&meta.namespace, owner)
                .unwrap_or_else(|| (meta.namespace.clone(), "Pod".to_string(), meta.name.clone()));
            let workload = self
                .workloads
                .entry(key.clone())
                .or_insert_with(|| Workload {
                    kind: key.1.clone(),
                    meta: if key.1 == "Pod" {
                        meta.clone()
                    } else {
                        Meta {
                            namespace: key.0.clone(),
                            name: key.2.clone(),
                            ..Meta::default()
                        }
                    },
                    template: PodTemplate::default(),
                    pods: Vec::new(),
                    has_template: false,
                });
            if !workload.has_template {
                workload.template = PodTemplate {
                    labels: meta.labels.clone(),
                    annotations: meta.annotations.clone(),
                    spec,
                };
                workload.has_template = true;
            }
            workload.pods.push(shared_labels(&workload.pods, state));
        }
    }

    fn read_config_maps(&mut self) -> Result<(), BuildError> {
        let in_istio_system = |name: &str| {
            self.config_maps
                .iter()
                .find(|(m, _)| m.namespace == ISTIO_SYSTEM_NAMESPACE && m.name == name)
        };
        let revisioned = |prefix: &str, key: &str| {
            self.config_maps.iter().find(|(m, data)| {
                m.namespace == ISTIO_SYSTEM_NAMESPACE
                    && m.name.starts_with(prefix)
                    && data.contains_key(key)
            })
        };
        let error = |meta: &Meta, source| BuildError::Config {
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            source,
        };
        let mesh = in_istio_system("istio").or_else(|| revisioned("istio-", "mesh"));
        if let Some((meta, data)) = mesh
            && let Some(text) = data.get("mesh")
        {
            self.snapshot.mesh = MeshConfig::parse(text).map_err(|e| error(meta, e))?;
        }
        let injector = in_istio_system("istio-sidecar-injector")
            .or_else(|| revisioned("istio-sidecar-injector-", "values"));
        if let Some((meta, data)) = injector
            && let Some(text) = data.get("values")
        {
            self.snapshot.injector = InjectorValues::parse(text).map_err(|e| error(meta, e))?;
        }
        if let Some(mesh) = &self.options.mesh_config {
            self.snapshot.mesh = mesh.clone();
        }
        Ok(())
    }

    fn namespaces(&mut self) {
        let mut names: BTreeSet<String> = self.declared_namespaces.keys().cloned().collect();
        let s = &self.snapshot;
        names.extend(self.workloads.keys().map(|(ns, _, _)| ns.clone()));
        names.extend(s.services.iter().map(|o| o.meta.namespace.clone()));
        names.extend(
            s.peer_authentications
                .iter()
                .map(|o| o.meta.namespace.clone()),
        );
        names.extend(s.destination_rules.iter().map(|o| o.meta.namespace.clone()));
        names.extend(s.virtual_services.iter().map(|o| o.meta.namespace.clone()));
        names.extend(s.envoy_filters.iter().map(|o| o.meta.namespace.clone()));
        names.extend(s.mesh_readiness.iter().map(|o| o.meta.namespace.clone()));
        let by_default = self.snapshot.injector.namespaces_by_default();
        for name in names {
            let info = match self.declared_namespaces.remove(&name) {
                Some(meta) => {
                    let injection_label =
                        meta.labels.get(keys::ISTIO_INJECTION).map(String::as_str);
                    let has_rev = meta.labels.contains_key(keys::ISTIO_REV);
                    let injection = match injection_label {
                        Some("enabled") => Injection::Enabled,
                        Some("disabled") => Injection::Disabled,
                        _ if has_rev => Injection::Enabled,
                        _ if meta.labels.get(keys::DATAPLANE_MODE).map(String::as_str)
                            == Some("ambient") =>
                        {
                            Injection::Ambient
                        }
                        _ if by_default => Injection::Enabled,
                        _ => Injection::Unlabelled,
                    };
                    NamespaceInfo {
                        conflicting_labels: injection_label.is_some() && has_rev,
                        meta,
                        injection,
                        declared: true,
                    }
                }
                None => NamespaceInfo {
                    meta: Meta {
                        namespace: name.clone(),
                        name: name.clone(),
                        ..Meta::default()
                    },
                    injection: if self.options.assume_injected || by_default {
                        Injection::Enabled
                    } else {
                        Injection::Unlabelled
                    },
                    conflicting_labels: false,
                    declared: false,
                },
            };
            self.snapshot.namespaces.insert(name, info);
        }
    }
}

impl Snapshot {
    /// Builds the snapshot from any mix of cluster objects. The result does not depend on their
    /// order.
    pub fn build(
        objects: impl IntoIterator<Item = ClusterObject>,
        options: &BuildOptions,
    ) -> Result<Snapshot, BuildError> {
        Self::build_from(objects, options, Snapshot::default())
    }

    /// Builds the snapshot of some namespaces' objects under the mesh and injector settings of
    /// `base` (whose Istio ConfigMaps the objects need not include), as an incremental
    /// analysis rebuilds one namespace.
    pub fn build_within(
        objects: impl IntoIterator<Item = ClusterObject>,
        options: &BuildOptions,
        base: &Snapshot,
    ) -> Result<Snapshot, BuildError> {
        let seed = Snapshot {
            mesh: base.mesh.clone(),
            injector: base.injector.clone(),
            ..Snapshot::default()
        };
        Self::build_from(objects, options, seed)
    }

    fn build_from(
        objects: impl IntoIterator<Item = ClusterObject>,
        options: &BuildOptions,
        seed: Snapshot,
    ) -> Result<Snapshot, BuildError> {
        let mut builder = SnapshotBuilder::seeded(options.clone(), seed);
        builder.extend(objects);
        builder.finish()
    }
}

impl SnapshotBuilder {
    /// The snapshot of every object added. It does not depend on the order they came in.
    pub fn finish(self) -> Result<Snapshot, BuildError> {
        let mut builder = self;
        // Owners first, so a Job seen before its CronJob still reports under the CronJob.
        let owned: Vec<WorkloadKey> = builder.owner_of.keys().cloned().collect();
        for key in owned {
            builder.workloads.remove(&key);
        }
        builder.attach_pods();
        builder.read_config_maps()?;
        builder.namespaces();
        let mut snapshot = builder.snapshot;
        snapshot.workloads = builder.workloads.into_values().collect();
        snapshot.native_sidecars = builder
            .options
            .native_sidecars
            .or_else(|| snapshot.injector.native_sidecars())
            .unwrap_or(false);
        let by_name = |a: &Meta, b: &Meta| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name));
        snapshot.services.sort_by(|a, b| by_name(&a.meta, &b.meta));
        snapshot
            .peer_authentications
            .sort_by(|a, b| by_name(&a.meta, &b.meta));
        snapshot
            .destination_rules
            .sort_by(|a, b| by_name(&a.meta, &b.meta));
        snapshot
            .virtual_services
            .sort_by(|a, b| by_name(&a.meta, &b.meta));
        snapshot
            .envoy_filters
            .sort_by(|a, b| by_name(&a.meta, &b.meta));
        snapshot
            .mesh_readiness
            .sort_by(|a, b| by_name(&a.meta, &b.meta));
        Ok(snapshot)
    }
}

/// The pod with the labels of the workload's last pod shared, when they are the same.
fn shared_labels(pods: &[PodState], mut pod: PodState) -> PodState {
    if let Some(last) = pods.last()
        && last.labels == pod.labels
    {
        pod.labels = Arc::clone(&last.labels);
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::k8s::Pod;

    fn pod(name: &str, owner: &str, image: &str) -> Pod {
        serde_saphyr::from_str(&format!(
            "{{metadata: {{name: {name}, namespace: shop, labels: {{app: web}},
               ownerReferences: [{{apiVersion: apps/v1, kind: ReplicaSet, name: {owner}, uid: u, controller: true}}]}},
             spec: {{containers: [{{name: app, image: {image}}}, {{name: istio-proxy}}]}},
             status: {{phase: Running}}}}"
        ))
        .expect("test pod decodes")
    }

    /// Decoded pods of one controller keep no spec after the first, which alone can stand in
    /// for the template: the snapshot is the one built from every pod whole, whether or not
    /// the controller is among the objects and in whatever order the pods come.
    #[test]
    fn only_the_first_pod_of_a_controller_keeps_its_spec() {
        let replica_set: crate::api::k8s::ReplicaSet = serde_saphyr::from_str(
            "{metadata: {name: web-1, namespace: shop},
             spec: {selector: {}, template: {metadata: {labels: {app: web}}, spec: {containers: [{name: app, image: rs}]}}}}",
        )
        .expect("test replica set decodes");
        let pods = [
            pod("web-1-a", "web-1", "first"),
            pod("web-1-b", "web-1", "second"),
            pod("web-2-a", "web-2", "other"),
            pod("web-1-c", "web-1", "third"),
        ];
        let options = BuildOptions::default();
        for with_controller in [false, true] {
            let controller =
                with_controller.then(|| ClusterObject::ReplicaSet(replica_set.clone()));
            let decoded = pods.iter().cloned().map(ClusterObject::Pod);
            let whole = pods
                .iter()
                .cloned()
                .map(|p| ClusterObject::CachedPod(CachedPod::whole(p)));
            let streamed: Vec<ClusterObject> =
                controller.clone().into_iter().chain(decoded).collect();
            let expected: Vec<ClusterObject> = controller.into_iter().chain(whole).collect();
            let built = Snapshot::build(streamed.clone(), &options).expect("builds");
            assert_eq!(built, Snapshot::build(expected, &options).expect("builds"));
            let reversed = Snapshot::build(streamed.into_iter().rev(), &options).expect("builds");
            let images: Vec<_> = [&built, &reversed]
                .iter()
                .map(|s| {
                    let web_1 = s
                        .workloads
                        .iter()
                        .find(|w| w.meta.name == "web-1")
                        .expect("web-1");
                    assert_eq!(web_1.pods.len(), 3);
                    // Their labels are the same, so they are held once.
                    let shared = &web_1.pods[0].labels;
                    assert!(web_1.pods.iter().all(|p| Arc::ptr_eq(&p.labels, shared)));
                    web_1.template.spec.containers[0].image.clone()
                })
                .collect();
            let (first, last) = if with_controller {
                ("rs", "rs")
            } else {
                ("first", "third")
            };
            assert_eq!(images, [Some(first.into()), Some(last.into())]);
        }
    }
}
