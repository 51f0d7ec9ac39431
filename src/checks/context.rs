//! Derived views the checks share, computed once per run, or kept between runs by an
//! incremental analysis ([`Index`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use crate::api::k8s::Container;
use crate::checks::CheckRequest;
use crate::istio::hosts;
use crate::istio::mesh::ProxyConfig;
use crate::istio::mtls::{self, MtlsPolicies, PoliciesByNamespace};
use crate::istio::protocol::Protocol;
use crate::istio::sidecar;
use crate::snapshot::{
    Injection, Labels, ServiceInfo, Snapshot, TargetPort, VirtualServiceInfo, Workload,
};

/// The snapshot, the request, and what every family needs to know about workloads.
pub struct Context<'a> {
    pub snapshot: &'a Snapshot,
    pub request: &'a CheckRequest,
    pub mtls: MtlsPolicies<'a>,
    index: Cow<'a, Index>,
}

/// Positions into one of the snapshot's lists, by a key.
type Positions<K> = HashMap<K, Vec<usize>>;

fn push<K: std::hash::Hash + Eq>(map: &mut Positions<K>, key: K, position: usize) {
    map.entry(key).or_default().push(position);
}

/// Lookups that spare the checks scans of the whole cluster: objects by namespace and by host,
/// who runs without a sidecar, and which protocol each Service port number is declared with.
/// Built in one pass over a snapshot; positions are into the snapshot's lists, in their order.
#[derive(Clone, Debug, Default)]
pub struct Index {
    /// Per workload (same position as `snapshot.workloads`): has or will get a sidecar.
    pub(crate) meshed: Vec<bool>,
    pub(crate) workloads: Positions<String>,
    pub(crate) services: Positions<String>,
    /// Services by fully qualified host name.
    pub(crate) services_by_host: Positions<String>,
    /// PeerAuthentications by namespace, oldest first.
    pub(crate) peer_authentications: PoliciesByNamespace,
    pub(crate) destination_rules: Positions<String>,
    pub(crate) virtual_services: Positions<String>,
    /// DestinationRules by resolved host (wildcards as written, e.g. `*.shop.svc.cluster.local`).
    pub(crate) destination_rules_by_host: Positions<String>,
    pub(crate) wildcard_destination_rules: Vec<usize>,
    /// Mesh-bound VirtualServices by each resolved host.
    pub(crate) virtual_services_by_host: Positions<String>,
    pub(crate) wildcard_virtual_services: Vec<usize>,
    /// Workloads outside the mesh that stand for plaintext pods (MR301's callers), by namespace,
    /// system namespaces left out.
    pub(crate) plaintext: BTreeMap<String, Vec<usize>>,
    /// Declared protocols of non-UDP Service ports outside system namespaces, by port number
    /// (MR204): (service position, protocol).
    pub(crate) ports: BTreeMap<i32, Vec<(usize, Protocol)>>,
}

fn is_wildcard(pattern: &str) -> bool {
    pattern.starts_with('*')
}

impl Index {
    /// Positions of `list` grouped by namespace, in list order within each.
    fn ranges<T>(list: &[T], namespace: impl Fn(&T) -> &String) -> BTreeMap<&str, Vec<usize>> {
        let mut out: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, item) in list.iter().enumerate() {
            out.entry(namespace(item).as_str()).or_default().push(i);
        }
        out
    }

    pub fn new(snapshot: &Snapshot) -> Index {
        let mut index = Index {
            meshed: snapshot
                .workloads
                .iter()
                .map(|w| workload_meshed(snapshot, w))
                .collect(),
            peer_authentications: mtls::by_namespace(&snapshot.peer_authentications),
            ..Index::default()
        };
        for (i, w) in snapshot.workloads.iter().enumerate() {
            push(&mut index.workloads, w.meta.namespace.clone(), i);
        }
        for (i, svc) in snapshot.services.iter().enumerate() {
            push(&mut index.services, svc.meta.namespace.clone(), i);
            push(&mut index.services_by_host, svc.fqdn(), i);
        }
        for (i, dr) in snapshot.destination_rules.iter().enumerate() {
            push(&mut index.destination_rules, dr.meta.namespace.clone(), i);
            let host = hosts::resolve(&dr.spec.host, &dr.meta.namespace);
            if is_wildcard(&host) {
                index.wildcard_destination_rules.push(i);
            }
            push(&mut index.destination_rules_by_host, host, i);
        }
        for (i, vs) in snapshot.virtual_services.iter().enumerate() {
            push(&mut index.virtual_services, vs.meta.namespace.clone(), i);
            if !super::is_mesh_bound(vs) {
                continue;
            }
            let mut resolved: Vec<String> = vs
                .spec
                .hosts
                .iter()
                .map(|h| hosts::resolve(h, &vs.meta.namespace))
                .collect();
            resolved.sort();
            resolved.dedup();
            if resolved.iter().any(|h| is_wildcard(h)) {
                index.wildcard_virtual_services.push(i);
            }
            for host in resolved {
                push(&mut index.virtual_services_by_host, host, i);
            }
        }
        index.plaintext = plaintext_callers(snapshot, &index.meshed);
        index.ports = declared_ports(snapshot);
        index
    }
}

/// Running pods show the truth; without any, the template predicts it.
pub(crate) fn workload_meshed(snapshot: &Snapshot, w: &Workload) -> bool {
    let injection = snapshot
        .namespace(&w.meta.namespace)
        .map_or(Injection::Unlabelled, |n| n.injection);
    if w.live_pods().next().is_some() {
        w.live_pods().any(|p| p.has_proxy)
    } else {
        sidecar::will_inject(injection, &w.template)
    }
}

/// How many plaintext pods a workload stands for: its live pods without a proxy, or (no pods,
/// as in manifests) one for its template.
pub fn plaintext_count(w: &Workload) -> usize {
    match w.live_pods().count() {
        0 => 1,
        _ => w.live_pods().filter(|p| !p.has_proxy).count(),
    }
}

fn plaintext_callers(snapshot: &Snapshot, meshed: &[bool]) -> BTreeMap<String, Vec<usize>> {
    let mut out: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (ns, positions) in Index::ranges(&snapshot.workloads, |w| &w.meta.namespace) {
        if let Some(list) = plaintext_callers_in(snapshot, meshed, positions) {
            out.insert(ns.to_string(), list);
        }
    }
    out
}

/// MR301's callers among the workloads at `positions` (all of one namespace), if any.
pub(crate) fn plaintext_callers_in(
    snapshot: &Snapshot,
    meshed: &[bool],
    positions: impl IntoIterator<Item = usize>,
) -> Option<Vec<usize>> {
    let list: Vec<usize> = positions
        .into_iter()
        .filter(|i| {
            let w = &snapshot.workloads[*i];
            let ns = &w.meta.namespace;
            let in_mesh = meshed[*i]
                || snapshot.namespace(ns).map(|n| n.injection) == Some(Injection::Ambient);
            !in_mesh && !snapshot.is_system_namespace(ns) && plaintext_count(w) > 0
        })
        .collect();
    (!list.is_empty()).then_some(list)
}

fn declared_ports(snapshot: &Snapshot) -> BTreeMap<i32, Vec<(usize, Protocol)>> {
    let mut out = declared_ports_of(snapshot, 0..snapshot.services.len());
    for uses in out.values_mut() {
        uses.sort_by(|a, b| port_use_order(snapshot, *a, *b));
    }
    out
}

/// The declared non-UDP port protocols of the Services at `positions`, outside system
/// namespaces, by port number, in position order.
pub(crate) fn declared_ports_of(
    snapshot: &Snapshot,
    positions: impl IntoIterator<Item = usize>,
) -> BTreeMap<i32, Vec<(usize, Protocol)>> {
    let mut out: BTreeMap<i32, Vec<(usize, Protocol)>> = BTreeMap::new();
    for i in positions {
        let svc = &snapshot.services[i];
        if snapshot.is_system_namespace(&svc.meta.namespace) {
            continue;
        }
        for port in svc
            .ports
            .iter()
            .filter(|p| !p.transport.eq_ignore_ascii_case("UDP"))
        {
            if let Some(p) = super::protocols::declared(port).protocol() {
                out.entry(port.port).or_default().push((i, p));
            }
        }
    }
    out
}

/// The order MR204 lists a port's uses in: that of `Service <namespace>/<name>: <protocol>`
/// as text, compared without being formatted.
pub(crate) fn port_use_order(
    snapshot: &Snapshot,
    (a, pa): (usize, Protocol),
    (b, pb): (usize, Protocol),
) -> std::cmp::Ordering {
    let text = |i: usize, p: Protocol| {
        let meta = &snapshot.services[i].meta;
        meta.namespace
            .bytes()
            .chain(*b"/")
            .chain(meta.name.bytes())
            .chain(*b": ")
            .chain(p.as_str().bytes())
    };
    text(a, pa).cmp(text(b, pb))
}

/// A Service port resolved to the container port it reaches in one workload.
#[derive(Debug, Clone, Copy)]
pub struct ResolvedPort<'a> {
    pub container: &'a Container,
    pub number: i32,
    pub name: Option<&'a str>,
}

fn selector_matches(selector: &Labels, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl<'a> Context<'a> {
    pub fn new(snapshot: &'a Snapshot, request: &'a CheckRequest) -> Self {
        let index = Index::new(snapshot);
        Self {
            snapshot,
            request,
            mtls: MtlsPolicies::new(
                &snapshot.peer_authentications,
                &snapshot.mesh.root_namespace,
            ),
            index: Cow::Owned(index),
        }
    }

    /// With an index kept from an earlier run ([`Index::new`] of this very snapshot): costs
    /// nothing to set up, so a run on one namespace reads only what concerns it.
    pub fn indexed(snapshot: &'a Snapshot, index: &'a Index, request: &'a CheckRequest) -> Self {
        Self {
            snapshot,
            request,
            mtls: MtlsPolicies::indexed(
                &snapshot.peer_authentications,
                &snapshot.mesh.root_namespace,
                &index.peer_authentications,
            ),
            index: Cow::Borrowed(index),
        }
    }

    pub(crate) fn index(&self) -> &Index {
        &self.index
    }

    /// Positions of a namespace's objects in one of the index's maps.
    fn positions<'m>(map: &'m Positions<String>, namespace: &str) -> &'m [usize] {
        map.get(namespace).map_or(&[], Vec::as_slice)
    }

    /// The checked namespaces, in order.
    fn checked_namespaces(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.request
            .namespaces
            .iter()
            .map(String::as_str)
            .filter(|ns| !self.snapshot.is_system_namespace(ns))
    }

    /// Whether this run reports on `namespace`.
    pub fn checked(&self, namespace: &str) -> bool {
        self.request.namespaces.contains(namespace) && !self.snapshot.is_system_namespace(namespace)
    }

    pub fn injection(&self, namespace: &str) -> Injection {
        self.snapshot
            .namespace(namespace)
            .map_or(Injection::Unlabelled, |n| n.injection)
    }

    /// Workloads in checked namespaces, with their index.
    pub fn workloads(&self) -> impl Iterator<Item = (usize, &'a Workload)> + '_ {
        let workloads = &self.snapshot.workloads;
        self.checked_namespaces()
            .flat_map(|ns| Self::positions(&self.index.workloads, ns))
            .map(move |i| (*i, &workloads[*i]))
    }

    /// Workloads in `namespace`, checked or not, with their index.
    pub fn workloads_in(&self, namespace: &str) -> impl Iterator<Item = (usize, &'a Workload)> {
        let workloads = &self.snapshot.workloads;
        Self::positions(&self.index.workloads, namespace)
            .iter()
            .map(move |i| (*i, &workloads[*i]))
    }

    /// Services in `namespace`, checked or not.
    pub fn services_in(&self, namespace: &str) -> impl Iterator<Item = &'a ServiceInfo> {
        let services = &self.snapshot.services;
        Self::positions(&self.index.services, namespace)
            .iter()
            .map(move |i| &services[*i])
    }

    /// DestinationRules in checked namespaces.
    pub fn destination_rules(
        &self,
    ) -> impl Iterator<Item = &'a crate::snapshot::DestinationRuleInfo> + '_ {
        let all = &self.snapshot.destination_rules;
        self.checked_namespaces()
            .flat_map(|ns| Self::positions(&self.index.destination_rules, ns))
            .map(move |i| &all[*i])
    }

    /// VirtualServices in checked namespaces.
    pub fn virtual_services(&self) -> impl Iterator<Item = &'a VirtualServiceInfo> + '_ {
        let all = &self.snapshot.virtual_services;
        self.checked_namespaces()
            .flat_map(|ns| Self::positions(&self.index.virtual_services, ns))
            .map(move |i| &all[*i])
    }

    /// PeerAuthentications in `namespace`, oldest first.
    pub fn peer_authentications_in(
        &self,
        namespace: &str,
    ) -> impl Iterator<Item = &'a crate::snapshot::PeerAuthenticationInfo> {
        let all = &self.snapshot.peer_authentications;
        Self::positions(&self.index.peer_authentications, namespace)
            .iter()
            .map(move |i| &all[*i])
    }

    /// Services in checked namespaces, except those Istio manages itself (waypoints, gateways).
    pub fn services(&self) -> impl Iterator<Item = &'a ServiceInfo> + '_ {
        let services = &self.snapshot.services;
        self.checked_namespaces()
            .flat_map(|ns| Self::positions(&self.index.services, ns))
            .map(move |i| &services[*i])
            .filter(|s| {
                !s.meta
                    .labels
                    .contains_key(crate::api::keys::GATEWAY_MANAGED)
            })
    }

    /// Has or will get a sidecar. For the pre-flight question, templates in namespaces that are
    /// not injected at all count as meshed unless they opt out.
    pub fn meshed(&self, index: usize) -> bool {
        self.index.meshed[index]
    }

    /// Will be meshed once its namespace is: its pods have a proxy, or its template will get one
    /// in an injected namespace, or (not injected yet) does not opt out.
    pub fn meshed_or_prospective(&self, index: usize) -> bool {
        let w = &self.snapshot.workloads[index];
        self.index.meshed[index]
            || match self.injection(&w.meta.namespace) {
                Injection::Enabled => false,
                Injection::Ambient => false,
                Injection::Disabled | Injection::Unlabelled => {
                    sidecar::will_inject(Injection::Enabled, &w.template)
                }
            }
    }

    /// The pod-template checks' question: its pods have a proxy, or its template gets one when
    /// pods are next created in a meshed namespace. Unlike [`Self::meshed_or_prospective`], pods
    /// running without a proxy in an injected namespace (created before the label, which MR102
    /// reports, or a bare Pod manifest offline) still count: their next rollout injects them.
    /// Opted-out and `hostNetwork` templates never count.
    /// Ambient namespaces are meshed without sidecars, so their templates are not asked.
    pub fn template_meshed(&self, index: usize) -> bool {
        let w = &self.snapshot.workloads[index];
        self.index.meshed[index]
            || (self.injection(&w.meta.namespace) != Injection::Ambient
                && sidecar::will_inject(Injection::Enabled, &w.template))
    }

    /// Speaks Istio mTLS: through its sidecar, or through ztunnel in an ambient namespace.
    pub fn in_mesh(&self, index: usize) -> bool {
        let w = &self.snapshot.workloads[index];
        self.index.meshed[index] || self.injection(&w.meta.namespace) == Injection::Ambient
    }

    /// Workloads (anywhere) a Service selects, with their index.
    pub fn selected_by(&self, service: &ServiceInfo) -> Vec<(usize, &'a Workload)> {
        let Some(selector) = &service.selector else {
            return Vec::new();
        };
        self.workloads_in(&service.meta.namespace)
            .filter(|(_, w)| {
                selector_matches(selector, &w.template.labels)
                    || w.pods.iter().any(|p| selector_matches(selector, &p.labels))
            })
            .collect()
    }

    /// Services in the workload's namespace that select it.
    pub fn services_selecting(&self, workload: &Workload) -> Vec<&'a ServiceInfo> {
        self.services_in(&workload.meta.namespace)
            .filter(|s| {
                s.selector.as_ref().is_some_and(|sel| {
                    selector_matches(sel, &workload.template.labels)
                        || workload
                            .pods
                            .iter()
                            .any(|p| selector_matches(sel, &p.labels))
                })
            })
            .collect()
    }

    /// The container port a Service target port reaches in a workload, if any declares it.
    /// A numeric target port that no container declares is still reachable, so it resolves with
    /// the first app container when `lenient` is set.
    pub fn resolve_target(
        &self,
        workload: &'a Workload,
        target: &TargetPort,
    ) -> Option<ResolvedPort<'a>> {
        app_containers(workload).find_map(|c| {
            c.ports.iter().flatten().find_map(|p| {
                let hit = match target {
                    TargetPort::Number(n) => p.container_port == *n,
                    TargetPort::Name(name) => p.name.as_deref() == Some(name.as_str()),
                };
                hit.then_some(ResolvedPort {
                    container: c,
                    number: p.container_port,
                    name: p.name.as_deref(),
                })
            })
        })
    }

    pub fn probes_rewritten(&self, workload: &Workload) -> bool {
        sidecar::probes_rewritten(&workload.template, &self.snapshot.injector)
    }

    pub fn native_sidecars(&self, workload: &Workload) -> bool {
        sidecar::native_sidecars(
            &workload.template,
            &workload.pods,
            self.snapshot.native_sidecars,
        )
    }

    pub fn proxy_config(&self, workload: &Workload) -> ProxyConfig {
        sidecar::proxy_config(
            &workload.template,
            &self.snapshot.mesh,
            &self.snapshot.injector,
        )
    }
}

/// The workload's own containers, without an injected `istio-proxy`.
pub fn app_containers(workload: &Workload) -> impl Iterator<Item = &Container> {
    workload
        .template
        .spec
        .containers
        .iter()
        .filter(|c| c.name != crate::api::keys::PROXY_CONTAINER)
}

/// Describes the pods of a workload for messages: `3 pods` / `1 pod`.
pub fn pods_phrase(count: usize) -> String {
    if count == 1 {
        "1 pod".to_string()
    } else {
        format!("{count} pods")
    }
}

impl<'a> Context<'a> {
    /// Services a host (as written in an Istio object in `namespace`) refers to.
    pub fn services_for_host(&self, host: &str, namespace: &str) -> Vec<&'a ServiceInfo> {
        let pattern = hosts::resolve(host, namespace);
        if !is_wildcard(&pattern) {
            let services = &self.snapshot.services;
            return Self::positions(&self.index.services_by_host, &pattern)
                .iter()
                .map(|i| &services[*i])
                .collect();
        }
        self.snapshot
            .services
            .iter()
            .filter(|s| hosts::matches(&pattern, &s.fqdn()))
            .collect()
    }

    /// DestinationRules (anywhere) whose host covers the fully qualified `fqdn`, in snapshot
    /// order.
    pub fn destination_rules_for(
        &self,
        fqdn: &str,
    ) -> Vec<&'a crate::snapshot::DestinationRuleInfo> {
        let all = &self.snapshot.destination_rules;
        let mut positions: Vec<usize> = if is_wildcard(fqdn) {
            Vec::new()
        } else {
            Self::positions(&self.index.destination_rules_by_host, fqdn).to_vec()
        };
        positions.extend(self.index.wildcard_destination_rules.iter().filter(|i| {
            hosts::matches(
                &hosts::resolve(&all[**i].spec.host, &all[**i].meta.namespace),
                fqdn,
            )
        }));
        positions.sort_unstable();
        positions.dedup();
        positions.into_iter().map(|i| &all[i]).collect()
    }

    /// Mesh-bound VirtualServices (anywhere) whose hosts include the fully qualified `fqdn`, in
    /// snapshot order.
    pub fn virtual_services_for_host(&self, fqdn: &str) -> Vec<&'a VirtualServiceInfo> {
        let all = &self.snapshot.virtual_services;
        let mut positions: Vec<usize> =
            Self::positions(&self.index.virtual_services_by_host, fqdn).to_vec();
        positions.extend(
            self.index
                .wildcard_virtual_services
                .iter()
                .filter(|i| {
                    let vs = &all[**i];
                    vs.spec
                        .hosts
                        .iter()
                        .any(|h| hosts::matches(&hosts::resolve(h, &vs.meta.namespace), fqdn))
                })
                .copied(),
        );
        positions.sort_unstable();
        positions.dedup();
        positions.into_iter().map(|i| &all[i]).collect()
    }
}
