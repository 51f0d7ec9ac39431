//! Host names: short names resolve in the object's namespace, as Istio resolves them.

pub const CLUSTER_DOMAIN: &str = "cluster.local";

pub fn service_fqdn(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}.svc.{CLUSTER_DOMAIN}")
}

/// The fully qualified form of a host written in an object in `namespace`:
/// `reviews` -> `reviews.<namespace>.svc.cluster.local`, `reviews.shop` ->
/// `reviews.shop.svc.cluster.local`; names with more parts are kept as written.
pub fn resolve(host: &str, namespace: &str) -> String {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    if host.starts_with('*') {
        return host;
    }
    match host.matches('.').count() {
        0 => service_fqdn(&host, namespace),
        1 => format!("{host}.svc.{CLUSTER_DOMAIN}"),
        2 if host.ends_with(".svc") => format!("{host}.{CLUSTER_DOMAIN}"),
        _ => host,
    }
}

/// Whether a (resolved) host pattern covers a fully qualified service host. `*` and
/// `*.suffix` wildcards match as Istio matches them.
pub fn matches(pattern: &str, fqdn: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => fqdn.ends_with(suffix),
        None => pattern == fqdn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_resolve_in_own_namespace() {
        assert_eq!(resolve("reviews", "shop"), "reviews.shop.svc.cluster.local");
        assert_eq!(
            resolve("reviews.other", "shop"),
            "reviews.other.svc.cluster.local"
        );
        assert_eq!(
            resolve("reviews.other.svc", "shop"),
            "reviews.other.svc.cluster.local"
        );
        assert_eq!(
            resolve("Reviews.shop.svc.cluster.local", "x"),
            "reviews.shop.svc.cluster.local"
        );
        assert_eq!(resolve("api.example.com", "shop"), "api.example.com");
    }

    #[test]
    fn wildcards() {
        assert!(matches(
            "*.shop.svc.cluster.local",
            "web.shop.svc.cluster.local"
        ));
        assert!(!matches(
            "*.shop.svc.cluster.local",
            "web.other.svc.cluster.local"
        ));
        assert!(matches("*", "web.shop.svc.cluster.local"));
        assert!(!matches(
            "web.shop.svc.cluster.local",
            "api.shop.svc.cluster.local"
        ));
    }
}
