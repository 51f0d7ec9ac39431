//! Derived views the checks share, computed once per run.

use std::collections::BTreeMap;

use crate::api::k8s::Container;
use crate::checks::CheckRequest;
use crate::istio::mesh::ProxyConfig;
use crate::istio::mtls::MtlsPolicies;
use crate::istio::sidecar;
use crate::snapshot::{Injection, Labels, ServiceInfo, Snapshot, TargetPort, Workload};

/// The snapshot, the request, and what every family needs to know about workloads.
pub struct Context<'a> {
    pub snapshot: &'a Snapshot,
    pub request: &'a CheckRequest,
    pub mtls: MtlsPolicies<'a>,
    /// Per workload (same index as `snapshot.workloads`): has or will get a sidecar.
    meshed: Vec<bool>,
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
        let meshed = snapshot
            .workloads
            .iter()
            .map(|w| {
                let injection = snapshot
                    .namespace(&w.meta.namespace)
                    .map_or(Injection::Unlabelled, |n| n.injection);
                // Running pods show the truth; without any, the template predicts it.
                if w.live_pods().next().is_some() {
                    w.live_pods().any(|p| p.has_proxy)
                } else {
                    sidecar::will_inject(injection, &w.template)
                }
            })
            .collect();
        Self {
            snapshot,
            request,
            mtls: MtlsPolicies::new(
                &snapshot.peer_authentications,
                &snapshot.mesh.root_namespace,
            ),
            meshed,
        }
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
        self.snapshot
            .workloads
            .iter()
            .enumerate()
            .filter(|(_, w)| self.checked(&w.meta.namespace))
    }

    /// Services in checked namespaces, except those Istio manages itself (waypoints, gateways).
    pub fn services(&self) -> impl Iterator<Item = &'a ServiceInfo> + '_ {
        self.snapshot
            .services
            .iter()
            .filter(|s| self.checked(&s.meta.namespace))
            .filter(|s| {
                !s.meta
                    .labels
                    .contains_key(crate::api::keys::GATEWAY_MANAGED)
            })
    }

    /// Has or will get a sidecar. For the pre-flight question, templates in namespaces that are
    /// not injected at all count as meshed unless they opt out.
    pub fn meshed(&self, index: usize) -> bool {
        self.meshed[index]
    }

    /// Will be meshed once its namespace is: its pods have a proxy, or its template will get one
    /// in an injected namespace, or (not injected yet) does not opt out.
    pub fn meshed_or_prospective(&self, index: usize) -> bool {
        let w = &self.snapshot.workloads[index];
        self.meshed[index]
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
        self.meshed[index]
            || (self.injection(&w.meta.namespace) != Injection::Ambient
                && sidecar::will_inject(Injection::Enabled, &w.template))
    }

    /// Speaks Istio mTLS: through its sidecar, or through ztunnel in an ambient namespace.
    pub fn in_mesh(&self, index: usize) -> bool {
        let w = &self.snapshot.workloads[index];
        self.meshed[index] || self.injection(&w.meta.namespace) == Injection::Ambient
    }

    /// Workloads (anywhere) a Service selects, with their index.
    pub fn selected_by(&self, service: &ServiceInfo) -> Vec<(usize, &'a Workload)> {
        let Some(selector) = &service.selector else {
            return Vec::new();
        };
        self.snapshot
            .workloads
            .iter()
            .enumerate()
            .filter(|(_, w)| w.meta.namespace == service.meta.namespace)
            .filter(|(_, w)| {
                selector_matches(selector, &w.template.labels)
                    || w.pods.iter().any(|p| selector_matches(selector, &p.labels))
            })
            .collect()
    }

    /// Services in the workload's namespace that select it.
    pub fn services_selecting(&self, workload: &Workload) -> Vec<&'a ServiceInfo> {
        self.snapshot
            .services
            .iter()
            .filter(|s| s.meta.namespace == workload.meta.namespace)
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

    /// Workloads grouped by namespace (all namespaces, checked or not).
    pub fn workloads_by_namespace(&self) -> BTreeMap<&'a str, Vec<(usize, &'a Workload)>> {
        let mut map: BTreeMap<&str, Vec<_>> = BTreeMap::new();
        for (i, w) in self.snapshot.workloads.iter().enumerate() {
            map.entry(w.meta.namespace.as_str())
                .or_default()
                .push((i, w));
        }
        map
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
        let pattern = crate::istio::hosts::resolve(host, namespace);
        self.snapshot
            .services
            .iter()
            .filter(|s| crate::istio::hosts::matches(&pattern, &s.fqdn()))
            .collect()
    }
}
