//! What the injector and the proxy will do for one pod template: injection, probe rewrite,
//! traffic capture, native sidecars, start-up and shutdown ordering.

use crate::api::keys;
use crate::istio::mesh::{InjectorValues, MeshConfig, ProxyConfig};
use crate::snapshot::{Injection, Labels, PodState, PodTemplate};

/// A boolean annotation or label, read as leniently as Istio reads them (Go's `ParseBool`
/// spellings plus the injector's yes/no/on/off).
fn flag(map: &Labels, key: &str) -> Option<bool> {
    const TRUE: [&str; 7] = ["true", "t", "1", "yes", "y", "on", "enabled"];
    const FALSE: [&str; 7] = ["false", "f", "0", "no", "n", "off", "disabled"];
    let value = map.get(key)?.trim();
    let is = |words: &[&str]| words.iter().any(|w| value.eq_ignore_ascii_case(w));
    if is(&TRUE) {
        Some(true)
    } else if is(&FALSE) {
        Some(false)
    } else {
        None
    }
}

/// Whether the injector will add a proxy to pods of this template.
///
/// `istio-injection=disabled` wins over everything; an enabled namespace injects unless the pod
/// opts out (label, or the legacy annotation); an unlabelled namespace injects only pods that
/// opt in (label or a revision label). `hostNetwork` pods are never injected.
pub fn will_inject(namespace: Injection, template: &PodTemplate) -> bool {
    InjectionAsk::of(template).answer(namespace)
}

/// What a pod template says to the injector, read once from its labels and annotations and
/// answered for a namespace by [`InjectionAsk::answer`] as often as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InjectionAsk {
    host_network: bool,
    /// `sidecar.istio.io/inject`, the label before the legacy annotation.
    opt: Option<bool>,
    revision: bool,
}

impl InjectionAsk {
    pub fn of(template: &PodTemplate) -> InjectionAsk {
        InjectionAsk {
            host_network: template.spec.host_network == Some(true),
            opt: flag(&template.labels, keys::SIDECAR_INJECT)
                .or_else(|| flag(&template.annotations, keys::SIDECAR_INJECT)),
            revision: template.labels.contains_key(keys::ISTIO_REV),
        }
    }

    /// [`will_inject`] in a namespace that stands so.
    pub fn answer(self, namespace: Injection) -> bool {
        if self.host_network {
            return false;
        }
        match namespace {
            Injection::Disabled => false,
            Injection::Enabled => self.opt != Some(false),
            Injection::Unlabelled | Injection::Ambient => {
                self.opt == Some(true) || (self.opt.is_none() && self.revision)
            }
        }
    }
}

/// Whether httpGet/grpc probes are rewritten to the agent: the pod annotation wins, then the
/// injector's `rewriteAppHTTPProbe`, else on.
pub fn probes_rewritten(template: &PodTemplate, injector: &InjectorValues) -> bool {
    flag(&template.annotations, keys::REWRITE_APP_HTTP_PROBERS)
        .unwrap_or_else(|| injector.rewrite_app_http_probe())
}

/// Native sidecars, on evidence only: the template annotation, a pod whose proxy already runs as
/// a native sidecar, else the cluster-wide setting.
pub fn native_sidecars(template: &PodTemplate, pods: &[PodState], cluster_default: bool) -> bool {
    flag(&template.annotations, keys::NATIVE_SIDECAR)
        .unwrap_or_else(|| pods.iter().any(|p| p.native_sidecar) || cluster_default)
}

fn port_list(value: Option<&String>) -> Vec<String> {
    value
        .map(|v| {
            v.split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Ports the injector always excludes from inbound capture (`istio-iptables -d`): Prometheus
/// stats, the health port and the agent's status port.
pub const NEVER_CAPTURED_INBOUND: [i32; 3] = [15020, 15021, 15090];

/// Whether inbound traffic to a container port goes through the proxy (not excluded from capture).
pub fn inbound_captured(template: &PodTemplate, port: i32) -> bool {
    if NEVER_CAPTURED_INBOUND.contains(&port) {
        return false;
    }
    let port = port.to_string();
    if port_list(template.annotations.get(keys::EXCLUDE_INBOUND_PORTS)).contains(&port) {
        return false;
    }
    match template.annotations.get(keys::INCLUDE_INBOUND_PORTS) {
        None => true,
        Some(include) if include.trim() == "*" => true,
        Some(include) => port_list(Some(include)).contains(&port),
    }
}

/// Whether some outbound traffic bypasses the proxy (excluded ports or IP ranges), which is how an
/// init container can reach the network before the proxy runs.
pub fn has_outbound_exclusion(template: &PodTemplate) -> bool {
    let set = |key| {
        template
            .annotations
            .get(key)
            .is_some_and(|v: &String| !v.trim().is_empty())
    };
    set(keys::EXCLUDE_OUTBOUND_PORTS)
        || set(keys::EXCLUDE_OUTBOUND_IP_RANGES)
        || template
            .annotations
            .get(keys::INCLUDE_OUTBOUND_IP_RANGES)
            .is_some_and(|v| v.trim() != "*")
}

/// The proxy config in force for the template: its `proxy.istio.io/config` over the mesh's
/// `defaultConfig` (and the injector's global proxy values under both). An unparsable annotation
/// counts as absent, as the injector then falls back to the mesh defaults.
pub fn proxy_config(
    template: &PodTemplate,
    mesh: &MeshConfig,
    injector: &InjectorValues,
) -> ProxyConfig {
    let mut defaults = mesh.default_config.clone();
    if defaults.hold_application_until_proxy_starts.is_none() {
        defaults.hold_application_until_proxy_starts =
            injector.global.proxy.hold_application_until_proxy_starts;
    }
    let pod = template
        .annotations
        .get(keys::PROXY_CONFIG)
        .and_then(|text| ProxyConfig::parse(text).ok())
        .unwrap_or_default();
    defaults.overlay(&pod)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::k8s::PodSpec;

    fn template(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> PodTemplate {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        PodTemplate {
            labels: map(labels),
            annotations: map(annotations),
            spec: PodSpec::default(),
        }
    }

    #[test]
    fn injection_follows_namespace_and_pod_labels() {
        let plain = template(&[], &[]);
        assert!(will_inject(Injection::Enabled, &plain));
        assert!(!will_inject(Injection::Unlabelled, &plain));
        let opt_out = template(&[("sidecar.istio.io/inject", "false")], &[]);
        assert!(!will_inject(Injection::Enabled, &opt_out));
        let legacy_opt_out = template(&[], &[("sidecar.istio.io/inject", "false")]);
        assert!(!will_inject(Injection::Enabled, &legacy_opt_out));
        let opt_in = template(&[("sidecar.istio.io/inject", "true")], &[]);
        assert!(will_inject(Injection::Unlabelled, &opt_in));
        assert!(!will_inject(Injection::Disabled, &opt_in));
        let rev = template(&[("istio.io/rev", "canary")], &[]);
        assert!(will_inject(Injection::Unlabelled, &rev));
        let mut host = template(&[], &[]);
        host.spec.host_network = Some(true);
        assert!(!will_inject(Injection::Enabled, &host));
    }

    #[test]
    fn probe_rewrite_annotation_then_injector_then_on() {
        let off =
            InjectorValues::parse(r#"{"sidecarInjectorWebhook":{"rewriteAppHTTPProbe":false}}"#)
                .unwrap();
        let on = InjectorValues::default();
        assert!(probes_rewritten(&template(&[], &[]), &on));
        assert!(!probes_rewritten(&template(&[], &[]), &off));
        let annotated_on = template(&[], &[("sidecar.istio.io/rewriteAppHTTPProbers", "true")]);
        assert!(probes_rewritten(&annotated_on, &off));
        let annotated_off = template(&[], &[("sidecar.istio.io/rewriteAppHTTPProbers", "false")]);
        assert!(!probes_rewritten(&annotated_off, &on));
    }

    #[test]
    fn capture_exclusions() {
        let t = template(
            &[],
            &[("traffic.sidecar.istio.io/excludeInboundPorts", "8080, 9090")],
        );
        assert!(!inbound_captured(&t, 8080));
        assert!(inbound_captured(&t, 8081));
        assert!(!inbound_captured(&template(&[], &[]), 15021));
        let only = template(
            &[],
            &[("traffic.sidecar.istio.io/includeInboundPorts", "80")],
        );
        assert!(inbound_captured(&only, 80));
        assert!(!inbound_captured(&only, 81));
        assert!(!has_outbound_exclusion(&template(&[], &[])));
        assert!(has_outbound_exclusion(&template(
            &[],
            &[("traffic.sidecar.istio.io/excludeOutboundPorts", "5432")]
        )));
        assert!(has_outbound_exclusion(&template(
            &[],
            &[(
                "traffic.sidecar.istio.io/includeOutboundIPRanges",
                "10.0.0.0/8"
            )]
        )));
        assert!(!has_outbound_exclusion(&template(
            &[],
            &[("traffic.sidecar.istio.io/includeOutboundIPRanges", "*")]
        )));
    }

    #[test]
    fn native_sidecars_need_evidence() {
        let t = template(&[], &[]);
        assert!(!native_sidecars(&t, &[], false));
        assert!(native_sidecars(&t, &[], true));
        let off = template(&[], &[("sidecar.istio.io/nativeSidecar", "false")]);
        assert!(!native_sidecars(&off, &[], true));
        let pod = PodState {
            name: "p".into(),
            labels: Default::default(),
            live: true,
            has_proxy: true,
            native_sidecar: true,
            host_network: false,
        };
        assert!(native_sidecars(&t, &[pod], false));
    }

    #[test]
    fn hold_application_from_pod_then_mesh() {
        let mesh =
            MeshConfig::parse("defaultConfig:\n  holdApplicationUntilProxyStarts: true\n").unwrap();
        let injector = InjectorValues::default();
        assert_eq!(
            proxy_config(&template(&[], &[]), &mesh, &injector).hold_application_until_proxy_starts,
            Some(true)
        );
        let pod = template(
            &[],
            &[(
                "proxy.istio.io/config",
                "holdApplicationUntilProxyStarts: false",
            )],
        );
        assert_eq!(
            proxy_config(&pod, &mesh, &injector).hold_application_until_proxy_starts,
            Some(false)
        );
    }
}

/// istiod's native-sidecar setting, as it decides it: `ENABLE_NATIVE_SIDECARS=true` or `false`
/// wins; unset or `auto` turns them on from Istio 1.28 when every node's kubelet is 1.33 or later.
/// Without a known Istio version (or without nodes) it stays off: native sidecars count only with
/// evidence.
pub fn istiod_native_sidecars(
    env: Option<&str>,
    istio: Option<(u32, u32)>,
    kubelets: &[(u32, u32)],
) -> bool {
    match env.map(|v| v.trim().to_ascii_lowercase()) {
        Some(v) if v == "true" => true,
        Some(v) if v == "false" => false,
        _ => {
            istio.is_some_and(|v| v >= (1, 28))
                && !kubelets.is_empty()
                && kubelets.iter().all(|k| *k >= (1, 33))
        }
    }
}

/// `1.28` from `1.28.2`, `v1.33.1`, `docker.io/istio/pilot:1.28.0-distroless`.
pub fn minor_version(text: &str) -> Option<(u32, u32)> {
    let tag = text.rsplit(':').next().unwrap_or(text);
    let tag = tag.trim_start_matches('v');
    let mut parts = tag.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod native_tests {
    use super::*;

    #[test]
    fn istiod_setting_then_versions() {
        assert!(istiod_native_sidecars(Some("true"), None, &[]));
        assert!(!istiod_native_sidecars(
            Some("false"),
            Some((1, 30)),
            &[(1, 34)]
        ));
        assert!(istiod_native_sidecars(
            None,
            Some((1, 28)),
            &[(1, 33), (1, 34)]
        ));
        assert!(istiod_native_sidecars(
            Some("auto"),
            Some((1, 30)),
            &[(1, 33)]
        ));
        assert!(!istiod_native_sidecars(None, Some((1, 27)), &[(1, 34)]));
        assert!(!istiod_native_sidecars(
            None,
            Some((1, 30)),
            &[(1, 33), (1, 32)]
        ));
        assert!(!istiod_native_sidecars(None, Some((1, 30)), &[]));
        assert!(!istiod_native_sidecars(None, None, &[(1, 34)]));
    }

    #[test]
    fn versions_from_tags() {
        assert_eq!(
            minor_version("docker.io/istio/pilot:1.28.0-distroless"),
            Some((1, 28))
        );
        assert_eq!(minor_version("v1.33.1"), Some((1, 33)));
        assert_eq!(minor_version("gcr.io/istio-release/pilot:latest"), None);
        assert_eq!(
            minor_version("registry:5000/istio/pilot:1.30.3"),
            Some((1, 30))
        );
    }
}
