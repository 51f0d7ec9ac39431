//! Re-analysis of one namespace after its objects change: the namespace's part of the snapshot
//! is rebuilt and spliced in, the [`Index`] is patched for it, and the checks run on that
//! namespace alone, reading only what concerns it.
//!
//! The findings of the namespace re-checked are exactly those a full build and run would give.
//! Other namespaces' findings may depend on it too (MR301's callers in other namespaces, MR204's
//! port protocols, Istio objects elsewhere naming its hosts): [`Replaced::cross_namespace`] says
//! when such a fact changed, so the caller re-checks them as well.

use std::collections::BTreeSet;

use super::index::HashMap;
use std::ops::Range;

use super::index::{self, Index, plaintext_count, port_use_order, resolved_vs_hosts};
use super::{CheckRequest, Finding, is_mesh_bound, run_indexed};
use crate::istio::hosts;
use crate::istio::mtls;
use crate::snapshot::{
    BuildError, BuildOptions, ClusterObject, ISTIO_SYSTEM_NAMESPACE, Meta, Snapshot,
};

/// Declared port protocols by port number: (service position, protocol).
type PortUses = std::collections::BTreeMap<i32, Vec<(usize, crate::istio::protocol::Protocol)>>;

/// A snapshot kept with its index, updated one namespace at a time.
#[derive(Clone, Debug)]
pub struct Incremental {
    snapshot: Snapshot,
    index: Index,
}

/// What a [`Incremental::replace_namespace`] changed beyond the namespace itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replaced {
    /// A fact other namespaces' findings read changed: its plaintext callers or injection
    /// state (MR301), its Services' port protocols (MR204), or hosts that Istio objects in
    /// other namespaces name (or that its own Istio objects name elsewhere). Re-check the
    /// other namespaces too.
    pub cross_namespace: bool,
    /// The namespace's object counts changed, so the whole index was rebuilt (positions moved).
    pub reindexed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum IncrementalError {
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The mesh config and the root namespace's policies shape every namespace: rebuild whole.
    #[error("namespace {0} holds mesh-wide settings: build the whole snapshot again")]
    MeshWide(String),
    #[error("an object of namespace {found} was given to replace namespace {namespace}")]
    OtherNamespace { namespace: String, found: String },
}

/// Where a namespace's objects sit in a list sorted by namespace.
fn range_of<T>(list: &[T], namespace: &str, ns: impl Fn(&T) -> &str) -> Range<usize> {
    let start = list.partition_point(|x| ns(x) < namespace);
    let len = list[start..].partition_point(|x| ns(x) == namespace);
    start..start + len
}

/// Replaces `range` of `list` by `new`, returning whether the length stayed the same.
fn splice<T>(list: &mut Vec<T>, range: Range<usize>, new: Vec<T>) -> bool {
    let same = range.len() == new.len();
    list.splice(range, new);
    same
}

/// What other namespaces may read of one namespace.
#[derive(PartialEq)]
struct CrossFacts {
    injection: Option<crate::snapshot::Injection>,
    plaintext: Vec<(String, String, usize)>,
    ports: BTreeSet<(i32, String, String)>,
}

fn cross_facts(snapshot: &Snapshot, index: &Index, namespace: &str) -> CrossFacts {
    let services = &snapshot.services;
    let ports = index
        .services
        .get(namespace)
        .cloned()
        .into_iter()
        .flatten()
        .flat_map(|i| {
            let svc = &services[i];
            svc.ports.iter().filter_map(|p| {
                let protocol = p.declared.protocol()?;
                (!p.transport.eq_ignore_ascii_case("UDP"))
                    .then(|| (p.port, svc.meta.name.clone(), protocol.as_str().to_string()))
            })
        })
        .collect();
    let plaintext = index
        .plaintext
        .get(namespace)
        .into_iter()
        .flatten()
        .map(|i| {
            let w = &snapshot.workloads[*i];
            (w.kind.clone(), w.meta.name.clone(), plaintext_count(w))
        })
        .collect();
    CrossFacts {
        injection: snapshot.namespace(namespace).map(|n| n.injection),
        plaintext,
        ports,
    }
}

/// Whether Istio objects outside `namespace` name its hosts, or its own name hosts elsewhere.
fn referenced_across(snapshot: &Snapshot, index: &Index, namespace: &str) -> bool {
    let suffix = format!(".{namespace}.svc.{}", hosts::CLUSTER_DOMAIN);
    let drs = &snapshot.destination_rules;
    let vss = &snapshot.virtual_services;
    let dr_outside = |list: &Vec<usize>| list.iter().any(|i| drs[*i].meta.namespace != namespace);
    let vs_outside = |list: &Vec<usize>| list.iter().any(|i| vss[*i].meta.namespace != namespace);
    let wildcard = index
        .wildcard_destination_rules
        .iter()
        .any(|(i, _)| drs[*i].meta.namespace != namespace)
        || index
            .wildcard_virtual_services
            .iter()
            .any(|(i, _)| vss[*i].meta.namespace != namespace);
    let own_hosts_named = index
        .hosts_by_namespace
        .get(namespace)
        .into_iter()
        .flatten()
        .any(|host| {
            index
                .destination_rules_by_host
                .get(host)
                .is_some_and(dr_outside)
                || index
                    .virtual_services_by_host
                    .get(host)
                    .is_some_and(vs_outside)
        });
    let elsewhere = |host: &String| !hosts::resolve(host, namespace).ends_with(&suffix);
    let in_namespace = |ranges: &index::Ranges| ranges.get(namespace).cloned().unwrap_or_default();
    let names_elsewhere = in_namespace(&index.destination_rules)
        .into_iter()
        .any(|i| elsewhere(&drs[i].spec.host))
        || in_namespace(&index.virtual_services).into_iter().any(|i| {
            let vs = &vss[i];
            vs.spec
                .hosts
                .iter()
                .chain(
                    vs.spec
                        .http
                        .iter()
                        .flat_map(|r| r.route.iter().map(|d| &d.destination.host)),
                )
                .any(elsewhere)
        });
    wildcard || own_hosts_named || names_elsewhere
}

fn remove_positions(map: &mut HashMap<String, Vec<usize>>, keys: &[String], range: &Range<usize>) {
    for key in keys {
        if let Some(list) = map.get_mut(key) {
            list.retain(|i| !range.contains(i));
            if list.is_empty() {
                map.remove(key);
            }
        }
    }
}

fn insert_position(map: &mut HashMap<String, Vec<usize>>, key: String, position: usize) {
    let list = map.entry(key).or_default();
    if let Err(at) = list.binary_search(&position) {
        list.insert(at, position);
    }
}

impl Incremental {
    pub fn new(snapshot: Snapshot) -> Incremental {
        let index = Index::new(&snapshot);
        Incremental { snapshot, index }
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Runs the checks, as [`super::run`] would on the same snapshot.
    pub fn run(&self, request: &CheckRequest) -> Vec<Finding> {
        run_indexed(&self.snapshot, &self.index, request)
    }

    /// Replaces everything in `namespace` (its Namespace object and every object in it) by
    /// `objects`, all of that namespace.
    pub fn replace_namespace(
        &mut self,
        namespace: &str,
        objects: impl IntoIterator<Item = ClusterObject>,
        options: &BuildOptions,
    ) -> Result<Replaced, IncrementalError> {
        if namespace == ISTIO_SYSTEM_NAMESPACE || namespace == self.snapshot.mesh.root_namespace {
            return Err(IncrementalError::MeshWide(namespace.to_string()));
        }
        let sub = Snapshot::build_within(objects, options, &self.snapshot)?;
        if let Some(found) = sub.namespaces.keys().find(|ns| *ns != namespace) {
            return Err(IncrementalError::OtherNamespace {
                namespace: namespace.to_string(),
                found: found.clone(),
            });
        }
        let before = cross_facts(&self.snapshot, &self.index, namespace);
        let referenced_before = referenced_across(&self.snapshot, &self.index, namespace);

        let s = &mut self.snapshot;
        fn ns_of(m: &Meta) -> &str {
            m.namespace.as_str()
        }
        let workloads = range_of(&s.workloads, namespace, |w| ns_of(&w.meta));
        let services = range_of(&s.services, namespace, |x| ns_of(&x.meta));
        let pas = range_of(&s.peer_authentications, namespace, |x| ns_of(&x.meta));
        let drs = range_of(&s.destination_rules, namespace, |x| ns_of(&x.meta));
        let vss = range_of(&s.virtual_services, namespace, |x| ns_of(&x.meta));
        let efs = range_of(&s.envoy_filters, namespace, |x| ns_of(&x.meta));
        let mrs = range_of(&s.mesh_readiness, namespace, |x| ns_of(&x.meta));
        // Keys the old objects are indexed under, to unindex them.
        let old_service_hosts: Vec<String> = s.services[services.clone()]
            .iter()
            .map(|x| x.fqdn())
            .collect();
        let old_dr_hosts: Vec<String> = s.destination_rules[drs.clone()]
            .iter()
            .map(|dr| hosts::resolve(&dr.spec.host, namespace))
            .collect();
        let old_vs_hosts: Vec<String> = s.virtual_services[vss.clone()]
            .iter()
            .flat_map(resolved_vs_hosts)
            .collect();
        // The namespace's port uses, and its Services' names (which order the uses), to
        // touch only the port numbers whose uses changed.
        let old_uses = (
            index::declared_ports_of(s, services.clone()),
            s.services[services.clone()]
                .iter()
                .map(|x| x.meta.name.clone())
                .collect::<Vec<String>>(),
        );

        let Snapshot {
            namespaces,
            workloads: new_workloads,
            services: new_services,
            peer_authentications,
            destination_rules,
            virtual_services,
            envoy_filters,
            mesh_readiness,
            owned,
            ..
        } = sub;
        let mut same = true;
        same &= splice(&mut s.workloads, workloads.clone(), new_workloads);
        same &= splice(&mut s.services, services.clone(), new_services);
        same &= splice(
            &mut s.peer_authentications,
            pas.clone(),
            peer_authentications,
        );
        same &= splice(&mut s.destination_rules, drs.clone(), destination_rules);
        same &= splice(&mut s.virtual_services, vss.clone(), virtual_services);
        splice(&mut s.envoy_filters, efs, envoy_filters);
        splice(&mut s.mesh_readiness, mrs, mesh_readiness);
        s.owned
            .peer_authentications
            .retain(|o| o.meta.namespace != namespace);
        s.owned
            .peer_authentications
            .extend(owned.peer_authentications);
        s.owned
            .destination_rules
            .retain(|o| o.meta.namespace != namespace);
        s.owned.destination_rules.extend(owned.destination_rules);
        s.owned
            .virtual_services
            .retain(|o| o.meta.namespace != namespace);
        s.owned.virtual_services.extend(owned.virtual_services);
        s.namespaces.remove(namespace);
        s.namespaces.extend(namespaces);

        if same {
            self.patch_index(
                namespace,
                workloads,
                services,
                drs,
                vss,
                (&old_service_hosts, &old_dr_hosts, &old_vs_hosts),
                &old_uses,
            );
        } else {
            self.index = Index::new(&self.snapshot);
        }
        let after = cross_facts(&self.snapshot, &self.index, namespace);
        let referenced_after = referenced_across(&self.snapshot, &self.index, namespace);
        Ok(Replaced {
            cross_namespace: before != after || referenced_before || referenced_after,
            reindexed: !same,
        })
    }

    /// Brings the index up to date for one namespace whose objects kept their positions.
    #[allow(clippy::too_many_arguments)]
    fn patch_index(
        &mut self,
        namespace: &str,
        workloads: Range<usize>,
        services: Range<usize>,
        drs: Range<usize>,
        vss: Range<usize>,
        (old_service_hosts, old_dr_hosts, old_vs_hosts): (&[String], &[String], &[String]),
        (old_uses, old_names): &(PortUses, Vec<String>),
    ) {
        let s = &self.snapshot;
        let index = &mut self.index;
        let facts = index::workload_facts_in(s, namespace, workloads.clone());
        for (i, facts) in workloads.clone().zip(facts) {
            index.workload_facts[i] = facts;
        }
        for i in services.clone() {
            index.istio_managed[i] = index::istio_managed(&s.services[i]);
        }
        // Selection stays within the namespace.
        index.select_in(s, services.clone(), workloads.clone());
        // Plaintext callers: the namespace's entry anew.
        let fresh = index::plaintext_callers_in(s, &index.workload_facts, workloads.clone());
        let outside = &mut index.plaintext_outside;
        outside.retain(|(i, _)| !workloads.contains(i));
        if let Some(list) = fresh
            .as_ref()
            .filter(|_| index::calls_from_outside(s, namespace))
        {
            let at = outside.partition_point(|(i, _)| *i < workloads.start);
            let counted = list.iter().map(|i| (*i, plaintext_count(&s.workloads[*i])));
            outside.splice(at..at, counted);
        }
        match fresh {
            Some(list) => {
                index.plaintext.insert(namespace.to_string(), list);
            }
            None => {
                index.plaintext.remove(namespace);
            }
        }
        remove_positions(&mut index.services_by_host, old_service_hosts, &services);
        for i in services.clone() {
            insert_position(&mut index.services_by_host, s.services[i].fqdn(), i);
        }
        // Port protocols: for each port number whose uses changed, out with the old ones and
        // in with the new, in MR204's order.
        let new_uses = index::declared_ports_of(s, services.clone());
        let renamed = s.services[services.clone()]
            .iter()
            .map(|x| &x.meta.name)
            .ne(old_names.iter());
        let numbers: BTreeSet<i32> = old_uses.keys().chain(new_uses.keys()).copied().collect();
        for number in numbers {
            let new = new_uses.get(&number);
            if !renamed && old_uses.get(&number) == new {
                continue;
            }
            let uses = index.ports.entry(number).or_default();
            uses.retain(|(i, _)| !services.contains(i));
            for u in new.into_iter().flatten() {
                let at = uses.partition_point(|x| port_use_order(s, *x, *u).is_lt());
                uses.insert(at, *u);
            }
            if uses.is_empty() {
                index.ports.remove(&number);
            }
        }
        // PeerAuthentications: the namespace's list anew, oldest first.
        let mut pas: Vec<usize> = range_of(&s.peer_authentications, namespace, |x| {
            x.meta.namespace.as_str()
        })
        .collect();
        mtls::sort_oldest_first(&s.peer_authentications, &mut pas);
        if pas.is_empty() {
            index.peer_authentications.remove(namespace);
        } else {
            index
                .peer_authentications
                .insert(namespace.to_string(), pas);
        }
        // DestinationRules and VirtualServices by host.
        remove_positions(&mut index.destination_rules_by_host, old_dr_hosts, &drs);
        index
            .wildcard_destination_rules
            .retain(|(i, _)| !drs.contains(i));
        // Hosts filed before or after, to refile by namespace at the end.
        let mut touched: Vec<String> = old_dr_hosts.iter().chain(old_vs_hosts).cloned().collect();
        for i in drs {
            let dr = &s.destination_rules[i];
            let host = hosts::resolve(&dr.spec.host, namespace);
            if index::is_wildcard(&host) {
                index.wildcard_destination_rules.push((i, host.clone()));
            }
            touched.push(host.clone());
            insert_position(&mut index.destination_rules_by_host, host, i);
        }
        index.wildcard_destination_rules.sort_unstable();
        remove_positions(&mut index.virtual_services_by_host, old_vs_hosts, &vss);
        index
            .wildcard_virtual_services
            .retain(|(i, _)| !vss.contains(i));
        for i in vss {
            let vs = &s.virtual_services[i];
            if !is_mesh_bound(vs) {
                continue;
            }
            let hosts = resolved_vs_hosts(vs);
            if hosts.iter().any(|h| index::is_wildcard(h)) {
                index.wildcard_virtual_services.push((i, hosts.clone()));
            }
            for host in hosts {
                touched.push(host.clone());
                insert_position(&mut index.virtual_services_by_host, host, i);
            }
        }
        index.wildcard_virtual_services.sort_unstable();
        index.refile_hosts(&touched);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::checks::run;

    /// The example shop, every file, as documents.
    fn documents() -> Vec<Value> {
        crate::checks::testing::examples()
    }

    fn namespace_of(doc: &Value) -> &str {
        if doc["kind"] == "Namespace" {
            doc["metadata"]["name"].as_str().unwrap_or_default()
        } else {
            doc["metadata"]["namespace"].as_str().unwrap_or("default")
        }
    }

    fn decode(docs: &[Value]) -> Vec<ClusterObject> {
        docs.iter()
            .filter_map(|d| ClusterObject::from_value(d.clone()).expect("decodes"))
            .collect()
    }

    fn all(snapshot: &Snapshot) -> CheckRequest {
        CheckRequest {
            namespaces: snapshot.checkable_namespaces(),
            ..CheckRequest::default()
        }
    }

    /// Replaces `namespace` after `change` in an incremental analysis, and checks it against a
    /// full build of the changed documents: same snapshot, same findings, and the namespace's
    /// own run equals the full run's findings for it.
    fn replaced_equals_full(namespace: &str, change: impl Fn(&mut Vec<Value>)) -> Replaced {
        let options = BuildOptions::default();
        let docs = documents();
        let mut incremental = Incremental::new(Snapshot::build(decode(&docs), &options).unwrap());
        let mut changed = docs.clone();
        change(&mut changed);
        let in_namespace: Vec<Value> = changed
            .iter()
            .filter(|d| namespace_of(d) == namespace)
            .cloned()
            .collect();
        let replaced = incremental
            .replace_namespace(namespace, decode(&in_namespace), &options)
            .expect("replaces");
        let full = Snapshot::build(decode(&changed), &options).unwrap();
        assert_eq!(incremental.snapshot(), &full, "snapshots differ");
        let expected = run(&full, &all(&full));
        assert_eq!(incremental.run(&all(&full)), expected);
        let only = CheckRequest {
            namespaces: [namespace.to_string()].into(),
            ..CheckRequest::default()
        };
        let mine: Vec<Finding> = expected
            .into_iter()
            .filter(|f| f.object.namespace == namespace)
            .collect();
        assert_eq!(incremental.run(&only), mine);
        // The kept index is the one a fresh build makes.
        let fresh = Incremental::new(full);
        assert_eq!(
            format!("{:?}", sorted(incremental.index())),
            format!("{:?}", sorted(fresh.index()))
        );
        replaced
    }

    /// The index with its maps in a stable order, to compare.
    fn sorted(index: &Index) -> Vec<String> {
        let mut parts = vec![
            format!("{:?}", index.workload_facts),
            format!("{:?}", index.istio_managed),
            format!("{:?}", index.selected),
            format!("{:?}", index.selecting),
            format!("{:?}", index.plaintext),
            format!("{:?}", index.plaintext_outside),
            format!(
                "{:?}",
                index
                    .hosts_by_namespace
                    .iter()
                    .collect::<std::collections::BTreeMap<_, _>>()
            ),
            format!("{:?}", index.ports),
            format!("{:?}", index.wildcard_destination_rules),
            format!("{:?}", index.wildcard_virtual_services),
        ];
        for ranges in [
            &index.workloads,
            &index.services,
            &index.destination_rules,
            &index.virtual_services,
        ] {
            let ordered: std::collections::BTreeMap<_, _> = ranges.iter().collect();
            parts.push(format!("{ordered:?}"));
        }
        for map in [
            &index.services_by_host,
            &index.peer_authentications,
            &index.destination_rules_by_host,
            &index.virtual_services_by_host,
        ] {
            let ordered: std::collections::BTreeMap<_, _> = map.iter().collect();
            parts.push(format!("{ordered:?}"));
        }
        parts
    }

    fn edit(docs: &mut [Value], kind: &str, name: &str, f: impl Fn(&mut Value)) {
        let doc = docs
            .iter_mut()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind}/{name} in the examples"));
        f(doc);
    }

    #[test]
    fn a_changed_port_keeps_positions_and_equals_a_full_build() {
        let replaced = replaced_equals_full("shop-cart", |docs| {
            edit(docs, "Service", "cart", |svc| {
                svc["spec"]["ports"][0]["name"] = "tcp-grpc".into();
            })
        });
        assert!(!replaced.reindexed);
        assert!(replaced.cross_namespace, "port protocols changed");
    }

    #[test]
    fn an_unchanged_namespace_changes_nothing_elsewhere() {
        let replaced = replaced_equals_full("legacy-reporting", |_| {});
        assert!(!replaced.reindexed);
    }

    #[test]
    fn a_relabelled_namespace_equals_a_full_build() {
        replaced_equals_full("shop-orders", |docs| {
            edit(docs, "Namespace", "shop-orders", |ns| {
                ns["metadata"]["labels"] = serde_json::json!({});
            })
        });
    }

    #[test]
    fn an_added_and_a_removed_object_reindex() {
        let replaced = replaced_equals_full("shop-payments", |docs| {
            let at = docs
                .iter()
                .position(|d| namespace_of(d) == "shop-payments" && d["kind"] == "Service")
                .expect("a Service in shop-payments");
            docs.remove(at);
        });
        assert!(replaced.reindexed);
        replaced_equals_full("shop-reviews", |docs| {
            let mut extra = docs
                .iter()
                .find(|d| namespace_of(d) == "shop-reviews" && d["kind"] == "Service")
                .cloned()
                .expect("a Service in shop-reviews");
            extra["metadata"]["name"] = "extra".into();
            docs.push(extra);
        });
    }

    #[test]
    fn a_destination_rule_pointed_at_other_hosts_equals_a_full_build() {
        // shop-checkout's rule names a host of shop-payments: moved to one of its own, the
        // host is filed under another namespace, and cross-namespace facts changed.
        let replaced = replaced_equals_full("shop-checkout", |docs| {
            edit(docs, "DestinationRule", "payments-plaintext", |dr| {
                dr["spec"]["host"] = "checkout".into();
            })
        });
        assert!(!replaced.reindexed);
        assert!(
            replaced.cross_namespace,
            "it named shop-payments' host before"
        );
        let replaced = replaced_equals_full("shop-cart", |docs| {
            edit(docs, "DestinationRule", "cart-pool", |dr| {
                dr["spec"]["host"] = "*.shop-reviews.svc.cluster.local".into();
            })
        });
        assert!(
            replaced.cross_namespace,
            "a wildcard over another namespace"
        );
    }

    #[test]
    fn a_renamed_service_moves_among_the_port_uses() {
        let replaced = replaced_equals_full("shop-cart", |docs| {
            edit(docs, "Service", "cart", |svc| {
                svc["metadata"]["name"] = "a-cart".into();
            })
        });
        assert!(!replaced.reindexed);
    }

    #[test]
    fn a_virtual_service_host_change_equals_a_full_build() {
        replaced_equals_full("shop-orders", |docs| {
            edit(docs, "VirtualService", "orders", |vs| {
                vs["spec"]["hosts"] =
                    serde_json::json!(["orders", "reviews.shop-reviews.svc.cluster.local"]);
            })
        });
    }

    #[test]
    fn a_relabelled_template_changes_what_services_select() {
        replaced_equals_full("shop-cart", |docs| {
            for doc in docs.iter_mut().filter(|d| namespace_of(d) == "shop-cart") {
                if doc["kind"] == "Deployment" {
                    doc["spec"]["template"]["metadata"]["labels"] =
                        serde_json::json!({"app": "other"});
                }
                if doc["kind"] == "Pod" {
                    doc["metadata"]["labels"] = serde_json::json!({"app": "other"});
                }
            }
        });
    }

    #[test]
    fn a_namespace_emptied_disappears() {
        replaced_equals_full("shop-catalog", |docs| {
            docs.retain(|d| namespace_of(d) != "shop-catalog")
        });
    }

    #[test]
    fn mesh_wide_namespaces_and_strays_are_refused() {
        let options = BuildOptions::default();
        let docs = documents();
        let mut incremental = Incremental::new(Snapshot::build(decode(&docs), &options).unwrap());
        assert!(matches!(
            incremental.replace_namespace("istio-system", Vec::new(), &options),
            Err(IncrementalError::MeshWide(_))
        ));
        let cart: Vec<Value> = docs
            .iter()
            .filter(|d| namespace_of(d) == "shop-cart")
            .cloned()
            .collect();
        assert!(matches!(
            incremental.replace_namespace("shop-orders", decode(&cart), &options),
            Err(IncrementalError::OtherNamespace { .. })
        ));
    }
}
