//! 7xx: do retries cover the connection resets that idle-timeout races and restarts cause,
//! without dropping Istio's defaults or replaying non-idempotent requests?

use super::timeouts::Mismatch;
use super::{Code, Context, Findings, Severity};
use crate::api::istio::HttpRoute;
use crate::checks::listed;
use crate::istio::retry::{IDEMPOTENT_METHODS, RetryPolicy};
use crate::snapshot::{ServiceInfo, VirtualServiceInfo};
use std::fmt::Write as _;

/// EnvoyFilter targets that change listeners, where resets become likelier.
const LISTENER_PATCHES: [&str; 3] = ["LISTENER", "NETWORK_FILTER", "FILTER_CHAIN"];

/// `mismatches`: MR601's verdict for each of `cx.services()`, in order (MR701's severity).
pub(super) fn check(cx: &Context, mismatches: &[Option<Mismatch>], out: &mut Findings) {
    missing_reset(cx, mismatches, out);
    for vs in cx.virtual_services() {
        replaces_defaults(cx, vs, out);
        non_idempotent(vs, out);
    }
}

/// Bound to the sidecars (the `mesh` gateway), where service-to-service retries happen.
pub fn is_mesh_bound(vs: &VirtualServiceInfo) -> bool {
    vs.spec.gateways.is_empty() || vs.spec.gateways.iter().any(|g| g == "mesh")
}

/// Mesh-bound VirtualServices whose hosts include the Service.
pub fn virtual_services_for<'a>(
    cx: &Context<'a>,
    svc: &ServiceInfo,
) -> Vec<&'a VirtualServiceInfo> {
    cx.virtual_services_for_host(&svc.fqdn())
}

fn is_http_host(svc: &ServiceInfo) -> bool {
    svc.ports
        .iter()
        .any(|p| p.declared.protocol().is_some_and(|p| p.is_http()))
}

fn is_grpc_host(svc: &ServiceInfo) -> bool {
    svc.ports
        .iter()
        .any(|p| p.declared.protocol().is_some_and(|p| p.is_grpc()))
}

fn listener_envoy_filter(cx: &Context, namespace: &str) -> Option<String> {
    cx.snapshot
        .envoy_filters
        .iter()
        .filter(|ef| {
            ef.meta.namespace == namespace || ef.meta.namespace == cx.snapshot.mesh.root_namespace
        })
        .find(|ef| {
            ef.spec
                .config_patches
                .iter()
                .any(|p| LISTENER_PATCHES.contains(&p.apply_to.as_str()))
        })
        .map(|ef| format!("{}/{}", ef.meta.namespace, ef.meta.name))
}

fn missing_reset(cx: &Context, mismatches: &[Option<Mismatch>], out: &mut Findings) {
    for (svc, mismatch) in cx
        .services()
        .zip(mismatches)
        .filter(|(s, _)| is_http_host(s))
    {
        let vss = virtual_services_for(cx, svc);
        let routes: Vec<&HttpRoute> = vss.iter().flat_map(|vs| vs.spec.http.iter()).collect();
        if !routes.is_empty()
            && routes
                .iter()
                .all(|r| RetryPolicy::of(r.retries.as_ref()).covers_reset())
        {
            continue;
        }
        let mismatch = mismatch
            .as_ref()
            .filter(|m| m.severity == Severity::Warning);
        let envoy_filter = listener_envoy_filter(cx, &svc.meta.namespace);
        let severity = if mismatch.is_some() || envoy_filter.is_some() {
            Severity::Warning
        } else {
            Severity::Info
        };
        // Written into one String: thousands of Services get this message.
        let mut message = String::with_capacity(640);
        let _ = write!(message, "Service {}: ", svc.meta.name);
        if vss.is_empty() {
            message.push_str("no VirtualService routes it, so Istio's default retryOn (connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes) applies");
        } else {
            let names: Vec<&str> = vss.iter().map(|v| v.meta.name.as_str()).collect();
            let _ = write!(
                message,
                "VirtualService {} has routes whose retries do not include reset",
                listed(&names, ", ")
            );
        }
        message.push_str(
            ", so a request on a connection the app reset fails with 503 \
             (\"upstream connect error or disconnect/reset before headers\", flag UC/URX).",
        );
        match (mismatch, &envoy_filter) {
            (Some(_), _) => message.push_str(" Its keep-alive is not above the proxy idle timeout (MR601), so resets will happen."),
            (None, Some(ef)) => {
                let _ = write!(
                    message,
                    " EnvoyFilter {ef} patches listeners, which makes resets likelier."
                );
            }
            (None, None) => {}
        }
        message.push_str(
            " Fix: retries with retryOn: connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes,reset \
             on routes limited to idempotent methods, and reset-before-request on the others.",
        );
        out.add(Code::MR701, severity, "Service", &svc.meta, message);
    }
}

fn route_name(route: &HttpRoute, index: usize) -> String {
    route
        .name
        .clone()
        .unwrap_or_else(|| format!("http[{index}]"))
}

fn replaces_defaults(cx: &Context, vs: &VirtualServiceInfo, out: &mut Findings) {
    let mut problems = Vec::new();
    for (i, route) in vs.spec.http.iter().enumerate() {
        let grpc = route
            .route
            .iter()
            .flat_map(|d| cx.services_for_host(&d.destination.host, &vs.meta.namespace))
            .chain(
                vs.spec
                    .hosts
                    .iter()
                    .flat_map(|h| cx.services_for_host(h, &vs.meta.namespace)),
            )
            .any(is_grpc_host);
        let dropped = RetryPolicy::of(route.retries.as_ref()).dropped_defaults(grpc);
        if !dropped.is_empty() {
            problems.push(format!(
                "route {} drops {}",
                route_name(route, i),
                listed(&dropped, ", ")
            ));
        }
    }
    if problems.is_empty() {
        return;
    }
    out.add(
        Code::MR702,
        Code::MR702.default_severity(),
        "VirtualService",
        &vs.meta,
        format!(
            "VirtualService {}: {}. A retries block replaces Istio's default retry policy instead of \
             adding to it, so requests that hit a refused or failed connection are no longer \
             retried (503 UF/URX). Fix: list the defaults in retryOn too, e.g. retryOn: \
             connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes,reset.",
            vs.meta.name,
            listed(&problems, "; "),
        ),
    );
}

/// Every match entry pins an exact idempotent method.
fn limited_to_idempotent(route: &HttpRoute) -> bool {
    !route.matches.is_empty()
        && route.matches.iter().all(|m| {
            m.method
                .as_ref()
                .and_then(|method| method.exact.as_deref())
                .is_some_and(|method| {
                    IDEMPOTENT_METHODS.contains(&method.to_ascii_uppercase().as_str())
                })
        })
}

fn non_idempotent(vs: &VirtualServiceInfo, out: &mut Findings) {
    let risky: Vec<String> = vs
        .spec
        .http
        .iter()
        .enumerate()
        .filter(|(_, route)| {
            RetryPolicy::of(route.retries.as_ref()).replays_on_reset()
                && !limited_to_idempotent(route)
        })
        .map(|(i, route)| route_name(route, i))
        .collect();
    if risky.is_empty() {
        return;
    }
    out.add(
        Code::MR703,
        Code::MR703.default_severity(),
        "VirtualService",
        &vs.meta,
        format!(
            "VirtualService {}: route(s) {} retry on reset, 5xx or gateway-error for every method, so a POST whose \
             response was lost may run twice. Fix: match idempotent methods (GET, HEAD, OPTIONS, PUT, \
             DELETE) in a route with those retries, and use reset-before-request in the catch-all route.",
            vs.meta.name,
            listed(&risky, ", "),
        ),
    );
}

#[cfg(test)]
mod tests {
    use crate::checks::testing::{findings, objects, of};
    use crate::checks::{Code, Severity};

    const SERVICE: &str = "
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec: {selector: {app: cart}, ports: [{name: http, port: 80}]}
";

    fn vs(name: &str, http: &str) -> String {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  hosts: [cart]\n  http: {http}\n"
        )
    }

    #[test]
    fn mr701_without_reset_retries() {
        let f = findings(SERVICE);
        assert_eq!(objects(&f, Code::MR701), vec!["Service/cart"]);
        assert_eq!(of(&f, Code::MR701)[0].severity, Severity::Info);
        let partial = format!(
            "{SERVICE}{}",
            vs(
                "cart",
                "[{match: [{method: {exact: GET}}], route: [{destination: {host: cart}}], retries: {attempts: 2, retryOn: 'reset,connect-failure,refused-stream'}}, {route: [{destination: {host: cart}}]}]"
            )
        );
        assert_eq!(
            objects(&findings(&partial), Code::MR701),
            vec!["Service/cart"]
        );
        let tcp = SERVICE.replace("name: http", "name: tcp");
        assert!(objects(&findings(&tcp), Code::MR701).is_empty());
    }

    #[test]
    fn mr701_silent_when_every_route_retries_resets() {
        let covered = format!(
            "{SERVICE}{}",
            vs(
                "cart",
                "[{match: [{method: {exact: GET}}], route: [{destination: {host: cart}}], retries: {attempts: 2, retryOn: 'connect-failure,refused-stream,reset'}}, {route: [{destination: {host: cart}}], retries: {attempts: 2, retryOn: 'connect-failure,refused-stream,reset-before-request'}}]"
            )
        );
        assert!(objects(&findings(&covered), Code::MR701).is_empty());
    }

    #[test]
    fn mr701_warning_with_mr601_or_listener_envoy_filter() {
        let mismatch = SERVICE.replace(
            "namespace: shop}",
            "namespace: shop, annotations: {meshreadiness.io/app-idle-timeout: 30s}}",
        );
        assert_eq!(
            of(&findings(&mismatch), Code::MR701)[0].severity,
            Severity::Warning
        );
        let filter = format!(
            "{SERVICE}---\napiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {{name: tune, namespace: istio-system}}\nspec: {{configPatches: [{{applyTo: NETWORK_FILTER}}]}}\n"
        );
        assert_eq!(
            of(&findings(&filter), Code::MR701)[0].severity,
            Severity::Warning
        );
        let cluster_filter = filter.replace("NETWORK_FILTER", "CLUSTER");
        assert_eq!(
            of(&findings(&cluster_filter), Code::MR701)[0].severity,
            Severity::Info
        );
    }

    #[test]
    fn mr702_retry_on_dropping_defaults() {
        let dropped = format!(
            "{SERVICE}{}",
            vs(
                "cart",
                "[{route: [{destination: {host: cart}}], retries: {attempts: 3, retryOn: retriable-status-codes}}]"
            )
        );
        let f = findings(&dropped);
        assert_eq!(objects(&f, Code::MR702), vec!["VirtualService/cart"]);
        assert!(
            of(&f, Code::MR702)[0]
                .message
                .contains("connect-failure, refused-stream")
        );
        for ok in [
            "[{route: [{destination: {host: cart}}], retries: {attempts: 3}}]",
            "[{route: [{destination: {host: cart}}], retries: {attempts: 0, retryOn: gateway-error}}]",
            "[{route: [{destination: {host: cart}}], retries: {attempts: 3, retryOn: '5xx'}}]",
        ] {
            assert!(
                objects(
                    &findings(&format!("{SERVICE}{}", vs("cart", ok))),
                    Code::MR702
                )
                .is_empty(),
                "{ok}"
            );
        }
        // gRPC hosts also need unavailable and cancelled.
        let grpc = SERVICE.replace("name: http", "name: grpc");
        let five = format!(
            "{grpc}{}",
            vs(
                "cart",
                "[{route: [{destination: {host: cart}}], retries: {attempts: 3, retryOn: '5xx'}}]"
            )
        );
        assert_eq!(
            objects(&findings(&five), Code::MR702),
            vec!["VirtualService/cart"]
        );
    }

    #[test]
    fn mr703_reset_retries_on_non_idempotent_routes() {
        let all = format!(
            "{SERVICE}{}",
            vs(
                "cart",
                "[{route: [{destination: {host: cart}}], retries: {attempts: 2, retryOn: 'connect-failure,refused-stream,reset'}}]"
            )
        );
        assert_eq!(
            objects(&findings(&all), Code::MR703),
            vec!["VirtualService/cart"]
        );
        let post = format!(
            "{SERVICE}{}",
            vs(
                "cart",
                "[{match: [{method: {exact: GET}}, {method: {exact: POST}}], route: [{destination: {host: cart}}], retries: {attempts: 2, retryOn: '5xx'}}]"
            )
        );
        assert_eq!(
            objects(&findings(&post), Code::MR703),
            vec!["VirtualService/cart"]
        );
        let safe = format!(
            "{SERVICE}{}",
            vs(
                "cart",
                "[{match: [{method: {exact: GET}}, {method: {exact: PUT}}], route: [{destination: {host: cart}}], retries: {attempts: 2, retryOn: 'connect-failure,refused-stream,reset'}}, {route: [{destination: {host: cart}}], retries: {attempts: 2, retryOn: 'connect-failure,refused-stream,reset-before-request'}}]"
            )
        );
        assert!(objects(&findings(&safe), Code::MR703).is_empty());
        let prefix = format!(
            "{SERVICE}{}",
            vs(
                "cart",
                "[{match: [{method: {prefix: G}}], route: [{destination: {host: cart}}], retries: {attempts: 2, retryOn: 'reset'}}]"
            )
        );
        assert_eq!(
            objects(&findings(&prefix), Code::MR703),
            vec!["VirtualService/cart"]
        );
    }
}
