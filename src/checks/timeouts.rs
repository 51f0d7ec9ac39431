//! 6xx: does the proxy give up idle connections before the app does?
//!
//! When the app closes an idle keep-alive connection while Envoy still holds it in its pool, the
//! next request on it fails with 503 and response flag `UC`. Envoy must close first: its idle
//! timeout has to be below the app's keep-alive.

use std::time::Duration;

use super::context::app_containers;
use super::{Code, Context, Findings, Severity};
use crate::api::keys;
use crate::istio::duration::{format_duration, parse_duration};
use crate::istio::hosts;
use crate::snapshot::{DestinationRuleInfo, ServiceInfo};

/// Istio's idle timeout for upstream connections when no DestinationRule sets one.
pub const DEFAULT_PROXY_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Keep-alive defaults of runtimes recognised by image repository (docs/checks.md, MR601).
pub const RUNTIME_KEEP_ALIVES: [(&str, Duration); 1] = [
    // Node.js http.Server keepAliveTimeout.
    ("node", Duration::from_secs(5)),
];

/// Where the app's keep-alive came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeepAliveSource {
    Spec,
    Annotation,
    /// Inferred from a container image of a known runtime.
    Runtime(String),
}

/// An app keep-alive not above the proxy's idle timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub app: Duration,
    pub source: KeepAliveSource,
    pub proxy: Duration,
    /// The DestinationRule that sets the proxy's timeout, if any.
    pub destination_rule: Option<String>,
    pub severity: Severity,
}

/// The idle timeout meshready recommends (and its remediation writes): the app's timeout minus
/// max(1s, 10%), never below 1s.
pub fn recommended_idle_timeout(app: Duration) -> Duration {
    let margin = (app / 10).max(Duration::from_secs(1));
    app.saturating_sub(margin).max(Duration::from_secs(1))
}

/// The repository of an image reference: `docker.io/library/node:20-alpine` -> `node`.
fn image_repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

fn app_keep_alive(cx: &Context, svc: &ServiceInfo) -> Option<(Duration, KeepAliveSource)> {
    // The key is owned: build it only when the request names some Services.
    let spec = &cx.request.app_idle_timeouts;
    if !spec.is_empty() {
        let key = (svc.meta.namespace.clone(), svc.meta.name.clone());
        if let Some(timeout) = spec.get(&key) {
            return Some((*timeout, KeepAliveSource::Spec));
        }
    }
    if let Some(timeout) = svc
        .meta
        .annotations
        .get(keys::APP_IDLE_TIMEOUT)
        .and_then(|t| parse_duration(t))
    {
        return Some((timeout, KeepAliveSource::Annotation));
    }
    cx.selected_by(svc).into_iter().find_map(|(_, w)| {
        app_containers(w).find_map(|c| {
            let repository = image_repository(c.image.as_deref()?);
            RUNTIME_KEEP_ALIVES
                .iter()
                .find(|(runtime, _)| *runtime == repository)
                .map(|(runtime, timeout)| (*timeout, KeepAliveSource::Runtime(runtime.to_string())))
        })
    })
}

/// The user's DestinationRule for a Service: exact host before wildcard, the Service's own
/// namespace first (as a caller there would see it).
pub fn destination_rule_for<'a>(
    cx: &Context<'a>,
    svc: &ServiceInfo,
) -> Option<&'a DestinationRuleInfo> {
    let fqdn = svc.fqdn();
    let mut candidates: Vec<&DestinationRuleInfo> = cx
        .destination_rules_for(&fqdn)
        .into_iter()
        .filter(|dr| dr.spec.workload_selector.is_none())
        .collect();
    candidates.sort_by_key(|dr| {
        (
            hosts::resolve(&dr.spec.host, &dr.meta.namespace) != fqdn,
            dr.meta.namespace != svc.meta.namespace,
        )
    });
    candidates.into_iter().next()
}

/// The idle timeout a DestinationRule sets: `http.idleTimeout`, else `tcp.idleTimeout`.
fn configured_idle_timeout(dr: &DestinationRuleInfo) -> Option<Duration> {
    let pool = dr.spec.traffic_policy.as_ref()?.connection_pool.as_ref()?;
    let http = pool.http.as_ref().and_then(|h| h.idle_timeout.as_deref());
    let tcp = pool.tcp.as_ref().and_then(|t| t.idle_timeout.as_deref());
    http.or(tcp).and_then(parse_duration)
}

/// MR601's verdict for one Service (also read by MR701's severity and by the remediation planner).
pub fn keep_alive_mismatch(cx: &Context, svc: &ServiceInfo) -> Option<Mismatch> {
    let (app, source) = app_keep_alive(cx, svc)?;
    // Only a DestinationRule that sets a timeout is named as its source.
    let dr = destination_rule_for(cx, svc).and_then(|dr| Some((dr, configured_idle_timeout(dr)?)));
    let proxy = dr.map_or(DEFAULT_PROXY_IDLE_TIMEOUT, |(_, timeout)| timeout);
    (app <= proxy).then(|| Mismatch {
        app,
        severity: match source {
            KeepAliveSource::Runtime(_) => Severity::Info,
            _ => Severity::Warning,
        },
        source,
        proxy,
        destination_rule: dr.map(|(d, _)| format!("{}/{}", d.meta.namespace, d.meta.name)),
    })
}

/// [`keep_alive_mismatch`] for each of `cx.services()`, in order: MR601 reports them and MR701
/// reads them for its severity, so they are worked out once.
pub(super) fn mismatches(cx: &Context) -> Vec<Option<Mismatch>> {
    cx.services()
        .map(|svc| keep_alive_mismatch(cx, svc))
        .collect()
}

/// `mismatches`: from [`mismatches`].
pub(super) fn check(cx: &Context, mismatches: &[Option<Mismatch>], out: &mut Findings) {
    for (svc, m) in cx.services().zip(mismatches) {
        let Some(m) = m else {
            continue;
        };
        let source = match &m.source {
            KeepAliveSource::Spec => "spec.appIdleTimeouts".to_string(),
            KeepAliveSource::Annotation => format!("annotation {}", keys::APP_IDLE_TIMEOUT),
            KeepAliveSource::Runtime(r) => format!("the default of the {r} runtime its image runs"),
        };
        let proxy = match &m.destination_rule {
            Some(dr) => format!("{} set by DestinationRule {dr}", format_duration(m.proxy)),
            None => format!("{} (Istio's default)", format_duration(m.proxy)),
        };
        let name = &svc.meta.name;
        let recommended = format_duration(recommended_idle_timeout(m.app));
        out.add(
            Code::MR601,
            m.severity,
            "Service",
            &svc.meta,
            format!(
                "Service {name}: the app closes idle connections after {} ({source}), not later than \
                 the proxy's idle timeout {proxy}, so Envoy reuses connections the app already closed \
                 and requests intermittently fail with 503 UC. Fix: a DestinationRule for {} with \
                 trafficPolicy.connectionPool.http.idleTimeout: {recommended} and \
                 connectionPool.tcp.idleTimeout: {recommended} (or raise the app's keep-alive).",
                format_duration(m.app),
                svc.fqdn(),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{findings, of, snapshot};
    use crate::checks::{self, CheckRequest};

    fn service(annotation: &str) -> String {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: cart, namespace: shop{annotation}}}\nspec: {{selector: {{app: cart}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n"
        )
    }

    fn deployment(image: &str) -> String {
        format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: cart, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: cart}}}}\n  template:\n    metadata: {{labels: {{app: cart}}}}\n    spec: {{containers: [{{name: app, image: '{image}', ports: [{{containerPort: 8080}}]}}]}}\n"
        )
    }

    fn dr(http: &str, tcp: &str) -> String {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: cart, namespace: shop}}\nspec: {{host: cart, trafficPolicy: {{connectionPool: {{http: {{{http}}}, tcp: {{{tcp}}}}}}}}}\n"
        )
    }

    #[test]
    fn recommended_is_app_minus_ten_percent_or_a_second() {
        assert_eq!(
            recommended_idle_timeout(Duration::from_secs(60)),
            Duration::from_secs(54)
        );
        assert_eq!(
            recommended_idle_timeout(Duration::from_secs(5)),
            Duration::from_secs(4)
        );
        assert_eq!(
            recommended_idle_timeout(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        assert_eq!(
            recommended_idle_timeout(Duration::from_millis(1500)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn image_repositories() {
        assert_eq!(image_repository("node:20-alpine"), "node");
        assert_eq!(
            image_repository("docker.io/library/node@sha256:abc"),
            "node"
        );
        assert_eq!(
            image_repository("registry:5000/team/node-app:1"),
            "node-app"
        );
    }

    #[test]
    fn annotation_below_default_idle_fires_warning() {
        let f = findings(&format!(
            "{}{}",
            service(", annotations: {meshreadiness.io/app-idle-timeout: 60s}"),
            deployment("shop/cart:1")
        ));
        let mr601 = of(&f, Code::MR601);
        assert_eq!(mr601.len(), 1);
        assert_eq!(mr601[0].severity, Severity::Warning);
        assert!(
            mr601[0].message.contains("idleTimeout: 54s"),
            "{}",
            mr601[0].message
        );
    }

    #[test]
    fn destination_rule_below_keep_alive_silences() {
        let base = format!(
            "{}{}",
            service(", annotations: {meshreadiness.io/app-idle-timeout: 60s}"),
            deployment("shop/cart:1")
        );
        assert!(
            of(
                &findings(&format!("{base}{}", dr("idleTimeout: 50s", ""))),
                Code::MR601
            )
            .is_empty()
        );
        // tcp.idleTimeout is used when http sets none.
        assert!(
            of(
                &findings(&format!("{base}{}", dr("", "idleTimeout: 30s"))),
                Code::MR601
            )
            .is_empty()
        );
        // Equal is not below.
        assert_eq!(
            of(
                &findings(&format!("{base}{}", dr("idleTimeout: 60s", ""))),
                Code::MR601
            )
            .len(),
            1
        );
    }

    #[test]
    fn spec_timeouts_win_and_runtime_inference_is_info() {
        let snap = snapshot(&format!("{}{}", service(""), deployment("node:20-alpine")));
        let inferred = checks::run(
            &snap,
            &CheckRequest {
                namespaces: ["shop".to_string()].into(),
                ..Default::default()
            },
        );
        let mr601 = of(&inferred, Code::MR601);
        assert_eq!(mr601.len(), 1);
        assert_eq!(mr601[0].severity, Severity::Info);
        let request = CheckRequest {
            namespaces: ["shop".to_string()].into(),
            app_idle_timeouts: [(
                ("shop".to_string(), "cart".to_string()),
                Duration::from_secs(30),
            )]
            .into(),
            ..Default::default()
        };
        let spec = checks::run(&snap, &request);
        assert_eq!(of(&spec, Code::MR601)[0].severity, Severity::Warning);
        // An unknown runtime and no timeout: nothing to compare.
        assert!(
            of(
                &findings(&format!("{}{}", service(""), deployment("python:3"))),
                Code::MR601
            )
            .is_empty()
        );
    }
}
