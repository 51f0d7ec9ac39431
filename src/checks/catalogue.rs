//! The catalogue of finding codes. Codes never change meaning; new checks get new codes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How bad a finding is. Ordered so that `Error` is the greatest.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "Info",
            Severity::Warning => "Warning",
            Severity::Error => "Error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A family of checks: the hundreds of the code, each with its own status condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Injection,
    Protocols,
    Mtls,
    Probes,
    Lifecycle,
    IdleTimeouts,
    Retries,
    Listeners,
    Routes,
}

impl Family {
    pub const ALL: [Family; 9] = [
        Family::Injection,
        Family::Protocols,
        Family::Mtls,
        Family::Probes,
        Family::Lifecycle,
        Family::IdleTimeouts,
        Family::Retries,
        Family::Listeners,
        Family::Routes,
    ];

    /// The status condition type that summarises this family (positive polarity).
    pub fn condition_type(self) -> &'static str {
        match self {
            Family::Injection => "SidecarsInjected",
            Family::Protocols => "ProtocolsDeclared",
            Family::Mtls => "MtlsCompatible",
            Family::Probes => "ProbesCompatible",
            Family::Lifecycle => "LifecycleSafe",
            Family::IdleTimeouts => "IdleTimeoutsAligned",
            Family::Retries => "RetriesCoverResets",
            Family::Listeners => "ListenersReachable",
            Family::Routes => "RoutesResolvable",
        }
    }
}

macro_rules! catalogue {
    ($($code:ident => $name:literal, $family:ident, $sev:ident, $summary:literal;)+) => {
        /// A finding code, e.g. `MR201`.
        #[derive(
            Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
        )]
        pub enum Code { $($code),+ }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$code),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$code => stringify!($code)),+ }
            }

            /// The check's stable name, e.g. `PortProtocolUndeclared`.
            pub fn name(self) -> &'static str {
                match self { $(Code::$code => $name),+ }
            }

            pub fn family(self) -> Family {
                match self { $(Code::$code => Family::$family),+ }
            }

            /// The usual severity; some checks raise or lower it per finding (MR301, MR601, MR701).
            pub fn default_severity(self) -> Severity {
                match self { $(Code::$code => Severity::$sev),+ }
            }

            /// One line: when it fires.
            pub fn summary(self) -> &'static str {
                match self { $(Code::$code => $summary),+ }
            }
        }
    };
}

catalogue! {
    MR101 => "NamespaceNotInjected", Injection, Info, "A checked namespace has no sidecar injection label.";
    MR102 => "PodMissingSidecar", Injection, Warning, "Live pods in an injected namespace run without an istio-proxy.";
    MR103 => "ConflictingInjectionLabels", Injection, Warning, "A namespace carries both istio-injection and istio.io/rev.";
    MR201 => "PortProtocolUndeclared", Protocols, Warning, "A Service port declares no protocol, so Istio sniffs it.";
    MR202 => "HttpPortDeclaredTcp", Protocols, Warning, "A port declared tcp/tls carries HTTP, which Envoy then treats as opaque TCP.";
    MR203 => "PortProtocolConflict", Protocols, Error, "Services selecting the same pods disagree on a target port's protocol or port.";
    MR204 => "PortProtocolConflictAcrossNamespaces", Protocols, Warning, "One port number has different protocols in different namespaces.";
    MR301 => "StrictMtlsWithPlaintextClients", Mtls, Error, "A STRICT workload has callers without a sidecar.";
    MR302 => "DestinationRuleTlsConflictsWithStrict", Mtls, Error, "A DestinationRule sends plaintext or non-mesh TLS to a STRICT workload.";
    MR303 => "IstioMutualToNonMeshServer", Mtls, Error, "A DestinationRule sends ISTIO_MUTUAL to pods without a sidecar.";
    MR304 => "DuplicatePeerAuthentication", Mtls, Warning, "More than one namespace-wide or mesh-wide PeerAuthentication; only the oldest applies.";
    MR305 => "IneffectivePortLevelMtls", Mtls, Warning, "portLevelMtls without a selector, or keyed by a port that is no container port.";
    MR401 => "ProbeBlockedByStrictMtls", Probes, Error, "An HTTP or gRPC probe is not rewritten and hits a STRICT port.";
    MR402 => "TcpProbeAlwaysSucceeds", Probes, Warning, "A tcpSocket probe is answered by the sidecar, so it can no longer fail.";
    MR403 => "MisplacedSidecarAnnotation", Probes, Warning, "A pod-level sidecar annotation sits on the workload instead of its pod template.";
    MR501 => "InitContainerNeedsNetwork", Lifecycle, Warning, "An init container uses the network before the proxy runs.";
    MR502 => "AppStartsBeforeProxy", Lifecycle, Info, "The app may start before its proxy is ready.";
    MR503 => "ProxyExitsBeforeAppDrains", Lifecycle, Warning, "The proxy exits before the app finishes draining.";
    MR504 => "NoReadinessProbe", Lifecycle, Info, "A meshed, selected app container has no readiness probe.";
    MR601 => "IdleTimeoutNotBelowAppKeepAlive", IdleTimeouts, Warning, "The proxy's idle timeout is not below the app's keep-alive: intermittent 503 UC.";
    MR701 => "RetriesMissingReset", Retries, Info, "An HTTP host has no retry policy covering connection resets.";
    MR702 => "RetriesReplaceDefaults", Retries, Warning, "A retries block drops Istio's default retry conditions.";
    MR703 => "ResetRetryOnNonIdempotent", Retries, Warning, "A route retries on reset or 5xx for non-idempotent methods.";
    MR801 => "AppBindsLocalhost", Listeners, Warning, "An app binds a Service's target port to localhost.";
    MR802 => "AppRunsAsProxyUid", Listeners, Warning, "A pod or app container runs as UID 1337, the proxy's.";
    MR803 => "AppUsesReservedProxyPort", Listeners, Error, "An app container port is one the sidecar owns.";
    MR804 => "ServiceTargetPortNotExposed", Listeners, Warning, "A Service's targetPort matches no container port of its pods.";
    MR901 => "VirtualServiceSubsetUndefined", Routes, Error, "A route names a subset no DestinationRule defines (503 NR).";
    MR902 => "DuplicateRoutingConfig", Routes, Warning, "More than one VirtualService or DestinationRule for one host.";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Code {
    type Err = UnknownCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Code::ALL
            .iter()
            .copied()
            .find(|code| code.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| UnknownCode(wanted.to_string()))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown finding code {0:?}")]
pub struct UnknownCode(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_of_the_design_table_with_a_unique_name() {
        // DESIGN.md section 2 lists 29 codes (the issue text says 28).
        assert_eq!(Code::ALL.len(), 29);
        let names: std::collections::BTreeSet<_> = Code::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), 29);
    }

    #[test]
    fn family_follows_the_hundreds() {
        for code in Code::ALL {
            let hundreds = code.as_str()[2..3].parse::<usize>().unwrap();
            assert_eq!(Family::ALL[hundreds - 1], code.family(), "{code}");
        }
    }

    #[test]
    fn parses_codes_case_insensitively() {
        assert_eq!("mr702".parse::<Code>(), Ok(Code::MR702));
        assert!("MR999".parse::<Code>().is_err());
    }
}
