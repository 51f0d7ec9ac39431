//! Offline, which MeshReadiness speaks for each namespace, and the check requests that follow.
//!
//! A MeshReadiness covers what it would in a cluster
//! ([`covers`](crate::snapshot::scope::covers)): its own namespace, or, when it sits in the
//! operator's namespace and has a `namespaceSelector`, the namespaces whose labels match. Where
//! two cover one namespace, the one in that namespace wins, else the oldest.

use std::collections::{BTreeMap, BTreeSet};

use crate::checks::{CheckRequest, Code};
use crate::snapshot::{MeshReadinessInfo, Snapshot};

/// The MeshReadiness that speaks for each of `namespaces`, if any covers it: the one in that
/// namespace, else the oldest. The same rule decides who remediates there.
pub fn assign<'a>(
    snapshot: &'a Snapshot,
    namespaces: &BTreeSet<String>,
    operator_namespace: &str,
) -> BTreeMap<String, &'a MeshReadinessInfo> {
    crate::remediation::owners(
        &snapshot.mesh_readiness,
        snapshot,
        namespaces,
        operator_namespace,
    )
}

/// One request per set of disabled codes, covering `namespaces`; app idle timeouts come from
/// the MeshReadiness assigned to each namespace.
pub fn requests(
    namespaces: &BTreeSet<String>,
    assigned: &BTreeMap<String, &MeshReadinessInfo>,
) -> Vec<CheckRequest> {
    let mut by_disabled: BTreeMap<BTreeSet<Code>, BTreeSet<String>> = BTreeMap::new();
    let mut app_idle_timeouts = BTreeMap::new();
    for ns in namespaces {
        let spec = assigned.get(ns).map(|mr| &mr.spec);
        let disabled = spec
            .map(|s| s.checks.disabled.iter().copied().collect())
            .unwrap_or_default();
        by_disabled.entry(disabled).or_default().insert(ns.clone());
        for timeout in spec.iter().flat_map(|s| &s.app_idle_timeouts) {
            if !timeout.timeout.is_negative() {
                app_idle_timeouts.insert(
                    (ns.clone(), timeout.service.clone()),
                    std::time::Duration::from(timeout.timeout),
                );
            }
        }
    }
    by_disabled
        .into_iter()
        .map(|(disabled, namespaces)| CheckRequest {
            app_idle_timeouts: app_idle_timeouts
                .iter()
                .filter(|((ns, _), _)| namespaces.contains(ns))
                .map(|(key, timeout)| (key.clone(), *timeout))
                .collect(),
            namespaces,
            disabled,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::k8s::{LabelSelector, Time};
    use crate::api::{AppIdleTimeout, MeshReadinessSpec};
    use crate::snapshot::scope::selector_matches;
    use crate::snapshot::{Labels, Meta};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use std::time::Duration;

    const OPERATOR: &str = "meshreadiness-system";

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_string(),
            operator: operator.to_string(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn mr(namespace: &str, name: &str, selector: Option<LabelSelector>) -> MeshReadinessInfo {
        MeshReadinessInfo {
            meta: Meta {
                namespace: namespace.to_string(),
                name: name.to_string(),
                ..Meta::default()
            },
            spec: MeshReadinessSpec {
                namespace_selector: selector,
                ..MeshReadinessSpec::default()
            },
        }
    }

    fn created(mut mr: MeshReadinessInfo, rfc3339: &str) -> MeshReadinessInfo {
        mr.meta.creation = Some(Time(rfc3339.parse().expect("timestamp")));
        mr
    }

    fn snapshot(namespaces: &[(&str, Labels)], mrs: Vec<MeshReadinessInfo>) -> Snapshot {
        let objects = namespaces.iter().map(|(name, labels)| {
            crate::snapshot::ClusterObject::Namespace(crate::api::k8s::Namespace {
                metadata: crate::api::k8s::ObjectMeta {
                    name: Some(name.to_string()),
                    labels: Some(labels.clone()),
                    ..Default::default()
                },
                ..Default::default()
            })
        });
        let mut snapshot = Snapshot::build(objects, &Default::default()).expect("builds");
        snapshot.mesh_readiness = mrs;
        snapshot
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn match_labels_and_expressions() {
        let team = labels(&[("team", "shop"), ("tier", "web")]);
        let selector =
            |match_labels: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>| LabelSelector {
                match_labels: Some(labels(match_labels)),
                match_expressions: Some(exprs),
            };
        assert!(selector_matches(&LabelSelector::default(), &team));
        assert!(selector_matches(
            &selector(&[("team", "shop")], vec![]),
            &team
        ));
        assert!(!selector_matches(
            &selector(&[("team", "ads")], vec![]),
            &team
        ));
        let cases = [
            (expr("tier", "In", &["web", "api"]), true),
            (expr("tier", "In", &["api"]), false),
            (expr("missing", "In", &["x"]), false),
            (expr("tier", "NotIn", &["api"]), true),
            (expr("tier", "NotIn", &["web"]), false),
            (expr("missing", "NotIn", &["web"]), true),
            (expr("team", "Exists", &[]), true),
            (expr("missing", "Exists", &[]), false),
            (expr("missing", "DoesNotExist", &[]), true),
            (expr("team", "DoesNotExist", &[]), false),
            (expr("team", "Gt", &["1"]), false),
        ];
        for (requirement, expected) in cases {
            let s = selector(&[], vec![requirement.clone()]);
            assert_eq!(selector_matches(&s, &team), expected, "{requirement:?}");
        }
    }

    #[test]
    fn own_namespace_without_selector() {
        let snap = snapshot(&[], vec![mr("shop", "ready", None)]);
        let assigned = assign(&snap, &set(&["shop", "ads"]), OPERATOR);
        assert_eq!(assigned.keys().collect::<Vec<_>>(), ["shop"]);
    }

    #[test]
    fn selector_only_from_the_operator_namespace() {
        let web = labels(&[("mesh", "yes")]);
        let selector = Some(LabelSelector {
            match_labels: Some(web.clone()),
            ..Default::default()
        });
        let snap = snapshot(
            &[("shop", web.clone()), ("ads", Labels::new()), ("cart", web)],
            vec![
                mr(OPERATOR, "fleet", selector.clone()),
                mr("ads", "refused", selector),
            ],
        );
        let assigned = assign(&snap, &set(&["shop", "ads", "cart"]), OPERATOR);
        let names: Vec<_> = assigned
            .iter()
            .map(|(ns, mr)| format!("{ns}={}", mr.meta.name))
            .collect();
        assert_eq!(names, ["cart=fleet", "shop=fleet"]);
    }

    #[test]
    fn selector_can_name_a_namespace() {
        let selector = Some(LabelSelector {
            match_expressions: Some(vec![expr("kubernetes.io/metadata.name", "In", &["ads"])]),
            ..Default::default()
        });
        let snap = snapshot(&[], vec![mr(OPERATOR, "fleet", selector)]);
        let assigned = assign(&snap, &set(&["shop", "ads"]), OPERATOR);
        assert_eq!(assigned.keys().collect::<Vec<_>>(), ["ads"]);
    }

    #[test]
    fn an_invalid_selector_covers_nothing() {
        let selector = Some(LabelSelector {
            match_expressions: Some(vec![expr("team", "Exists", &["x"])]),
            ..Default::default()
        });
        let snap = snapshot(&[], vec![mr(OPERATOR, "fleet", selector)]);
        assert!(assign(&snap, &set(&["shop"]), OPERATOR).is_empty());
    }

    #[test]
    fn own_namespace_wins_then_the_oldest() {
        let all = Some(LabelSelector::default());
        let snap = snapshot(
            &[],
            vec![
                created(mr(OPERATOR, "young", all.clone()), "2024-05-01T00:00:00Z"),
                created(mr(OPERATOR, "old", all.clone()), "2024-01-01T00:00:00Z"),
                mr(OPERATOR, "undated", all),
                created(mr("shop", "b-local", None), "2025-01-01T00:00:00Z"),
                created(mr("shop", "a-local", None), "2025-01-01T00:00:00Z"),
            ],
        );
        let assigned = assign(&snap, &set(&["shop", "ads"]), OPERATOR);
        assert_eq!(assigned["shop"].meta.name, "a-local");
        assert_eq!(assigned["ads"].meta.name, "old");
    }

    #[test]
    fn requests_group_namespaces_by_disabled_codes() {
        let mut shop = mr("shop", "ready", None);
        shop.spec.checks.disabled = vec![Code::MR201, Code::MR101];
        shop.spec.app_idle_timeouts = vec![AppIdleTimeout {
            service: "web".to_string(),
            timeout: Duration::from_secs(60).into(),
        }];
        let mut cart = mr("cart", "ready", None);
        cart.spec.checks.disabled = vec![Code::MR101, Code::MR201];
        let snap = snapshot(&[], vec![shop, cart]);
        let namespaces = set(&["shop", "cart", "ads"]);
        let requests = requests(&namespaces, &assign(&snap, &namespaces, OPERATOR));
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].namespaces, set(&["ads"]));
        assert!(requests[0].disabled.is_empty());
        assert!(requests[0].app_idle_timeouts.is_empty());
        assert_eq!(requests[1].namespaces, set(&["cart", "shop"]));
        assert_eq!(
            requests[1].disabled,
            [Code::MR101, Code::MR201].into_iter().collect()
        );
        let key = ("shop".to_string(), "web".to_string());
        assert_eq!(
            requests[1].app_idle_timeouts.get(&key),
            Some(&Duration::from_secs(60))
        );
    }
}
