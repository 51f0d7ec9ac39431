//! Effective peer mTLS mode per workload and port, as istiod composes PeerAuthentications.
//!
//! The mesh-wide policy is the selector-less one in the root namespace. Precedence: workload
//! (selector) > namespace > mesh; within one scope the oldest wins; `UNSET` inherits; no policy
//! at all means PERMISSIVE. `portLevelMtls` works only on a policy with a selector.

use foldhash::{HashMap, HashMapExt};
use std::borrow::Cow;
use std::cmp::Ordering;

use crate::api::istio::MtlsMode;
use crate::snapshot::{Labels, Meta, PeerAuthenticationInfo};

/// Where the effective mode came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// No policy sets a mode: Istio's default, PERMISSIVE.
    Default,
    Mesh,
    Namespace,
    Workload,
    /// A `portLevelMtls` entry of the workload policy.
    Port,
}

/// The mode in force and the policy that decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    pub mode: MtlsMode,
    pub scope: Scope,
    /// `namespace/name` of the deciding policy.
    pub policy: Option<String>,
}

impl Effective {
    pub fn is_strict(&self) -> bool {
        self.mode == MtlsMode::Strict
    }
}

/// Istio's order of PeerAuthentications: oldest first; objects without a creation time after
/// those with one; ties by namespace, then name.
pub fn oldest_first(a: &Meta, b: &Meta) -> Ordering {
    let time = |m: &Meta| m.creation.as_ref().map(|t| t.0);
    match (time(a), time(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
    .then_with(|| a.namespace.cmp(&b.namespace))
    .then_with(|| a.name.cmp(&b.name))
}

/// A workload policy: one with a non-empty selector.
pub fn has_selector(pa: &PeerAuthenticationInfo) -> bool {
    pa.spec
        .selector
        .as_ref()
        .is_some_and(|s| !s.match_labels.is_empty())
}

/// A workload policy whose selector matches pods with `labels`.
pub fn selects(pa: &PeerAuthenticationInfo, labels: &Labels) -> bool {
    pa.spec.selector.as_ref().is_some_and(|s| {
        !s.match_labels.is_empty() && s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    })
}

fn mode_of(pa: &PeerAuthenticationInfo) -> MtlsMode {
    pa.spec.mtls.as_ref().map(|m| m.mode).unwrap_or_default()
}

fn qualified(pa: &PeerAuthenticationInfo) -> String {
    // Pushed rather than formatted: made for every workload the mTLS checks read.
    let (namespace, name) = (&pa.meta.namespace, &pa.meta.name);
    let mut out = String::with_capacity(namespace.len() + 1 + name.len());
    out.push_str(namespace);
    out.push('/');
    out.push_str(name);
    out
}

/// Positions of PeerAuthentications by namespace, each list oldest first: the arrangement
/// [`MtlsPolicies`] reads. Built once per snapshot; kept by an incremental analysis.
pub type PoliciesByNamespace = HashMap<String, Vec<usize>>;

/// Arranges `policies` by namespace, oldest first within each.
pub fn by_namespace(policies: &[PeerAuthenticationInfo]) -> PoliciesByNamespace {
    let mut map: PoliciesByNamespace = HashMap::new();
    for (i, pa) in policies.iter().enumerate() {
        match map.get_mut(&pa.meta.namespace) {
            Some(list) => list.push(i),
            None => {
                map.insert(pa.meta.namespace.clone(), vec![i]);
            }
        }
    }
    for list in map.values_mut() {
        sort_oldest_first(policies, list);
    }
    map
}

/// Sorts positions into `policies` as Istio orders them.
pub fn sort_oldest_first(policies: &[PeerAuthenticationInfo], list: &mut [usize]) {
    list.sort_by(|a, b| oldest_first(&policies[*a].meta, &policies[*b].meta));
}

/// The PeerAuthentications of a snapshot, arranged for lookups: a query reads only the
/// policies of the namespace asked about and of the root namespace.
#[derive(Debug)]
pub struct MtlsPolicies<'a> {
    policies: &'a [PeerAuthenticationInfo],
    root_namespace: String,
    mesh: Option<&'a PeerAuthenticationInfo>,
    by_namespace: Cow<'a, PoliciesByNamespace>,
}

impl<'a> MtlsPolicies<'a> {
    pub fn new(policies: &'a [PeerAuthenticationInfo], root_namespace: &str) -> Self {
        Self::arranged(policies, root_namespace, Cow::Owned(by_namespace(policies)))
    }

    /// With the arrangement already made ([`by_namespace`]).
    pub fn indexed(
        policies: &'a [PeerAuthenticationInfo],
        root_namespace: &str,
        by_namespace: &'a PoliciesByNamespace,
    ) -> Self {
        Self::arranged(policies, root_namespace, Cow::Borrowed(by_namespace))
    }

    fn arranged(
        policies: &'a [PeerAuthenticationInfo],
        root_namespace: &str,
        by_namespace: Cow<'a, PoliciesByNamespace>,
    ) -> Self {
        let mesh = by_namespace.get(root_namespace).and_then(|list| {
            list.iter()
                .map(|i| &policies[*i])
                .find(|pa| !has_selector(pa))
        });
        Self {
            policies,
            root_namespace: root_namespace.to_string(),
            mesh,
            by_namespace,
        }
    }

    /// The namespace's policies, oldest first.
    fn in_namespace(&self, namespace: &str) -> impl Iterator<Item = &'a PeerAuthenticationInfo> {
        let policies = self.policies;
        self.by_namespace
            .get(namespace)
            .into_iter()
            .flatten()
            .map(move |i| &policies[*i])
    }

    /// The mesh-wide policy in force, if any.
    pub fn mesh_policy(&self) -> Option<&'a PeerAuthenticationInfo> {
        self.mesh
    }

    /// The namespace-wide policy in force in `namespace`, if any.
    pub fn namespace_policy(&self, namespace: &str) -> Option<&'a PeerAuthenticationInfo> {
        if namespace == self.root_namespace {
            return None;
        }
        self.in_namespace(namespace).find(|pa| !has_selector(pa))
    }

    /// The workload policy in force for pods with `labels` in `namespace`: the oldest that selects them.
    pub fn workload_policy(
        &self,
        namespace: &str,
        labels: &Labels,
    ) -> Option<&'a PeerAuthenticationInfo> {
        self.in_namespace(namespace)
            .find(|pa| has_selector(pa) && selects(pa, labels))
    }

    /// The mode for pods with `labels` in `namespace`, on `port` (a container port) when given.
    pub fn effective(&self, namespace: &str, labels: &Labels, port: Option<i32>) -> Effective {
        // The policy that decides, named only at the end: the text is made once per call,
        // not for each policy a more specific one overrides.
        let mut decided: Option<(&PeerAuthenticationInfo, MtlsMode, Scope)> = None;
        let mut apply = |pa, mode: MtlsMode, scope| {
            if mode != MtlsMode::Unset {
                decided = Some((pa, mode, scope));
            }
        };
        if let Some(pa) = self.mesh {
            apply(pa, mode_of(pa), Scope::Mesh);
        }
        if let Some(pa) = self.namespace_policy(namespace) {
            apply(pa, mode_of(pa), Scope::Namespace);
        }
        if let Some(pa) = self.workload_policy(namespace, labels) {
            apply(pa, mode_of(pa), Scope::Workload);
            let port_mode = port
                .filter(|_| !pa.spec.port_level_mtls.is_empty())
                .and_then(|p| pa.spec.port_level_mtls.get(&p.to_string()))
                .map(|m| m.mode);
            if let Some(mode) = port_mode {
                apply(pa, mode, Scope::Port);
            }
        }
        match decided {
            Some((pa, mode, scope)) => Effective {
                mode,
                scope,
                policy: Some(qualified(pa)),
            },
            None => Effective {
                mode: MtlsMode::Permissive,
                scope: Scope::Default,
                policy: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::istio::{PeerAuthenticationSpec, PeerMtls, WorkloadSelector};
    use crate::api::k8s::Time;
    use crate::snapshot::IstioObject;

    fn pa(
        ns: &str,
        name: &str,
        age: Option<i64>,
        selector: &[(&str, &str)],
        mode: MtlsMode,
    ) -> PeerAuthenticationInfo {
        IstioObject {
            meta: Meta {
                namespace: ns.into(),
                name: name.into(),
                creation: age
                    .map(|secs| Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())),
                ..Meta::default()
            },
            spec: PeerAuthenticationSpec {
                selector: (!selector.is_empty()).then(|| WorkloadSelector {
                    match_labels: selector
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                }),
                mtls: Some(PeerMtls { mode }),
                port_level_mtls: BTreeMap::new(),
            },
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_policy_is_permissive() {
        let policies = MtlsPolicies::new(&[], "istio-system");
        let e = policies.effective("shop", &Labels::new(), None);
        assert_eq!((e.mode, e.scope), (MtlsMode::Permissive, Scope::Default));
    }

    #[test]
    fn mesh_policy_is_root_namespace_without_selector() {
        let all = [
            pa("istio-system", "default", Some(10), &[], MtlsMode::Strict),
            pa(
                "istio-system",
                "selective",
                Some(5),
                &[("app", "x")],
                MtlsMode::Disable,
            ),
        ];
        let policies = MtlsPolicies::new(&all, "istio-system");
        let e = policies.effective("shop", &labels(&[("app", "x")]), None);
        assert_eq!((e.mode, e.scope), (MtlsMode::Strict, Scope::Mesh));
        assert_eq!(e.policy.as_deref(), Some("istio-system/default"));
        // A custom root namespace moves the mesh-wide policy.
        let policies = MtlsPolicies::new(&all, "mesh-root");
        assert_eq!(
            policies.effective("shop", &Labels::new(), None).scope,
            Scope::Default
        );
    }

    #[test]
    fn workload_beats_namespace_beats_mesh() {
        let all = [
            pa("istio-system", "mesh", Some(1), &[], MtlsMode::Strict),
            pa("shop", "ns", Some(2), &[], MtlsMode::Permissive),
            pa("shop", "wl", Some(3), &[("app", "db")], MtlsMode::Disable),
        ];
        let policies = MtlsPolicies::new(&all, "istio-system");
        assert_eq!(
            policies
                .effective("shop", &labels(&[("app", "db")]), None)
                .mode,
            MtlsMode::Disable
        );
        assert_eq!(
            policies
                .effective("shop", &labels(&[("app", "web")]), None)
                .mode,
            MtlsMode::Permissive
        );
        assert_eq!(
            policies
                .effective("other", &labels(&[("app", "db")]), None)
                .mode,
            MtlsMode::Strict
        );
    }

    #[test]
    fn oldest_namespace_policy_wins_and_unset_inherits() {
        let all = [
            pa("istio-system", "mesh", Some(1), &[], MtlsMode::Strict),
            pa("shop", "newer", Some(20), &[], MtlsMode::Disable),
            pa("shop", "older", Some(10), &[], MtlsMode::Unset),
        ];
        let policies = MtlsPolicies::new(&all, "istio-system");
        let e = policies.effective("shop", &Labels::new(), None);
        // The older policy takes effect, and its UNSET inherits the mesh's STRICT.
        assert_eq!((e.mode, e.scope), (MtlsMode::Strict, Scope::Mesh));
        assert_eq!(
            policies.namespace_policy("shop").unwrap().meta.name,
            "older"
        );
    }

    #[test]
    fn objects_without_creation_time_come_last_then_by_name() {
        let all = [
            pa("shop", "a-no-time", None, &[], MtlsMode::Disable),
            pa("shop", "b-timed", Some(100), &[], MtlsMode::Strict),
        ];
        let policies = MtlsPolicies::new(&all, "istio-system");
        assert_eq!(
            policies.effective("shop", &Labels::new(), None).mode,
            MtlsMode::Strict
        );
        let all = [
            pa("shop", "b", None, &[], MtlsMode::Disable),
            pa("shop", "a", None, &[], MtlsMode::Strict),
        ];
        let policies = MtlsPolicies::new(&all, "istio-system");
        assert_eq!(
            policies.effective("shop", &Labels::new(), None).mode,
            MtlsMode::Strict
        );
    }

    #[test]
    fn port_level_mtls_with_selector_only() {
        let mut wl = pa("shop", "wl", Some(1), &[("app", "db")], MtlsMode::Strict);
        wl.spec.port_level_mtls.insert(
            "9080".into(),
            PeerMtls {
                mode: MtlsMode::Permissive,
            },
        );
        wl.spec.port_level_mtls.insert(
            "9090".into(),
            PeerMtls {
                mode: MtlsMode::Unset,
            },
        );
        let mut ns = pa("shop", "ns", Some(1), &[], MtlsMode::Strict);
        ns.spec.port_level_mtls.insert(
            "8080".into(),
            PeerMtls {
                mode: MtlsMode::Disable,
            },
        );
        let all = [wl, ns];
        let policies = MtlsPolicies::new(&all, "istio-system");
        let db = labels(&[("app", "db")]);
        assert_eq!(
            policies.effective("shop", &db, Some(9080)).mode,
            MtlsMode::Permissive
        );
        assert_eq!(
            policies.effective("shop", &db, Some(9090)).mode,
            MtlsMode::Strict
        );
        assert_eq!(
            policies.effective("shop", &db, Some(1)).mode,
            MtlsMode::Strict
        );
        // The namespace policy's portLevelMtls does nothing.
        assert_eq!(
            policies.effective("shop", &Labels::new(), Some(8080)).mode,
            MtlsMode::Strict
        );
    }
}
