//! The [`Index`]: lookups over a snapshot that spare the checks scans of the whole cluster,
//! built once per run or kept between runs by an incremental analysis.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use crate::istio::hosts;
use crate::istio::mtls::{self, PoliciesByNamespace};
use crate::istio::protocol::Protocol;
use crate::istio::sidecar;
use crate::snapshot::{Injection, Labels, ServiceInfo, Snapshot, Workload};

/// The hash map of the index and the checks: keys are namespaces, hosts and small tuples, read
/// many times per run, where std's SipHash cost more than the lookups themselves.
pub(crate) type HashMap<K, V> = foldhash::HashMap<K, V>;
pub(crate) use foldhash::HashMapExt;

/// Positions into one of the snapshot's lists, by a key.
pub(crate) type Positions<K> = HashMap<K, Vec<usize>>;

/// Where each namespace's objects sit in one of the snapshot's lists. `Snapshot::build` sorts
/// every list by namespace (the workloads by namespace, kind and name), so a namespace's
/// objects are one contiguous range; [`super::Incremental`] splices by the same ranges.
pub(crate) type Ranges = HashMap<String, Range<usize>>;

fn push<K: std::hash::Hash + Eq>(map: &mut Positions<K>, key: K, position: usize) {
    map.entry(key).or_default().push(position);
}

/// Lookups that spare the checks scans of the whole cluster: objects by namespace and by host,
/// which Services select which workloads, who runs without a sidecar, and which protocol each
/// Service port number is declared with. Built in one pass over a snapshot; positions are into
/// the snapshot's lists, in their order.
#[derive(Clone, Debug, Default)]
pub struct Index {
    /// Per workload (same position as `snapshot.workloads`).
    pub(crate) workload_facts: Vec<WorkloadFacts>,
    /// Per Service: managed by Istio itself (a waypoint's or gateway's), so not checked.
    pub(crate) istio_managed: Vec<bool>,
    pub(crate) workloads: Ranges,
    pub(crate) services: Ranges,
    /// Per Service (same position as `snapshot.services`): the workloads its selector matches
    /// (the template's labels or any pod's), in position order.
    pub(crate) selected: Vec<Vec<usize>>,
    /// Per workload: the Services of its namespace that select it, in position order.
    pub(crate) selecting: Vec<Vec<usize>>,
    /// Services by fully qualified host name.
    pub(crate) services_by_host: Positions<String>,
    /// PeerAuthentications by namespace, oldest first.
    pub(crate) peer_authentications: PoliciesByNamespace,
    pub(crate) destination_rules: Ranges,
    pub(crate) virtual_services: Ranges,
    /// DestinationRules by resolved host (wildcards as written, e.g. `*.shop.svc.cluster.local`).
    pub(crate) destination_rules_by_host: Positions<String>,
    /// DestinationRules whose resolved host is a wildcard, with that host.
    pub(crate) wildcard_destination_rules: Vec<(usize, String)>,
    /// Mesh-bound VirtualServices by each resolved host.
    pub(crate) virtual_services_by_host: Positions<String>,
    /// Mesh-bound VirtualServices with a wildcard among their resolved hosts, with those hosts.
    pub(crate) wildcard_virtual_services: Vec<(usize, Vec<String>)>,
    /// The hosts filed in `destination_rules_by_host` or `virtual_services_by_host` that lie
    /// in a namespace's cluster domain, by namespace (see [`host_namespaces`]): which Istio
    /// objects name a namespace's hosts, without reading every host.
    pub(crate) hosts_by_namespace: HashMap<String, BTreeSet<String>>,
    /// Workloads outside the mesh that stand for plaintext pods (MR301's callers), by namespace,
    /// system namespaces left out.
    pub(crate) plaintext: BTreeMap<String, Vec<usize>>,
    /// The callers of `plaintext` in namespaces that are not injected (nor ambient): those a
    /// STRICT workload elsewhere hears from, each with its plaintext pod count. In position
    /// order, which is namespace order.
    pub(crate) plaintext_outside: Vec<(usize, usize)>,
    /// Declared protocols of non-UDP Service ports outside system namespaces, by port number
    /// (MR204): (service position, protocol).
    pub(crate) ports: BTreeMap<i32, Vec<(usize, Protocol)>>,
}

/// What most families ask of every workload, each time reading its namespace (a lookup among
/// thousands of names) or its template's labels and annotations: worked out once per index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WorkloadFacts {
    /// How its namespace stands towards injection.
    pub(crate) injection: Injection,
    /// Has or will get a sidecar: running pods show the truth; without any, the template
    /// predicts it.
    pub(crate) meshed: bool,
    /// [`super::Context::template_meshed`].
    pub(crate) template_meshed: bool,
    /// [`super::Context::meshed_or_prospective`].
    pub(crate) prospective: bool,
}

impl WorkloadFacts {
    /// Of a workload in a namespace that stands towards injection so.
    pub(crate) fn of(injection: Injection, w: &Workload) -> WorkloadFacts {
        // The template's labels and annotations are read once, however often asked.
        let ask = std::cell::OnceCell::new();
        let ask = || *ask.get_or_init(|| sidecar::InjectionAsk::of(&w.template));
        let meshed = if w.live_pods().next().is_some() {
            w.live_pods().any(|p| p.has_proxy)
        } else {
            ask().answer(injection)
        };
        // Whether the template gets a sidecar once its namespace is injected.
        let injectable = || ask().answer(Injection::Enabled);
        WorkloadFacts {
            injection,
            meshed,
            template_meshed: meshed || (injection != Injection::Ambient && injectable()),
            prospective: meshed
                || match injection {
                    Injection::Enabled | Injection::Ambient => false,
                    Injection::Disabled | Injection::Unlabelled => injectable(),
                },
        }
    }

    /// Speaks Istio mTLS: through its sidecar, or through ztunnel in an ambient namespace.
    pub(crate) fn in_mesh(&self) -> bool {
        self.meshed || self.injection == Injection::Ambient
    }
}

pub(crate) fn is_wildcard(pattern: &str) -> bool {
    pattern.starts_with('*')
}

/// The namespace ranges of a list sorted by namespace.
fn ranges<T>(list: &[T], namespace: impl Fn(&T) -> &str) -> Ranges {
    let mut out = Ranges::new();
    let mut start = 0;
    for end in 1..=list.len() {
        if end == list.len() || namespace(&list[end]) != namespace(&list[start]) {
            out.insert(namespace(&list[start]).to_string(), start..end);
            start = end;
        }
    }
    out
}

/// The namespaces whose cluster domain a host lies in: each `ns` for which the host ends with
/// `.<ns>.svc.cluster.local` (for a real host, `name.ns.svc.cluster.local`, just one).
pub(crate) fn host_namespaces(host: &str) -> impl Iterator<Item = &str> {
    let within = host
        .strip_suffix(hosts::CLUSTER_DOMAIN)
        .and_then(|h| h.strip_suffix(".svc."))
        .unwrap_or_default();
    within
        .match_indices('.')
        .map(move |(at, _)| &within[at + 1..])
}

/// A VirtualService's hosts resolved in its namespace, sorted and without repeats.
pub(crate) fn resolved_vs_hosts(vs: &crate::snapshot::VirtualServiceInfo) -> Vec<String> {
    let mut hosts: Vec<String> = vs
        .spec
        .hosts
        .iter()
        .map(|h| hosts::resolve(h, &vs.meta.namespace))
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

impl Index {
    pub fn new(snapshot: &Snapshot) -> Index {
        let workloads = ranges(&snapshot.workloads, |w| &w.meta.namespace);
        let mut workload_facts = Vec::with_capacity(snapshot.workloads.len());
        for (namespace, range) in in_position_order(&workloads) {
            workload_facts.extend(workload_facts_in(snapshot, namespace, range.clone()));
        }
        let services = ranges(&snapshot.services, |s| &s.meta.namespace);
        let plaintext = plaintext_callers(snapshot, &workload_facts, &workloads);
        let mut index = Index {
            plaintext_outside: plaintext
                .iter()
                .filter(|(ns, _)| calls_from_outside(snapshot, ns))
                .flat_map(|(_, list)| {
                    list.iter()
                        .map(|i| (*i, plaintext_count(&snapshot.workloads[*i])))
                })
                .collect(),
            plaintext,
            workload_facts,
            istio_managed: snapshot.services.iter().map(istio_managed).collect(),
            selected: vec![Vec::new(); snapshot.services.len()],
            selecting: vec![Vec::new(); snapshot.workloads.len()],
            peer_authentications: mtls::by_namespace(&snapshot.peer_authentications),
            destination_rules: ranges(&snapshot.destination_rules, |x| &x.meta.namespace),
            virtual_services: ranges(&snapshot.virtual_services, |x| &x.meta.namespace),
            ports: declared_ports(snapshot),
            ..Index::default()
        };
        for (ns, in_ns) in &services {
            if let Some(w) = workloads.get(ns) {
                index.select_in(snapshot, in_ns.clone(), w.clone());
            }
        }
        index.workloads = workloads;
        index.services = services;
        // Sized up front: growing these maps rehashed every host several times over.
        index.services_by_host = Positions::with_capacity(snapshot.services.len());
        index.destination_rules_by_host =
            Positions::with_capacity(snapshot.destination_rules.len());
        index.virtual_services_by_host = Positions::with_capacity(snapshot.virtual_services.len());
        for (i, svc) in snapshot.services.iter().enumerate() {
            push(&mut index.services_by_host, svc.fqdn(), i);
        }
        for (i, dr) in snapshot.destination_rules.iter().enumerate() {
            let host = hosts::resolve(&dr.spec.host, &dr.meta.namespace);
            if is_wildcard(&host) {
                index.wildcard_destination_rules.push((i, host.clone()));
            }
            push(&mut index.destination_rules_by_host, host, i);
        }
        for (i, vs) in snapshot.virtual_services.iter().enumerate() {
            if !super::is_mesh_bound(vs) {
                continue;
            }
            let resolved = resolved_vs_hosts(vs);
            if resolved.iter().any(|h| is_wildcard(h)) {
                index.wildcard_virtual_services.push((i, resolved.clone()));
            }
            for host in resolved {
                push(&mut index.virtual_services_by_host, host, i);
            }
        }
        let filed: Vec<String> = index
            .destination_rules_by_host
            .keys()
            .chain(index.virtual_services_by_host.keys())
            .cloned()
            .collect();
        index.refile_hosts(&filed);
        index
    }

    /// Brings `hosts_by_namespace` up to date for these hosts, after the by-host maps changed.
    pub(crate) fn refile_hosts(&mut self, hosts: &[String]) {
        for host in hosts {
            let filed = self.destination_rules_by_host.contains_key(host)
                || self.virtual_services_by_host.contains_key(host);
            for namespace in host_namespaces(host) {
                if filed {
                    self.hosts_by_namespace
                        .entry(namespace.to_string())
                        .or_default()
                        .insert(host.clone());
                } else if let Some(set) = self.hosts_by_namespace.get_mut(namespace) {
                    set.remove(host);
                    if set.is_empty() {
                        self.hosts_by_namespace.remove(namespace);
                    }
                }
            }
        }
    }

    /// Fills `selected` and `selecting` for the Services and workloads at these positions, all
    /// of one namespace (a Service selects only in its own).
    ///
    /// A selector reads only its own keys, so every label set (the template's and each pod's)
    /// is first cut down to the keys some Service of the namespace selects on, and each
    /// distinct cut is matched once: a workload's pods mostly agree on those keys, so a
    /// workload costs about one match per Service instead of one per pod.
    pub(crate) fn select_in(
        &mut self,
        snapshot: &Snapshot,
        services: Range<usize>,
        workloads: Range<usize>,
    ) {
        let selector_of = |s: usize| snapshot.services[s].selector.as_ref();
        let mut keys: Vec<&str> = services
            .clone()
            .filter_map(selector_of)
            .flat_map(|selector| selector.keys().map(String::as_str))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        // Each selector as (position in `keys`, value) pairs.
        let selectors: Vec<(usize, Vec<(usize, &str)>)> = services
            .clone()
            .filter_map(|s| {
                let pairs = selector_of(s)?
                    .iter()
                    .map(|(k, v)| Some((keys.binary_search(&k.as_str()).ok()?, v.as_str())))
                    .collect::<Option<Vec<_>>>()?;
                Some((s, pairs))
            })
            .collect();
        for s in services {
            self.selected[s].clear();
        }
        let stride = keys.len();
        fn cut<'s>(keys: &[&str], labels: &'s Labels, into: &mut Vec<Option<&'s str>>) {
            into.extend(keys.iter().map(|k| labels.get(*k).map(String::as_str)));
        }
        // The distinct cuts of one workload, `stride` entries each.
        let mut cuts: Vec<Option<&str>> = Vec::new();
        for w in workloads {
            let workload = &snapshot.workloads[w];
            cuts.clear();
            cut(&keys, &workload.template.labels, &mut cuts);
            let mut count = 1;
            let mut previous: Option<&std::sync::Arc<Labels>> = None;
            for pod in &workload.pods {
                // The same labels as the pod before (shared by the snapshot): the same cut.
                if previous.is_some_and(|p| std::sync::Arc::ptr_eq(p, &pod.labels)) {
                    continue;
                }
                previous = Some(&pod.labels);
                cut(&keys, &pod.labels, &mut cuts);
                let (kept, new) = cuts.split_at(count * stride);
                // Compared with the last few only: enough for a rollout's two ReplicaSets,
                // and never quadratic when every pod differs (a StatefulSet's pod names).
                let seen = (count.saturating_sub(4)..count)
                    .any(|c| &kept[c * stride..(c + 1) * stride] == new);
                if seen {
                    cuts.truncate(count * stride);
                } else {
                    count += 1;
                }
            }
            let mut selecting = Vec::new();
            for (s, pairs) in &selectors {
                let matches = (0..count).any(|c| {
                    let labels = &cuts[c * stride..(c + 1) * stride];
                    pairs.iter().all(|(at, value)| labels[*at] == Some(*value))
                });
                if matches {
                    self.selected[*s].push(w);
                    selecting.push(*s);
                }
            }
            self.selecting[w] = selecting;
        }
    }
}

pub(crate) fn selector_matches(selector: &Labels, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A Service selector selects a workload whose template or any of whose pods it matches: what
/// [`Index::select_in`] computes for the snapshot's own, matched directly.
pub(crate) fn selects(selector: &Labels, workload: &Workload) -> bool {
    selector_matches(selector, &workload.template.labels)
        || workload
            .pods
            .iter()
            .any(|p| selector_matches(selector, &p.labels))
}

/// The namespace ranges in position order.
fn in_position_order(ranges: &Ranges) -> Vec<(&str, &Range<usize>)> {
    let mut sorted: Vec<_> = ranges.iter().map(|(ns, r)| (ns.as_str(), r)).collect();
    sorted.sort_unstable_by_key(|(_, r)| r.start);
    sorted
}

/// [`WorkloadFacts`] of the workloads at `range`, all in `namespace`: the namespace is looked
/// up once for them all.
pub(crate) fn workload_facts_in(
    snapshot: &Snapshot,
    namespace: &str,
    range: Range<usize>,
) -> impl Iterator<Item = WorkloadFacts> {
    let injection = injection_of(snapshot, namespace);
    snapshot.workloads[range]
        .iter()
        .map(move |w| WorkloadFacts::of(injection, w))
}

/// How a namespace stands towards injection; unlabelled when the snapshot does not hold it.
pub(crate) fn injection_of(snapshot: &Snapshot, namespace: &str) -> Injection {
    snapshot
        .namespace(namespace)
        .map_or(Injection::Unlabelled, |n| n.injection)
}

/// Managed by Istio itself (a waypoint's or gateway's Service).
pub(crate) fn istio_managed(service: &ServiceInfo) -> bool {
    service
        .meta
        .labels
        .contains_key(crate::api::keys::GATEWAY_MANAGED)
}

/// How many plaintext pods a workload stands for: its live pods without a proxy, or (no pods,
/// as in manifests) one for its template.
pub fn plaintext_count(w: &Workload) -> usize {
    match w.live_pods().count() {
        0 => 1,
        _ => w.live_pods().filter(|p| !p.has_proxy).count(),
    }
}

fn plaintext_callers(
    snapshot: &Snapshot,
    facts: &[WorkloadFacts],
    workloads: &Ranges,
) -> BTreeMap<String, Vec<usize>> {
    let mut out: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (ns, positions) in workloads {
        if let Some(list) = plaintext_callers_in(snapshot, facts, positions.clone()) {
            out.insert(ns.clone(), list);
        }
    }
    out
}

/// Whether a namespace's plaintext callers count for STRICT workloads of other namespaces
/// (MR301's Warning): it is not injected, so they will stay outside the mesh.
pub(crate) fn calls_from_outside(snapshot: &Snapshot, namespace: &str) -> bool {
    !matches!(
        injection_of(snapshot, namespace),
        Injection::Enabled | Injection::Ambient
    )
}

/// MR301's callers among the workloads at `positions` (all of one namespace), if any.
pub(crate) fn plaintext_callers_in(
    snapshot: &Snapshot,
    facts: &[WorkloadFacts],
    positions: impl IntoIterator<Item = usize>,
) -> Option<Vec<usize>> {
    let list: Vec<usize> = positions
        .into_iter()
        .filter(|i| {
            let w = &snapshot.workloads[*i];
            !facts[*i].in_mesh()
                && !snapshot.is_system_namespace(&w.meta.namespace)
                && plaintext_count(w) > 0
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
            if let Some(p) = port.declared.protocol() {
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
    let (ma, mb) = (&snapshot.services[a].meta, &snapshot.services[b].meta);
    // Where two texts first differ inside a part both have in full, that part decides; the
    // whole texts are compared only when one part is a prefix of the other's.
    let decided = |x: &str, y: &str| (!x.starts_with(y) && !y.starts_with(x)).then(|| x.cmp(y));
    if ma.namespace == mb.namespace {
        if ma.name == mb.name {
            return pa.as_str().cmp(pb.as_str());
        }
        if let Some(order) = decided(&ma.name, &mb.name) {
            return order;
        }
    } else if let Some(order) = decided(&ma.namespace, &mb.namespace) {
        return order;
    }
    fn text(meta: &crate::snapshot::Meta, p: Protocol) -> impl Iterator<Item = u8> + '_ {
        meta.namespace
            .bytes()
            .chain(*b"/")
            .chain(meta.name.bytes())
            .chain(*b": ")
            .chain(p.as_str().bytes())
    }
    text(ma, pa).cmp(text(mb, pb))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Meta, ServiceInfo};

    #[test]
    fn port_use_order_is_that_of_the_listed_text() {
        let names = [
            ("a", "web"),
            ("a", "web-2"),
            ("a", "we"),
            ("a-b", "web"),
            ("a.b", "x"),
            ("ab", "web"),
            ("a", "web"),
            ("b", "a"),
        ];
        let snapshot = Snapshot {
            services: names
                .iter()
                .map(|(namespace, name)| ServiceInfo {
                    meta: Meta {
                        namespace: namespace.to_string(),
                        name: name.to_string(),
                        ..Meta::default()
                    },
                    selector: None,
                    type_: "ClusterIP".to_string(),
                    ports: Vec::new(),
                })
                .collect(),
            ..Snapshot::default()
        };
        let protocols = [Protocol::Http, Protocol::Http2, Protocol::Tcp];
        let uses: Vec<(usize, Protocol)> = (0..names.len())
            .flat_map(|i| protocols.iter().map(move |p| (i, *p)))
            .collect();
        let text = |(i, p): (usize, Protocol)| {
            let meta = &snapshot.services[i].meta;
            format!("{}/{}: {p}", meta.namespace, meta.name)
        };
        for a in &uses {
            for b in &uses {
                assert_eq!(
                    port_use_order(&snapshot, *a, *b),
                    text(*a).cmp(&text(*b)),
                    "{} vs {}",
                    text(*a),
                    text(*b)
                );
            }
        }
    }
}
