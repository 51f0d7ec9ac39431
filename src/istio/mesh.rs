//! Mesh-wide configuration: the mesh config (`istio` ConfigMap, key `mesh`), the injector's values
//! (`istio-sidecar-injector`, key `values`), and per-pod proxy config (`proxy.istio.io/config`).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

use super::duration::parse_duration;

pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";
/// Envoy's drain before the proxy exits, when nothing sets `terminationDrainDuration`.
pub const DEFAULT_TERMINATION_DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // Boxed: the parser's error is large and these travel up through every layer's Result.
    #[error("mesh config is not valid YAML: {0}")]
    Mesh(#[source] Box<serde_saphyr::Error>),
    #[error("injector values are not valid JSON or YAML: {0}")]
    Injector(#[source] Box<serde_saphyr::Error>),
    #[error("proxy config annotation is not valid YAML: {0}")]
    Proxy(#[source] Box<serde_saphyr::Error>),
}

/// The proxy settings meshready reads, from the mesh's `defaultConfig` or a pod's annotation.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    #[serde(default)]
    pub hold_application_until_proxy_starts: Option<bool>,
    #[serde(default)]
    pub termination_drain_duration: Option<String>,
    #[serde(default)]
    pub proxy_metadata: BTreeMap<String, String>,
}

impl ProxyConfig {
    pub fn parse(yaml: &str) -> Result<Self, ConfigError> {
        parse_yaml::<Option<Self>>(yaml)
            .map(Option::unwrap_or_default)
            .map_err(|e| ConfigError::Proxy(Box::new(e)))
    }

    /// The pod's settings over the mesh defaults, field by field, as Istio merges them.
    pub fn overlay(&self, pod: &ProxyConfig) -> ProxyConfig {
        let mut proxy_metadata = self.proxy_metadata.clone();
        proxy_metadata.extend(pod.proxy_metadata.clone());
        ProxyConfig {
            hold_application_until_proxy_starts: pod
                .hold_application_until_proxy_starts
                .or(self.hold_application_until_proxy_starts),
            termination_drain_duration: pod
                .termination_drain_duration
                .clone()
                .or_else(|| self.termination_drain_duration.clone()),
            proxy_metadata,
        }
    }

    pub fn termination_drain(&self) -> Duration {
        self.termination_drain_duration
            .as_deref()
            .and_then(parse_duration)
            .unwrap_or(DEFAULT_TERMINATION_DRAIN)
    }

    pub fn exit_on_zero_active_connections(&self) -> bool {
        self.proxy_metadata
            .get("EXIT_ON_ZERO_ACTIVE_CONNECTIONS")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// The part of MeshConfig meshready reads.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfig {
    #[serde(default = "default_root_namespace")]
    pub root_namespace: String,
    #[serde(default)]
    pub default_config: ProxyConfig,
}

fn default_root_namespace() -> String {
    DEFAULT_ROOT_NAMESPACE.to_string()
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            root_namespace: default_root_namespace(),
            default_config: ProxyConfig::default(),
        }
    }
}

impl MeshConfig {
    pub fn parse(yaml: &str) -> Result<Self, ConfigError> {
        parse_yaml::<Option<Self>>(yaml)
            .map(Option::unwrap_or_default)
            .map_err(|e| ConfigError::Mesh(Box::new(e)))
    }
}

/// The injector's values (Helm values rendered into the `istio-sidecar-injector` ConfigMap).
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InjectorValues {
    #[serde(default)]
    pub sidecar_injector_webhook: InjectorWebhookValues,
    #[serde(default)]
    pub global: GlobalValues,
    #[serde(default)]
    pub pilot: PilotValues,
}

#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InjectorWebhookValues {
    #[serde(default, rename = "rewriteAppHTTPProbe")]
    pub rewrite_app_http_probe: Option<bool>,
    #[serde(default)]
    pub enable_namespaces_by_default: Option<bool>,
}

#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
pub struct GlobalValues {
    #[serde(default)]
    pub proxy: GlobalProxyValues,
}

#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GlobalProxyValues {
    #[serde(default)]
    pub hold_application_until_proxy_starts: Option<bool>,
}

#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
pub struct PilotValues {
    #[serde(default)]
    pub env: BTreeMap<String, serde_json::Value>,
}

impl InjectorValues {
    /// JSON is YAML, so one parser reads both forms Istio has used.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        parse_yaml::<Option<Self>>(text)
            .map(Option::unwrap_or_default)
            .map_err(|e| ConfigError::Injector(Box::new(e)))
    }

    pub fn rewrite_app_http_probe(&self) -> bool {
        self.sidecar_injector_webhook
            .rewrite_app_http_probe
            .unwrap_or(true)
    }

    pub fn namespaces_by_default(&self) -> bool {
        self.sidecar_injector_webhook
            .enable_namespaces_by_default
            .unwrap_or(false)
    }

    /// `pilot.env.ENABLE_NATIVE_SIDECARS`, when the values set it.
    pub fn native_sidecars(&self) -> Option<bool> {
        match self.pilot.env.get("ENABLE_NATIVE_SIDECARS")? {
            serde_json::Value::Bool(b) => Some(*b),
            serde_json::Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            serde_json::Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }
}

fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, serde_saphyr::Error> {
    serde_saphyr::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_config_defaults_root_namespace() {
        let mesh =
            MeshConfig::parse("defaultConfig:\n  holdApplicationUntilProxyStarts: true\n").unwrap();
        assert_eq!(mesh.root_namespace, "istio-system");
        assert_eq!(
            mesh.default_config.hold_application_until_proxy_starts,
            Some(true)
        );
        assert_eq!(MeshConfig::parse("").unwrap(), MeshConfig::default());
        assert_eq!(
            MeshConfig::parse("rootNamespace: mesh-root")
                .unwrap()
                .root_namespace,
            "mesh-root"
        );
    }

    #[test]
    fn pod_proxy_config_overrides_mesh_defaults() {
        let mesh = ProxyConfig::parse(
            "terminationDrainDuration: 20s\nproxyMetadata:\n  EXIT_ON_ZERO_ACTIVE_CONNECTIONS: 'true'\n",
        )
        .unwrap();
        let pod = ProxyConfig::parse(
            "holdApplicationUntilProxyStarts: true\nterminationDrainDuration: 30s",
        )
        .unwrap();
        let merged = mesh.overlay(&pod);
        assert_eq!(merged.termination_drain(), Duration::from_secs(30));
        assert!(merged.exit_on_zero_active_connections());
        assert_eq!(merged.hold_application_until_proxy_starts, Some(true));
        assert_eq!(
            ProxyConfig::default().termination_drain(),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn injector_values_from_json() {
        let values = InjectorValues::parse(
            r#"{"sidecarInjectorWebhook":{"rewriteAppHTTPProbe":false,"enableNamespacesByDefault":true},"pilot":{"env":{"ENABLE_NATIVE_SIDECARS":"true"}}}"#,
        )
        .unwrap();
        assert!(!values.rewrite_app_http_probe());
        assert!(values.namespaces_by_default());
        assert_eq!(values.native_sidecars(), Some(true));
        let empty = InjectorValues::parse("{}").unwrap();
        assert!(empty.rewrite_app_http_probe());
        assert!(!empty.namespaces_by_default());
    }
}
