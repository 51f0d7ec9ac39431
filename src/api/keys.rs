//! Label and annotation keys: Istio's, Kubernetes', and meshready's own.

/// Namespace label: `enabled` or `disabled`.
pub const ISTIO_INJECTION: &str = "istio-injection";
/// Namespace or pod label naming a control-plane revision.
pub const ISTIO_REV: &str = "istio.io/rev";
/// Namespace label: `ambient` puts its pods in the mesh without sidecars.
pub const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";
/// Pod label (and legacy annotation): `"true"` or `"false"`.
pub const SIDECAR_INJECT: &str = "sidecar.istio.io/inject";
pub const NATIVE_SIDECAR: &str = "sidecar.istio.io/nativeSidecar";
pub const REWRITE_APP_HTTP_PROBERS: &str = "sidecar.istio.io/rewriteAppHTTPProbers";
pub const PROXY_CONFIG: &str = "proxy.istio.io/config";
pub const EXCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
pub const INCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeInboundPorts";
pub const EXCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeOutboundPorts";
pub const EXCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";
pub const INCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/includeOutboundIPRanges";
/// Prefixes of annotations that Istio reads only from the pod (template) metadata.
pub const POD_ANNOTATION_PREFIXES: [&str; 3] = [
    "sidecar.istio.io/",
    "proxy.istio.io/",
    "traffic.sidecar.istio.io/",
];

/// On Services and Deployments Istio itself manages (waypoints, gateways): not the user's to fix.
pub const GATEWAY_MANAGED: &str = "gateway.istio.io/managed";

/// The proxy container's name and user id.
pub const PROXY_CONTAINER: &str = "istio-proxy";
pub const PROXY_UID: i64 = 1337;

/// Codes to suppress on one object: `"MR201,MR702"`.
pub const IGNORE: &str = "meshreadiness.io/ignore";
/// On a Service: the app's keep-alive/idle timeout, e.g. `"60s"`.
pub const APP_IDLE_TIMEOUT: &str = "meshreadiness.io/app-idle-timeout";

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "meshreadiness";
/// Names the MeshReadiness that owns a created object.
pub const OWNER_LABEL: &str = "meshreadiness.io/owner";
pub const FIELD_MANAGER: &str = "meshreadiness";

/// The operator's namespace when nothing says otherwise: a MeshReadiness there may select other
/// namespaces (offline: `--operator-namespace`; in a cluster: the pod's namespace).
pub const DEFAULT_OPERATOR_NAMESPACE: &str = "meshreadiness-system";
