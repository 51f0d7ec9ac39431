//! Which namespaces a MeshReadiness covers: its own, or, in the operator's namespace, those its
//! `namespaceSelector` matches (like Istio's root namespace, only there may one object speak for
//! many namespaces).

use std::collections::BTreeSet;

use crate::api::k8s::LabelSelector;
use crate::snapshot::{Labels, MeshReadinessInfo, Snapshot};

/// Kubernetes sets this label on every Namespace to its name, so selectors can name namespaces.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Whether `selector` matches `labels`, as Kubernetes reads a LabelSelector: every `matchLabels`
/// pair and every `matchExpressions` requirement must hold; an empty selector matches all; an
/// unknown operator matches nothing.
pub fn selector_matches(selector: &LabelSelector, labels: &Labels) -> bool {
    let labels_hold = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let expressions_hold = selector.match_expressions.iter().flatten().all(|req| {
        let values = req.values.as_deref().unwrap_or_default();
        let value = labels.get(&req.key);
        match req.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_hold && expressions_hold
}

/// A selector the API server's schema lets through but Kubernetes would refuse: an unknown
/// operator, or values where none belong (or none where some must).
pub fn selector_problem(selector: &LabelSelector) -> Option<String> {
    selector.match_expressions.iter().flatten().find_map(|req| {
        let has_values = req.values.as_ref().is_some_and(|v| !v.is_empty());
        match req.operator.as_str() {
            "In" | "NotIn" if !has_values => Some(format!(
                "namespaceSelector: {} {} needs values",
                req.key, req.operator
            )),
            "Exists" | "DoesNotExist" if has_values => Some(format!(
                "namespaceSelector: {} {} takes no values",
                req.key, req.operator
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => None,
            other => Some(format!(
                "namespaceSelector: unknown operator {other:?} (In, NotIn, Exists, DoesNotExist)"
            )),
        }
    })
}

/// Whether the MeshReadiness `mr` covers `namespace` (whose Namespace labels are `labels`).
pub fn covers(
    mr: &MeshReadinessInfo,
    namespace: &str,
    labels: &Labels,
    operator_namespace: &str,
) -> bool {
    match &mr.spec.namespace_selector {
        None => mr.meta.namespace == namespace,
        // Refused in a cluster (SelectorNotAllowed): it covers nothing.
        Some(_) if mr.meta.namespace != operator_namespace => false,
        Some(selector) => selects_namespace(selector, namespace, labels),
    }
}

/// Whether a `namespaceSelector` selects `namespace` (with Namespace labels `labels`). Its name
/// label is implied, as Kubernetes sets it on every Namespace.
pub fn selects_namespace(selector: &LabelSelector, namespace: &str, labels: &Labels) -> bool {
    let mut labels = labels.clone();
    labels
        .entry(NAMESPACE_NAME_LABEL.to_string())
        .or_insert_with(|| namespace.to_string());
    selector_matches(selector, &labels)
}

/// The namespaces of `snapshot` that `mr` covers, system namespaces excluded.
pub fn covered(
    snapshot: &Snapshot,
    mr: &MeshReadinessInfo,
    operator_namespace: &str,
) -> BTreeSet<String> {
    snapshot
        .namespaces
        .values()
        .filter(|ns| !snapshot.is_system_namespace(&ns.meta.name))
        .filter(|ns| covers(mr, &ns.meta.name, &ns.meta.labels, operator_namespace))
        .map(|ns| ns.meta.name.clone())
        .collect()
}
