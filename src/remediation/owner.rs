//! Who remediates where, and how meshready marks what it writes.
//!
//! Where two MeshReadiness objects cover a namespace, only one remediates there: the one in that
//! namespace, else the oldest. The same rule decides whose spec the checks use offline.

use std::collections::{BTreeMap, BTreeSet};

use kube::Resource;

use crate::api::MeshReadiness;
use crate::api::k8s::{ObjectMeta, OwnerReference};
use crate::api::keys;
use crate::istio::mtls::oldest_first;
use crate::remediation::MeshReadinessRef;
use crate::snapshot::scope::{covers, selector_problem};
use crate::snapshot::{Labels, MeshReadinessInfo, Snapshot};

/// A MeshReadiness by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MeshReadinessKey {
    pub namespace: String,
    pub name: String,
}

impl MeshReadinessKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    pub fn of(mr: &MeshReadinessInfo) -> Self {
        Self::new(mr.meta.namespace.clone(), mr.meta.name.clone())
    }

    /// The value of the `meshreadiness.io/owner` label on the objects it writes.
    pub fn label_value(&self) -> String {
        owner_label_value(&self.namespace, &self.name)
    }
}

impl std::fmt::Display for MeshReadinessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A label value is at most 63 characters.
const LABEL_VALUE_MAX: usize = 63;

/// `<namespace>.<name>` (a namespace has no dot, so it splits back unambiguously). A name too
/// long for a label value (MeshReadiness names may have 253 characters) is cut and suffixed
/// with a hash of the whole, so the value stays unique, valid and stable.
pub fn owner_label_value(namespace: &str, name: &str) -> String {
    let full = format!("{namespace}.{name}");
    if full.len() <= LABEL_VALUE_MAX {
        return full;
    }
    let hash = format!("{:010x}", fnv1a(full.as_bytes()) & 0xff_ffff_ffff);
    // Names are ASCII (DNS subdomains), so byte cuts are character cuts.
    let keep = LABEL_VALUE_MAX - hash.len() - 1;
    let head = full[..keep].trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{head}-{hash}")
}

/// FNV-1a, 64 bits: stable across Rust versions and platforms, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Labels, and an ownerReference when the object sits in the MeshReadiness's own namespace and
/// its uid is known (elsewhere the operator's finalizer cleans up).
pub(super) fn metadata(mr: MeshReadinessRef, namespace: &str, name: &str) -> ObjectMeta {
    let labels = [
        (
            keys::MANAGED_BY.to_string(),
            keys::MANAGED_BY_VALUE.to_string(),
        ),
        (keys::OWNER_LABEL.to_string(), mr.key.label_value()),
    ]
    .into_iter()
    .collect();
    let owner_references = mr.uid.filter(|_| mr.key.namespace == namespace).map(|uid| {
        vec![OwnerReference {
            api_version: MeshReadiness::api_version(&()).to_string(),
            kind: MeshReadiness::kind(&()).to_string(),
            name: mr.key.name.clone(),
            uid: uid.to_string(),
            controller: Some(true),
            // Left unset: setting it needs update on meshreadinesses/finalizers, and
            // nothing waits on these objects when the MeshReadiness goes.
            block_owner_deletion: None,
        }]
    });
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(labels),
        owner_references,
        ..ObjectMeta::default()
    }
}

/// A selector Kubernetes would refuse makes the object cover nothing, as in a cluster.
fn usable(mr: &MeshReadinessInfo) -> bool {
    mr.spec
        .namespace_selector
        .as_ref()
        .and_then(selector_problem)
        .is_none()
}

/// The MeshReadiness among `candidates` that speaks for `namespace` (whose labels are `labels`):
/// of those that cover it, the one in that namespace, else the oldest (creation time; objects
/// without one after those with one; then namespace and name).
///
/// The caller chooses the candidates: the operator may leave out objects being deleted.
pub fn owner_of<'a>(
    candidates: &'a [MeshReadinessInfo],
    namespace: &str,
    labels: &Labels,
    operator_namespace: &str,
) -> Option<&'a MeshReadinessInfo> {
    candidates
        .iter()
        .filter(|mr| usable(mr) && covers(mr, namespace, labels, operator_namespace))
        .min_by(|a, b| {
            let elsewhere = |mr: &MeshReadinessInfo| mr.meta.namespace != namespace;
            elsewhere(a)
                .cmp(&elsewhere(b))
                .then_with(|| oldest_first(&a.meta, &b.meta))
        })
}

/// [`owner_of`] for each of `namespaces`, with the Namespace labels of `snapshot`.
pub fn owners<'a>(
    candidates: &'a [MeshReadinessInfo],
    snapshot: &Snapshot,
    namespaces: &BTreeSet<String>,
    operator_namespace: &str,
) -> BTreeMap<String, &'a MeshReadinessInfo> {
    let no_labels = Labels::new();
    namespaces
        .iter()
        .filter_map(|ns| {
            let labels = snapshot
                .namespace(ns)
                .map_or(&no_labels, |n| &n.meta.labels);
            let owner = owner_of(candidates, ns, labels, operator_namespace)?;
            Some((ns.clone(), owner))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MeshReadinessSpec;
    use crate::api::k8s::{LabelSelector, Time};
    use crate::snapshot::Meta;

    const OPERATOR: &str = "meshreadiness-system";

    fn mr(namespace: &str, name: &str, all: bool, created: Option<&str>) -> MeshReadinessInfo {
        MeshReadinessInfo {
            meta: Meta {
                namespace: namespace.to_string(),
                name: name.to_string(),
                creation: created.map(|t| Time(t.parse().expect("timestamp"))),
                ..Meta::default()
            },
            spec: MeshReadinessSpec {
                namespace_selector: all.then(LabelSelector::default),
                ..MeshReadinessSpec::default()
            },
        }
    }

    #[test]
    fn own_namespace_wins_over_an_older_selector() {
        let candidates = [
            mr(OPERATOR, "fleet", true, Some("2020-01-01T00:00:00Z")),
            mr("shop", "ready", false, Some("2025-01-01T00:00:00Z")),
        ];
        let owner = owner_of(&candidates, "shop", &Labels::new(), OPERATOR).expect("owner");
        assert_eq!(owner.meta.name, "ready");
        let owner = owner_of(&candidates, "ads", &Labels::new(), OPERATOR).expect("owner");
        assert_eq!(owner.meta.name, "fleet");
    }

    #[test]
    fn else_the_oldest_then_by_name() {
        let candidates = [
            mr(OPERATOR, "young", true, Some("2024-05-01T00:00:00Z")),
            mr(OPERATOR, "undated", true, None),
            mr(OPERATOR, "old", true, Some("2024-01-01T00:00:00Z")),
        ];
        let owner = owner_of(&candidates, "ads", &Labels::new(), OPERATOR).expect("owner");
        assert_eq!(owner.meta.name, "old");
        let undated = [mr(OPERATOR, "b", true, None), mr(OPERATOR, "a", true, None)];
        let owner = owner_of(&undated, "ads", &Labels::new(), OPERATOR).expect("owner");
        assert_eq!(owner.meta.name, "a");
    }

    #[test]
    fn a_selector_outside_the_operator_namespace_owns_nothing() {
        let candidates = [mr("ads", "fleet", true, None)];
        assert!(owner_of(&candidates, "shop", &Labels::new(), OPERATOR).is_none());
        assert!(owner_of(&[], "shop", &Labels::new(), OPERATOR).is_none());
    }

    #[test]
    fn label_values_fit_and_stay_unique() {
        assert_eq!(owner_label_value("shop", "ready"), "shop.ready");
        let long = "x".repeat(200);
        let a = owner_label_value("shop", &long);
        let b = owner_label_value("shop", &format!("{long}y"));
        assert_eq!(a.len(), 63);
        assert_ne!(a, b);
        assert!(a.starts_with("shop.xxx"));
        assert!(a.chars().last().is_some_and(|c| c.is_ascii_alphanumeric()));
        // A cut that ends on a separator is trimmed: the value must end alphanumeric.
        let dotted = format!("{}-{}", "a".repeat(47), "b".repeat(60));
        let value = owner_label_value("ns", &dotted);
        assert!(!value.contains("--"), "{value}");
        assert_eq!(value, owner_label_value("ns", &dotted), "stable");
    }
}
