//! Host names: short names resolve in the object's namespace, as Istio resolves them.

pub const CLUSTER_DOMAIN: &str = "cluster.local";

pub fn service_fqdn(name: &str, namespace: &str) -> String {
    // Pushed into a String of the right size rather than formatted: every Service's host is
    // made several times per run, and `format!` grew the String piece by piece.
    let mut fqdn = String::with_capacity(
        name.len() + namespace.len() + ".svc.".len() + 1 + CLUSTER_DOMAIN.len(),
    );
    fqdn.push_str(name);
    fqdn.push('.');
    fqdn.push_str(namespace);
    fqdn.push_str(".svc.");
    fqdn.push_str(CLUSTER_DOMAIN);
    fqdn
}

/// The fully qualified form of a host written in an object in `namespace`, as istiod resolves
/// it (`ResolveShortnameToFQDN`): only a name without dots is expanded, `reviews` ->
/// `reviews.<namespace>.svc.cluster.local`; anything with a dot is taken as written.
pub fn resolve(host: &str, namespace: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    if host == "*" || host.contains('.') || host.parse::<std::net::IpAddr>().is_ok() {
        return host;
    }
    service_fqdn(&host, namespace)
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
        // Names with a dot are not expanded, even `name.namespace`: Istio takes them as written.
        assert_eq!(resolve("reviews.other", "shop"), "reviews.other");
        assert_eq!(resolve("*", "shop"), "*");
        assert_eq!(resolve("10.0.0.1", "shop"), "10.0.0.1");
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
