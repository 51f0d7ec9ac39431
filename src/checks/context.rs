//! What every check reads: the snapshot, the request, and the [`Index`] over the snapshot
//! (built for one run, or kept between runs by an incremental analysis).

use std::borrow::Cow;
use std::ops::Range;

use crate::api::k8s::Container;
use crate::checks::CheckRequest;
use crate::istio::hosts;
use crate::istio::mesh::ProxyConfig;
use crate::istio::mtls::MtlsPolicies;
use crate::istio::sidecar;
use crate::snapshot::{Injection, ServiceInfo, Snapshot, TargetPort, VirtualServiceInfo, Workload};

use super::index::{Index, Positions, Ranges, is_wildcard, selects};

/// Where `item` sits in `list`, when it is one of the list's own elements (not a copy). The
/// checks hand on references into the snapshot's lists, so the address says which one it is,
/// and the index's per-position facts apply without a search.
fn position_in<T>(list: &[T], item: &T) -> Option<usize> {
    let size = std::mem::size_of::<T>().max(1);
    let offset = (item as *const T as usize).checked_sub(list.as_ptr() as usize)?;
    let at = offset / size;
    (at < list.len() && std::ptr::eq(&list[at], item)).then_some(at)
}

/// The snapshot, the request, and what every family needs to know about workloads.
pub struct Context<'a> {
    pub snapshot: &'a Snapshot,
    pub request: &'a CheckRequest,
    pub mtls: MtlsPolicies<'a>,
    index: Cow<'a, Index>,
}

/// A Service port resolved to the container port it reaches in one workload.
#[derive(Debug, Clone, Copy)]
pub struct ResolvedPort<'a> {
    pub container: &'a Container,
    pub number: i32,
    pub name: Option<&'a str>,
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

    /// Where a namespace's objects sit in one of the snapshot's lists.
    fn range(ranges: &Ranges, namespace: &str) -> Range<usize> {
        ranges.get(namespace).cloned().unwrap_or_default()
    }

    /// Positions filed under a key (a host, or a namespace for PeerAuthentications).
    fn positions<'m>(map: &'m Positions<String>, host: &str) -> &'m [usize] {
        map.get(host).map_or(&[], Vec::as_slice)
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

    /// Workloads in checked namespaces, with their index.
    pub fn workloads(&self) -> impl Iterator<Item = (usize, &'a Workload)> + '_ {
        let workloads = &self.snapshot.workloads;
        self.checked_namespaces()
            .flat_map(|ns| Self::range(&self.index.workloads, ns))
            .map(move |i| (i, &workloads[i]))
    }

    /// Workloads in `namespace`, checked or not, with their index.
    pub fn workloads_in(&self, namespace: &str) -> impl Iterator<Item = (usize, &'a Workload)> {
        let workloads = &self.snapshot.workloads;
        Self::range(&self.index.workloads, namespace).map(move |i| (i, &workloads[i]))
    }

    /// Services in `namespace`, checked or not.
    pub fn services_in(&self, namespace: &str) -> impl Iterator<Item = &'a ServiceInfo> {
        self.snapshot.services[Self::range(&self.index.services, namespace)].iter()
    }

    /// DestinationRules in checked namespaces.
    pub fn destination_rules(
        &self,
    ) -> impl Iterator<Item = &'a crate::snapshot::DestinationRuleInfo> + '_ {
        let all = &self.snapshot.destination_rules;
        self.checked_namespaces()
            .flat_map(|ns| &all[Self::range(&self.index.destination_rules, ns)])
    }

    /// VirtualServices in checked namespaces.
    pub fn virtual_services(&self) -> impl Iterator<Item = &'a VirtualServiceInfo> + '_ {
        let all = &self.snapshot.virtual_services;
        self.checked_namespaces()
            .flat_map(|ns| &all[Self::range(&self.index.virtual_services, ns)])
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
            .flat_map(|ns| Self::range(&self.index.services, ns))
            .filter(|i| !self.index.istio_managed[*i])
            .map(move |i| &services[i])
    }

    /// How the namespace of the workload at `index` stands towards injection.
    pub fn workload_injection(&self, index: usize) -> Injection {
        self.index.workload_facts[index].injection
    }

    /// Has or will get a sidecar. For the pre-flight question, templates in namespaces that are
    /// not injected at all count as meshed unless they opt out.
    pub fn meshed(&self, index: usize) -> bool {
        self.index.workload_facts[index].meshed
    }

    /// Will be meshed once its namespace is: its pods have a proxy, or its template will get one
    /// in an injected namespace, or (not injected yet) does not opt out.
    pub fn meshed_or_prospective(&self, index: usize) -> bool {
        self.index.workload_facts[index].prospective
    }

    /// The pod-template checks' question: its pods have a proxy, or its template gets one when
    /// pods are next created in a meshed namespace. Unlike [`Self::meshed_or_prospective`], pods
    /// running without a proxy in an injected namespace (created before the label, which MR102
    /// reports, or a bare Pod manifest offline) still count: their next rollout injects them.
    /// Opted-out and `hostNetwork` templates never count.
    /// Ambient namespaces are meshed without sidecars, so their templates are not asked.
    pub fn template_meshed(&self, index: usize) -> bool {
        self.index.workload_facts[index].template_meshed
    }

    /// Speaks Istio mTLS: through its sidecar, or through ztunnel in an ambient namespace.
    pub fn in_mesh(&self, index: usize) -> bool {
        self.index.workload_facts[index].in_mesh()
    }

    /// Workloads (of its namespace) a Service selects, with their index.
    pub fn selected_by(&self, service: &ServiceInfo) -> Vec<(usize, &'a Workload)> {
        let workloads = &self.snapshot.workloads;
        match position_in(&self.snapshot.services, service) {
            Some(s) => self.index.selected[s]
                .iter()
                .map(|i| (*i, &workloads[*i]))
                .collect(),
            // Not one of the snapshot's own: match it here.
            None => {
                let Some(selector) = &service.selector else {
                    return Vec::new();
                };
                self.workloads_in(&service.meta.namespace)
                    .filter(|(_, w)| selects(selector, w))
                    .collect()
            }
        }
    }

    /// Services in the workload's namespace that select it.
    pub fn services_selecting(&self, workload: &Workload) -> Vec<&'a ServiceInfo> {
        let services = &self.snapshot.services;
        match position_in(&self.snapshot.workloads, workload) {
            Some(w) => self.index.selecting[w]
                .iter()
                .map(|i| &services[*i])
                .collect(),
            // Not one of the snapshot's own: match it here.
            None => self
                .services_in(&workload.meta.namespace)
                .filter(|s| {
                    s.selector
                        .as_ref()
                        .is_some_and(|sel| selects(sel, workload))
                })
                .collect(),
        }
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
        positions.extend(
            self.index
                .wildcard_destination_rules
                .iter()
                .filter(|(_, host)| hosts::matches(host, fqdn))
                .map(|(i, _)| *i),
        );
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
                .filter(|(_, hosts)| hosts.iter().any(|h| hosts::matches(h, fqdn)))
                .map(|(i, _)| *i),
        );
        positions.sort_unstable();
        positions.dedup();
        positions.into_iter().map(|i| &all[i]).collect()
    }
}
