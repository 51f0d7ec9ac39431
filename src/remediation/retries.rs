//! MR701: a VirtualService `<service>-meshreadiness` whose retries cover connection resets
//! without replaying non-idempotent requests.
//!
//! Two HTTP routes to the Service: the first matches the idempotent methods (GET, HEAD, OPTIONS,
//! PUT, DELETE; one match entry each, `method.exact`) and retries on Istio's default conditions
//! plus `reset`; the catch-all retries on the defaults plus `reset-before-request`, which never
//! resends a request that may have reached the app. A retries block replaces Istio's defaults,
//! so both keep them. The destinations name no port: Istio then routes each of the Service's
//! ports to itself, where a fixed port would send every port's traffic to one.
//!
//! Never where a mesh-bound VirtualService of the user already routes the host (two for one host
//! are undefined in Istio): `Blocked`, with a JSON patch adding the condition to each of its
//! routes that lacks one.

use serde_json::{Value, json};

use crate::api::RemediationState;
use crate::api::istio::{
    Destination, HttpMatchRequest, HttpRetry, HttpRoute, HttpRouteDestination, StringMatch,
    VirtualService, VirtualServiceSpec,
};
use crate::checks::{Code, Context, virtual_services_for};
use crate::istio::retry::{DEFAULT_RETRY_ON, IDEMPOTENT_METHODS, RetryPolicy};
use crate::remediation::{
    DesiredObject, FindingKey, Kind, NAME_SUFFIX, PlanRequest, Reason, Remediation, patch,
};
use crate::snapshot::{ServiceInfo, VirtualServiceInfo};

/// The methods the first route matches (DESIGN.md section 4).
pub const RETRIED_METHODS: [&str; 5] = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"];
/// Added to the defaults for idempotent requests: retried after any reset.
const IDEMPOTENT_CONDITION: &str = "reset";
/// Added to the defaults for every other request: retried only if nothing was sent.
const SAFE_CONDITION: &str = "reset-before-request";

pub(super) fn plan(request: &PlanRequest, cx: &Context) -> Vec<Remediation> {
    let attempts = request.mesh_readiness.spec.remediation.retry_attempts;
    let mut out = Vec::new();
    for finding in request.findings_of(Code::MR701) {
        let Some(svc) = cx.snapshot.services.iter().find(|s| {
            s.meta.namespace == finding.object.namespace && s.meta.name == finding.object.name
        }) else {
            continue;
        };
        let name = format!("{}{NAME_SUFFIX}", svc.meta.name);
        let object = virtual_service(request, svc, &name, attempts);
        let theirs = virtual_services_for(cx, svc);
        let (state, reason, message) = if theirs.is_empty() {
            (
                RemediationState::Planned,
                Reason::MitigatesFindings,
                format!(
                    "MR701 on Service/{}: retries {} on {IDEMPOTENT_CONDITION} and every other \
                     method on {SAFE_CONDITION}, both beside Istio's default conditions, \
                     {attempts} attempts.",
                    svc.meta.name,
                    RETRIED_METHODS.join(", "),
                ),
            )
        } else {
            let fixes: Vec<String> = theirs
                .iter()
                .map(|vs| {
                    format!(
                        "For VirtualService {}/{}: {}",
                        vs.meta.namespace,
                        vs.meta.name,
                        user_patch(vs, attempts, &svc.fqdn())
                    )
                })
                .collect();
            (
                RemediationState::Blocked,
                Reason::UserObjectForHost,
                format!(
                    "MR701 on Service/{}: a mesh VirtualService of yours already routes {}, and \
                     a second one for the host is undefined in Istio. Patch yours so each route \
                     retries on resets, idempotent routes on {IDEMPOTENT_CONDITION}, the others \
                     on {SAFE_CONDITION}: {}",
                    svc.meta.name,
                    svc.fqdn(),
                    fixes.join(" ")
                ),
            )
        };
        out.push(Remediation {
            kind: Kind::VirtualService,
            namespace: svc.meta.namespace.clone(),
            name,
            state,
            reason,
            message,
            object: DesiredObject::VirtualService(object),
            mitigates: vec![FindingKey::from(finding)],
            expires: None,
        });
    }
    out
}

fn retry_on(condition: &str) -> String {
    format!("{DEFAULT_RETRY_ON},{condition}")
}

fn retries(attempts: i32, condition: &str) -> HttpRetry {
    HttpRetry {
        attempts,
        per_try_timeout: None,
        retry_on: Some(retry_on(condition)),
    }
}

fn routes(host: &str, attempts: i32) -> Vec<HttpRoute> {
    let to_service = vec![HttpRouteDestination {
        destination: Destination {
            host: host.to_string(),
            subset: None,
            port: None,
        },
        weight: None,
    }];
    let by_method = RETRIED_METHODS
        .iter()
        .map(|method| HttpMatchRequest {
            method: Some(StringMatch {
                exact: Some(method.to_string()),
                ..StringMatch::default()
            }),
        })
        .collect();
    vec![
        HttpRoute {
            name: Some("idempotent".to_string()),
            matches: by_method,
            route: to_service.clone(),
            retries: Some(retries(attempts, IDEMPOTENT_CONDITION)),
        },
        HttpRoute {
            name: Some("default".to_string()),
            matches: Vec::new(),
            route: to_service,
            retries: Some(retries(attempts, SAFE_CONDITION)),
        },
    ]
}

fn virtual_service(
    request: &PlanRequest,
    svc: &ServiceInfo,
    name: &str,
    attempts: i32,
) -> VirtualService {
    let host = svc.fqdn();
    VirtualService {
        metadata: request.metadata(&svc.meta.namespace, name),
        ..VirtualService::new(
            name,
            VirtualServiceSpec {
                http: routes(&host, attempts),
                hosts: vec![host],
                ..VirtualServiceSpec::default()
            },
        )
    }
}

/// Every match entry names an exact idempotent method (MR703's rule).
fn idempotent_only(route: &HttpRoute) -> bool {
    !route.matches.is_empty()
        && route.matches.iter().all(|m| {
            m.method
                .as_ref()
                .and_then(|s| s.exact.as_deref())
                .is_some_and(|method| {
                    IDEMPOTENT_METHODS.contains(&method.to_ascii_uppercase().as_str())
                })
        })
}

/// The JSON patch that makes every route of the user's VirtualService retry on resets, keeping
/// what it retries on now (the defaults when it sets nothing).
fn user_patch(vs: &VirtualServiceInfo, attempts: i32, host: &str) -> String {
    if vs.spec.http.is_empty() {
        let routes = serde_json::to_value(routes(host, attempts)).unwrap_or_default();
        let ops = [json!({"op": "add", "path": "/spec/http", "value": routes})];
        return patch::json(
            Kind::VirtualService,
            &vs.meta.namespace,
            &vs.meta.name,
            &ops,
        );
    }
    let ops: Vec<Value> = vs
        .spec
        .http
        .iter()
        .enumerate()
        .filter_map(|(i, route)| {
            let policy = RetryPolicy::of(route.retries.as_ref());
            if policy.covers_reset() {
                return None;
            }
            let condition = if idempotent_only(route) {
                IDEMPOTENT_CONDITION
            } else {
                SAFE_CONDITION
            };
            Some(match &policy {
                RetryPolicy::Explicit {
                    retry_on: Some(_), ..
                } => {
                    let now = route
                        .retries
                        .as_ref()
                        .and_then(|r| r.retry_on.as_deref())
                        .unwrap_or_default();
                    json!({"op": "add", "path": format!("/spec/http/{i}/retries/retryOn"),
                           "value": format!("{now},{condition}")})
                }
                RetryPolicy::Explicit { retry_on: None, .. } => {
                    json!({"op": "add", "path": format!("/spec/http/{i}/retries/retryOn"),
                           "value": retry_on(condition)})
                }
                RetryPolicy::Default | RetryPolicy::Disabled => {
                    json!({"op": "add", "path": format!("/spec/http/{i}/retries"),
                           "value": {"attempts": attempts, "retryOn": retry_on(condition)}})
                }
            })
        })
        .collect();
    patch::json(
        Kind::VirtualService,
        &vs.meta.namespace,
        &vs.meta.name,
        &ops,
    )
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn retries_only() -> crate::api::MeshReadinessSpec {
        let mut spec = all_kinds();
        spec.remediation.permissive_mtls = false;
        spec.remediation.idle_timeout = false;
        spec
    }

    fn object(r: &Remediation) -> serde_json::Value {
        match &r.object {
            DesiredObject::VirtualService(vs) => serde_json::to_value(vs).expect("serializes"),
            other => panic!("not a VirtualService: {other:?}"),
        }
    }

    const DEFAULTS: &str =
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

    #[test]
    fn two_routes_idempotent_methods_on_reset_the_rest_before_request() {
        let plan = plan_for(CART_WITH_TIMEOUT, &retries_only());
        assert_eq!(plan.len(), 1);
        let vs = &plan[0];
        assert_eq!(vs.state, RemediationState::Planned, "{}", vs.message);
        assert_eq!(
            (vs.namespace.as_str(), vs.name.as_str()),
            ("shop", "cart-meshreadiness")
        );
        let host = "cart.shop.svc.cluster.local";
        let destination = serde_json::json!([{"destination": {"host": host}}]);
        let methods: Vec<serde_json::Value> = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]
            .iter()
            .map(|m| serde_json::json!({"method": {"exact": m}}))
            .collect();
        let value = object(vs);
        assert_eq!(value["apiVersion"], "networking.istio.io/v1");
        assert_eq!(
            value["spec"],
            serde_json::json!({
                "hosts": [host],
                "http": [
                    {
                        "name": "idempotent",
                        "match": methods,
                        "route": destination,
                        "retries": {"attempts": 2, "retryOn": format!("{DEFAULTS},reset")},
                    },
                    {
                        "name": "default",
                        "route": destination,
                        "retries": {"attempts": 2, "retryOn": format!("{DEFAULTS},reset-before-request")},
                    },
                ],
            })
        );
    }

    #[test]
    fn the_planned_routes_pass_meshreadys_own_retry_checks() {
        // Read back as a user's object, the VirtualService raises no MR701, MR702 or MR703.
        let plan = plan_for(CART_WITH_TIMEOUT, &retries_only());
        let mut value = object(&plan[0]);
        value["metadata"]["labels"] = serde_json::json!({});
        let yaml = format!(
            "{CART_WITH_TIMEOUT}---\n{}",
            serde_json::to_string(&value).expect("json")
        );
        let findings = crate::checks::testing::findings(&yaml);
        let codes: Vec<Code> = findings.iter().map(|f| f.code).collect();
        for code in [Code::MR701, Code::MR702, Code::MR703] {
            assert!(!codes.contains(&code), "{code}: {findings:#?}");
        }
    }

    #[test]
    fn attempts_come_from_the_spec() {
        let mut spec = retries_only();
        spec.remediation.retry_attempts = 5;
        let value = object(&plan_for(CART_WITH_TIMEOUT, &spec)[0]);
        assert_eq!(value["spec"]["http"][0]["retries"]["attempts"], 5);
        assert_eq!(value["spec"]["http"][1]["retries"]["attempts"], 5);
    }

    #[test]
    fn nothing_without_mr701() {
        let tcp = CART_WITH_TIMEOUT.replace("name: http,", "name: tcp,");
        assert!(plan_for(&tcp, &retries_only()).is_empty());
    }

    #[test]
    fn blocked_by_a_users_mesh_virtual_service_with_a_patch_per_route() {
        let theirs = "
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart]
  http:
    - match: [{method: {exact: GET}}]
      route: [{destination: {host: cart}}]
    - route: [{destination: {host: cart}}]
      retries: {attempts: 3, retryOn: '5xx'}
    - route: [{destination: {host: cart}}]
      retries: {attempts: 3, retryOn: 'connect-failure'}
    - route: [{destination: {host: cart}}]
      retries: {attempts: 3}
";
        let plan = plan_for(&format!("{CART_WITH_TIMEOUT}{theirs}"), &retries_only());
        assert_eq!(plan.len(), 1);
        let vs = &plan[0];
        assert_eq!(vs.state, RemediationState::Blocked);
        let ops = serde_json::json!([
            {"op": "add", "path": "/spec/http/0/retries", "value": {"attempts": 2, "retryOn": format!("{DEFAULTS},reset")}},
            {"op": "add", "path": "/spec/http/2/retries/retryOn", "value": "connect-failure,reset-before-request"},
            {"op": "add", "path": "/spec/http/3/retries/retryOn", "value": format!("{DEFAULTS},reset-before-request")},
        ]);
        let fix = format!("kubectl -n shop patch virtualservice cart --type json -p '{ops}'");
        assert!(vs.message.contains(&fix), "{}\n{fix}", vs.message);
        assert!(mitigated(&plan).is_empty());
    }

    #[test]
    fn a_gateway_only_virtual_service_does_not_block() {
        let gateway = "
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart-ingress, namespace: shop}
spec: {hosts: [cart], gateways: [shop/ingress], http: [{route: [{destination: {host: cart}}]}]}
";
        let plan = plan_for(&format!("{CART_WITH_TIMEOUT}{gateway}"), &retries_only());
        assert_eq!(plan[0].state, RemediationState::Planned);
        // Bound to the mesh as well: it blocks.
        let both = gateway.replace("gateways: [shop/ingress]", "gateways: [shop/ingress, mesh]");
        let plan = plan_for(&format!("{CART_WITH_TIMEOUT}{both}"), &retries_only());
        assert_eq!(plan[0].state, RemediationState::Blocked);
    }

    #[test]
    fn blocked_by_a_wildcard_or_other_namespace_virtual_service() {
        for (ns, host) in [
            ("shop", "*.shop.svc.cluster.local"),
            ("web", "cart.shop.svc.cluster.local"),
        ] {
            let theirs = format!(
                "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: theirs, namespace: {ns}}}\nspec: {{hosts: ['{host}'], http: [{{route: [{{destination: {{host: '{host}'}}}}]}}]}}\n"
            );
            let plan = plan_for(&format!("{CART_WITH_TIMEOUT}{theirs}"), &retries_only());
            assert_eq!(plan[0].state, RemediationState::Blocked, "{ns} {host}");
            assert!(
                plan[0]
                    .message
                    .contains(&format!("kubectl -n {ns} patch virtualservice theirs"))
            );
        }
    }
}
