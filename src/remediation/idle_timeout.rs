//! MR601: a DestinationRule `<service>-meshreadiness` whose idle timeouts sit below the app's
//! keep-alive, so Envoy closes idle upstream connections before the app does.
//!
//! Only for a Warning MR601, where the app's timeout is declared (spec.appIdleTimeouts or the
//! Service annotation). An Info MR601 is inferred from the runtime an image runs, a guess that
//! is not a basis for writing traffic configuration. Never where the user already has a
//! DestinationRule for the host, whatever its namespace, wildcard or workload selector: a
//! second rule for one host is undefined in Istio, and ours (exact host) would silently replace
//! a wildcard one.

use std::cmp::Ordering;

use serde_json::json;

use crate::api::RemediationState;
use crate::api::istio::{
    ConnectionPool, DestinationRule, DestinationRuleSpec, IdleTimeoutSettings, TrafficPolicy,
};
use crate::checks::{Code, Context, Severity, keep_alive_mismatch, recommended_idle_timeout};
use crate::istio::duration::format_duration;
use crate::istio::hosts;
use crate::istio::mtls::oldest_first;
use crate::remediation::{
    DesiredObject, FindingKey, Kind, NAME_SUFFIX, PlanRequest, Reason, Remediation, patch,
};
use crate::snapshot::{DestinationRuleInfo, ServiceInfo};

pub(super) fn plan(request: &PlanRequest, cx: &Context) -> Vec<Remediation> {
    let mut out = Vec::new();
    for finding in request
        .findings_of(Code::MR601)
        .filter(|f| f.severity == Severity::Warning)
    {
        let Some(svc) = cx.snapshot.services.iter().find(|s| {
            s.meta.namespace == finding.object.namespace && s.meta.name == finding.object.name
        }) else {
            continue;
        };
        let Some(mismatch) =
            keep_alive_mismatch(cx, svc).filter(|m| m.severity == Severity::Warning)
        else {
            continue;
        };
        let app = format_duration(mismatch.app);
        let recommended = recommended_idle_timeout(mismatch.app);
        let timeout = format_duration(recommended);
        let name = format!("{}{NAME_SUFFIX}", svc.meta.name);
        let object = destination_rule(request, svc, &name, &timeout);
        let fqdn = svc.fqdn();
        let theirs = user_destination_rules(cx, svc);
        let (state, reason, message) = if let Some(target) = theirs.first() {
            let others: Vec<String> = theirs[1..]
                .iter()
                .map(|dr| format!("{}/{}", dr.meta.namespace, dr.meta.name))
                .collect();
            let also = if others.is_empty() {
                String::new()
            } else {
                format!(" (also {})", others.join(", "))
            };
            let fix = patch::merge(
                Kind::DestinationRule,
                &target.meta.namespace,
                &target.meta.name,
                &json!({"spec": {"trafficPolicy": {"connectionPool": {
                    "http": {"idleTimeout": timeout},
                    "tcp": {"idleTimeout": timeout},
                }}}}),
            );
            (
                RemediationState::Blocked,
                Reason::UserObjectForHost,
                format!(
                    "MR601 on Service/{}: the app closes idle connections after {app}, but \
                     DestinationRule {}/{}{also} already applies to {fqdn}, and a second one \
                     for the host is undefined in Istio. Patch yours: {fix}",
                    svc.meta.name, target.meta.namespace, target.meta.name
                ),
            )
        } else if recommended >= mismatch.app {
            (
                RemediationState::Blocked,
                Reason::TimeoutTooShort,
                format!(
                    "MR601 on Service/{}: the app closes idle connections after {app}, and the \
                     proxy's idle timeout cannot go below 1s. Raise the app's keep-alive above \
                     the proxy's.",
                    svc.meta.name
                ),
            )
        } else {
            (
                RemediationState::Planned,
                Reason::MitigatesFindings,
                format!(
                    "MR601 on Service/{}: the app closes idle connections after {app}; an idle \
                     timeout of {timeout} (the app's minus max(1s, 10%)) for http and tcp makes \
                     Envoy close them first, so it never reuses one the app closed (503 UC).",
                    svc.meta.name
                ),
            )
        };
        out.push(Remediation {
            kind: Kind::DestinationRule,
            namespace: svc.meta.namespace.clone(),
            name,
            state,
            reason,
            message,
            object: DesiredObject::DestinationRule(object),
            mitigates: vec![FindingKey::from(finding)],
            expires: None,
        });
    }
    out
}

fn destination_rule(
    request: &PlanRequest,
    svc: &ServiceInfo,
    name: &str,
    timeout: &str,
) -> DestinationRule {
    let idle = || {
        Some(IdleTimeoutSettings {
            idle_timeout: Some(timeout.to_string()),
        })
    };
    DestinationRule {
        metadata: request.metadata(&svc.meta.namespace, name),
        ..DestinationRule::new(
            name,
            DestinationRuleSpec {
                host: svc.fqdn(),
                traffic_policy: Some(TrafficPolicy {
                    connection_pool: Some(ConnectionPool {
                        tcp: idle(),
                        http: idle(),
                    }),
                    ..TrafficPolicy::default()
                }),
                ..DestinationRuleSpec::default()
            },
        )
    }
}

/// Every user DestinationRule whose host covers the Service: the one to patch first (exact
/// host, in the Service's namespace, oldest: the one whose traffic policy Istio keeps).
fn user_destination_rules<'a>(cx: &Context<'a>, svc: &ServiceInfo) -> Vec<&'a DestinationRuleInfo> {
    let fqdn = svc.fqdn();
    let mut found: Vec<&DestinationRuleInfo> = cx
        .snapshot
        .destination_rules
        .iter()
        .filter(|dr| hosts::matches(&hosts::resolve(&dr.spec.host, &dr.meta.namespace), &fqdn))
        .collect();
    let rank = |dr: &DestinationRuleInfo| {
        (
            hosts::resolve(&dr.spec.host, &dr.meta.namespace) != fqdn,
            dr.meta.namespace != svc.meta.namespace,
            dr.spec.workload_selector.is_some(),
        )
    };
    found.sort_by(|a, b| match rank(a).cmp(&rank(b)) {
        Ordering::Equal => oldest_first(&a.meta, &b.meta),
        other => other,
    });
    found
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn idle_only() -> crate::api::MeshReadinessSpec {
        let mut spec = all_kinds();
        spec.remediation.permissive_mtls = false;
        spec.remediation.reset_retries = false;
        spec
    }

    fn object(r: &Remediation) -> &DestinationRule {
        match &r.object {
            DesiredObject::DestinationRule(dr) => dr,
            other => panic!("not a DestinationRule: {other:?}"),
        }
    }

    #[test]
    fn idle_timeout_is_the_apps_minus_ten_percent_for_http_and_tcp() {
        let plan = plan_for(CART_WITH_TIMEOUT, &idle_only());
        assert_eq!(plan.len(), 1);
        let dr = &plan[0];
        assert_eq!(dr.state, RemediationState::Planned, "{}", dr.message);
        assert_eq!(
            (dr.namespace.as_str(), dr.name.as_str()),
            ("shop", "cart-meshreadiness")
        );
        let value = serde_json::to_value(object(dr)).expect("serializes");
        assert_eq!(value["apiVersion"], "networking.istio.io/v1");
        assert_eq!(
            value["spec"],
            serde_json::json!({
                "host": "cart.shop.svc.cluster.local",
                "trafficPolicy": {"connectionPool": {
                    "tcp": {"idleTimeout": "54s"},
                    "http": {"idleTimeout": "54s"},
                }},
            })
        );
        assert_eq!(
            dr.mitigates
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>(),
            ["MR601 on Service shop/cart"]
        );
    }

    #[test]
    fn follows_the_spec_timeout_and_formats_go_durations() {
        let mut spec = idle_only();
        spec.app_idle_timeouts = vec![crate::api::AppIdleTimeout {
            service: "cart".into(),
            timeout: std::time::Duration::from_secs(100).into(),
        }];
        let plan = plan_for(CART_WITH_TIMEOUT, &spec);
        let value = serde_json::to_value(object(&plan[0])).expect("serializes");
        assert_eq!(
            value["spec"]["trafficPolicy"]["connectionPool"]["http"]["idleTimeout"],
            "1m30s"
        );
        spec.app_idle_timeouts[0].timeout = std::time::Duration::from_millis(5500).into();
        let plan = plan_for(CART_WITH_TIMEOUT, &spec);
        let value = serde_json::to_value(object(&plan[0])).expect("serializes");
        assert_eq!(
            value["spec"]["trafficPolicy"]["connectionPool"]["tcp"]["idleTimeout"],
            "4500ms"
        );
    }

    #[test]
    fn not_for_an_inferred_keep_alive() {
        // Node.js's 5s is a guess from the image: an Info MR601, no DestinationRule.
        let node = CART_WITH_TIMEOUT
            .replace(
                ", annotations: {meshreadiness.io/app-idle-timeout: 60s}",
                "",
            )
            .replace("image: shop/cart", "image: node:20");
        let findings = crate::checks::testing::findings(&node);
        assert!(
            findings
                .iter()
                .any(|f| f.code == Code::MR601 && f.severity == Severity::Info)
        );
        assert!(plan_for(&node, &idle_only()).is_empty());
    }

    #[test]
    fn nothing_without_mr601() {
        let below = format!(
            "{CART_WITH_TIMEOUT}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: cart, namespace: shop}}\nspec: {{host: cart, trafficPolicy: {{connectionPool: {{http: {{idleTimeout: 50s}}}}}}}}\n"
        );
        assert!(plan_for(&below, &idle_only()).is_empty());
    }

    #[test]
    fn blocked_by_any_user_destination_rule_for_the_host_with_the_patch() {
        for (name, ns, host) in [
            ("cart", "shop", "cart"),
            ("cart", "shop", "cart.shop.svc.cluster.local"),
            ("all", "shop", "*.shop.svc.cluster.local"),
            ("cart-from-web", "web", "cart.shop.svc.cluster.local"),
        ] {
            let theirs = format!(
                "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{host: '{host}', trafficPolicy: {{connectionPool: {{http: {{idleTimeout: 2h}}}}}}}}\n"
            );
            let plan = plan_for(&format!("{CART_WITH_TIMEOUT}{theirs}"), &idle_only());
            assert_eq!(plan.len(), 1, "{host}");
            let dr = &plan[0];
            assert_eq!(dr.state, RemediationState::Blocked, "{host}");
            let fix = format!(
                r#"kubectl -n {ns} patch destinationrule {name} --type merge -p '{{"spec":{{"trafficPolicy":{{"connectionPool":{{"http":{{"idleTimeout":"54s"}},"tcp":{{"idleTimeout":"54s"}}}}}}}}}}'"#
            );
            assert!(dr.message.contains(&fix), "{}\n{fix}", dr.message);
            assert!(mitigated(&plan).is_empty());
        }
        // Another host's rule does not block.
        let other = "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web, namespace: shop}\nspec: {host: web}\n";
        let plan = plan_for(&format!("{CART_WITH_TIMEOUT}{other}"), &idle_only());
        assert_eq!(plan[0].state, RemediationState::Planned);
    }

    #[test]
    fn patch_targets_the_oldest_rule_and_names_the_others() {
        let theirs = "
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cart-b, namespace: shop, creationTimestamp: '2024-01-01T00:00:00Z'}
spec: {host: cart}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cart-a, namespace: shop, creationTimestamp: '2025-01-01T00:00:00Z'}
spec: {host: cart}
";
        let plan = plan_for(&format!("{CART_WITH_TIMEOUT}{theirs}"), &idle_only());
        let reason = &plan[0].message;
        assert!(
            reason.contains("DestinationRule shop/cart-b (also shop/cart-a)"),
            "{reason}"
        );
        assert!(reason.contains("patch destinationrule cart-b"), "{reason}");
    }

    #[test]
    fn blocked_when_no_timeout_can_be_below_the_apps() {
        let short = CART_WITH_TIMEOUT.replace("app-idle-timeout: 60s", "app-idle-timeout: 1s");
        let plan = plan_for(&short, &idle_only());
        assert_eq!(plan[0].state, RemediationState::Blocked);
        assert!(
            plan[0].message.contains("cannot go below 1s"),
            "{}",
            plan[0].message
        );
    }
}
