//! The `MeshReadiness` custom resource (`meshreadiness.io/v1alpha1`).
//!
//! Validation lives in the schema (enums, ranges, patterns) and in CEL rules, so the API server
//! refuses an invalid spec at admission rather than the operator discovering it later.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::core::Duration;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::checks::Code;

/// Go-style duration: one or more `<number><unit>` terms, e.g. `90s`, `1h30m`.
const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// Declares which namespaces must be ready for the Istio mesh, and what meshready may do about it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "meshreadiness.io",
    version = "v1alpha1",
    kind = "MeshReadiness",
    plural = "meshreadinesses",
    shortname = "mr",
    shortname = "meshready",
    namespaced,
    status = "MeshReadinessStatus",
    derive = "PartialEq",
    cel,
    doc = "Whether the selected namespaces are ready for the Istio service mesh, and why requests would fail with 503 once meshed.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Namespaces","type":"integer","jsonPath":".status.namespaces"}"#,
    printcolumn = r#"{"name":"Errors","type":"integer","jsonPath":".status.errors"}"#,
    printcolumn = r#"{"name":"Warnings","type":"integer","jsonPath":".status.warnings"}"#,
    printcolumn = r#"{"name":"Remediation","type":"string","jsonPath":".spec.remediation.mode"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MeshReadinessSpec {
    /// Namespaces to check. Honoured only for objects in the operator's own namespace; absent
    /// means this object's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Which checks to run.
    #[serde(default, skip_serializing_if = "ChecksSpec::is_empty")]
    pub checks: ChecksSpec,

    /// The lowest severity of an unmitigated finding that makes `Ready` False.
    #[serde(default)]
    pub ready_threshold: ReadyThreshold,

    /// The apps' own keep-alive (idle) timeouts, compared with the proxy's idle timeout (MR601).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub app_idle_timeouts: Vec<AppIdleTimeout>,

    /// What meshready may create to mitigate findings.
    #[serde(default)]
    pub remediation: RemediationSpec,

    /// Stop reconciling this object.
    #[serde(default)]
    pub suspend: bool,

    /// How often to re-check when nothing changes; at least 30s.
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) >= duration('30s')").message("spec.interval must be at least 30s"))]
    pub interval: Duration,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChecksSpec {
    /// Finding codes not to report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub disabled: Vec<Code>,
}

impl ChecksSpec {
    fn is_empty(&self) -> bool {
        self.disabled.is_empty()
    }
}

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum ReadyThreshold {
    #[default]
    Error,
    Warning,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppIdleTimeout {
    /// The Service's name (a DNS-1035 label) in each checked namespace.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub service: String,
    /// The app's keep-alive/idle timeout; at least 1s.
    #[schemars(regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) >= duration('1s')").message("appIdleTimeouts[].timeout must be at least 1s"))]
    pub timeout: Duration,
}

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum RemediationMode {
    /// Report only.
    #[default]
    Off,
    /// Status and Events list what would be created.
    DryRun,
    /// Create the allowed objects.
    Apply,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RemediationSpec {
    #[serde(default)]
    pub mode: RemediationMode,
    /// Allow the PERMISSIVE PeerAuthentication (MR301).
    #[serde(default)]
    pub permissive_mtls: bool,
    /// How long a PERMISSIVE policy may live; positive, at most 720h.
    #[serde(default = "default_permissive_ttl")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) > duration('0s') && duration(self) <= duration('720h')").message("remediation.permissiveMtlsTtl must be positive and at most 720h"))]
    pub permissive_mtls_ttl: Duration,
    /// Allow idle-timeout DestinationRules (MR601).
    #[serde(default)]
    pub idle_timeout: bool,
    /// Allow reset-retry VirtualServices (MR701).
    #[serde(default)]
    pub reset_retries: bool,
    /// Attempts in generated retries.
    #[serde(default = "default_retry_attempts")]
    #[schemars(range(min = 1, max = 10))]
    pub retry_attempts: i32,
}

impl Default for RemediationSpec {
    fn default() -> Self {
        Self {
            mode: RemediationMode::Off,
            permissive_mtls: false,
            permissive_mtls_ttl: default_permissive_ttl(),
            idle_timeout: false,
            reset_retries: false,
            retry_attempts: default_retry_attempts(),
        }
    }
}

fn default_interval() -> Duration {
    std::time::Duration::from_secs(300).into()
}

fn default_permissive_ttl() -> Duration {
    std::time::Duration::from_secs(72 * 3600).into()
}

fn default_retry_attempts() -> i32 {
    2
}

impl Default for MeshReadinessSpec {
    fn default() -> Self {
        Self {
            namespace_selector: None,
            checks: ChecksSpec::default(),
            ready_threshold: ReadyThreshold::default(),
            app_idle_timeouts: Vec::new(),
            remediation: RemediationSpec::default(),
            suspend: false,
            interval: default_interval(),
        }
    }
}

/// What the operator last found.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MeshReadinessStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Namespaces checked.
    #[serde(default)]
    pub namespaces: i32,
    /// Unmitigated findings by severity.
    #[serde(default)]
    pub errors: i32,
    #[serde(default)]
    pub warnings: i32,
    #[serde(default)]
    pub infos: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// At most 50, most severe first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<FindingStatus>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub findings_truncated: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remediations: Vec<RemediationStatus>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FindingStatus {
    pub code: Code,
    pub severity: crate::checks::Severity,
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mitigated_by: Option<String>,
}

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum RemediationState {
    Planned,
    Applied,
    Blocked,
    Expired,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RemediationStatus {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub state: RemediationState,
    /// One CamelCase word: `MitigatesFindings`, `UserPolicyOutranks`, `UserObjectForHost`,
    /// `NameTaken`, `TimeoutTooShort`, `OtherOwner`, `NoOwner`, `TtlPassed`, `Forbidden`,
    /// `Refused`.
    pub reason: String,
    /// For people: what it mitigates, or what blocks it and the patch to make instead.
    #[serde(default)]
    pub message: String,
    /// The exact object, while it is only `Planned` (in `DryRun`): what `Apply` would write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true, "type" = "object"))]
    pub object: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    fn object(spec: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "meshreadiness.io/v1alpha1",
            "kind": "MeshReadiness",
            "metadata": {"name": "x", "namespace": "shop"},
            "spec": spec,
        })
    }

    fn cel(spec: serde_json::Value) -> Result<(), String> {
        let crd = MeshReadiness::crd();
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        kube::core::cel::Validator::new()
            .validate(&schema, &object(spec), None)
            .map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn cel_accepts_defaults_and_good_durations() {
        assert_eq!(
            cel(serde_json::to_value(MeshReadinessSpec::default()).unwrap()),
            Ok(())
        );
        let good = serde_json::json!({
            "interval": "30s",
            "appIdleTimeouts": [{"service": "cart", "timeout": "1s"}],
            "remediation": {"permissiveMtlsTtl": "720h", "retryAttempts": 2},
        });
        assert_eq!(cel(good), Ok(()));
    }

    #[test]
    fn cel_refuses_short_interval_zero_ttl_and_tiny_timeouts() {
        let refused = [
            serde_json::json!({"interval": "10s"}),
            serde_json::json!({"remediation": {"permissiveMtlsTtl": "0s"}}),
            serde_json::json!({"remediation": {"permissiveMtlsTtl": "721h"}}),
            serde_json::json!({"appIdleTimeouts": [{"service": "cart", "timeout": "500ms"}]}),
        ];
        for spec in refused {
            let err = cel(spec.clone()).expect_err(&spec.to_string());
            assert!(err.contains("must be"), "{spec}: {err}");
        }
    }

    #[test]
    fn schema_declares_enums_ranges_and_printer_columns() {
        let crd = serde_json::to_value(MeshReadiness::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        let codes = spec["checks"]["properties"]["disabled"]["items"]["enum"]
            .as_array()
            .unwrap();
        assert_eq!(codes.len(), crate::checks::Code::ALL.len());
        assert_eq!(
            spec["remediation"]["properties"]["retryAttempts"]["minimum"].as_f64(),
            Some(1.0)
        );
        assert_eq!(
            spec["remediation"]["properties"]["retryAttempts"]["maximum"].as_f64(),
            Some(10.0)
        );
        assert_eq!(
            spec["readyThreshold"]["enum"],
            serde_json::json!(["Error", "Warning"])
        );
        let columns: Vec<&str> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            columns,
            [
                "Ready",
                "Reason",
                "Namespaces",
                "Errors",
                "Warnings",
                "Remediation",
                "Age"
            ]
        );
        assert_eq!(
            crd["spec"]["names"]["shortNames"],
            serde_json::json!(["mr", "meshready"])
        );
        assert_eq!(
            crd["spec"]["versions"][0]["subresources"]["status"],
            serde_json::json!({})
        );
    }
}
