//! The status a MeshReadiness should have, computed from what the checks found. Pure: the writer
//! compares it with the live status and sends nothing when they are equal.

use std::collections::BTreeMap;

use crate::api::k8s::{Condition, Time};
use crate::api::{
    FindingStatus, MeshReadinessSpec, MeshReadinessStatus, ReadyThreshold, RemediationMode,
};
use crate::checks::{Code, Family, Finding, Severity};

/// At most this many findings are listed in status; `findingsTruncated` says when more exist.
pub const MAX_FINDINGS: usize = 50;

pub mod conditions {
    pub const READY: &str = "Ready";
    pub const REMEDIATIONS_APPLIED: &str = "RemediationsApplied";
}

/// Condition reasons (CamelCase, stable: alerts match on them).
pub mod reasons {
    pub const NO_BLOCKING_FINDINGS: &str = "NoBlockingFindings";
    pub const BLOCKING_FINDINGS: &str = "BlockingFindings";
    pub const MITIGATED: &str = "Mitigated";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const SELECTOR_NOT_ALLOWED: &str = "SelectorNotAllowed";
    pub const ISTIO_NOT_DETECTED: &str = "IstioNotDetected";
    pub const SUSPENDED: &str = "Suspended";
    pub const NO_WARNINGS: &str = "NoWarnings";
    pub const WARNINGS_FOUND: &str = "WarningsFound";
    pub const ERRORS_FOUND: &str = "ErrorsFound";
    pub const NOT_YET_SUPPORTED: &str = "NotYetSupported";
}

/// What a reconcile could establish.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The checks ran over `namespaces` namespaces.
    Checked {
        findings: Vec<Finding>,
        namespaces: i32,
    },
    /// The checks could not run; `reason` is one of [`reasons`].
    NotChecked {
        reason: &'static str,
        message: String,
    },
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

fn blocks(threshold: ReadyThreshold, severity: Severity) -> bool {
    match threshold {
        ReadyThreshold::Error => severity == Severity::Error,
        ReadyThreshold::Warning => severity >= Severity::Warning,
    }
}

/// `MR301 (2), MR201 (1)`: codes with counts, most frequent first.
fn code_counts<'a>(findings: impl Iterator<Item = &'a Finding>) -> String {
    let mut counts: BTreeMap<Code, usize> = BTreeMap::new();
    for f in findings {
        *counts.entry(f.code).or_default() += 1;
    }
    let mut counts: Vec<(Code, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    counts
        .iter()
        .map(|(c, n)| format!("{c} ({n})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The desired status. `lastTransitionTime` is carried over from `previous` for conditions whose
/// status did not flip; `lastCheckedTime` is `now`.
pub fn desired(
    spec: &MeshReadinessSpec,
    generation: Option<i64>,
    outcome: &Outcome,
    previous: Option<&MeshReadinessStatus>,
    now: &Time,
) -> MeshReadinessStatus {
    let mut status = MeshReadinessStatus {
        observed_generation: generation,
        last_checked_time: Some(now.clone()),
        ..MeshReadinessStatus::default()
    };
    let mut conditions = Vec::new();
    match outcome {
        Outcome::NotChecked { reason, message } => {
            conditions.push(condition(
                conditions::READY,
                "False",
                reason,
                message.clone(),
                generation,
                now,
            ));
            for family in Family::ALL {
                conditions.push(condition(
                    family.condition_type(),
                    "Unknown",
                    reason,
                    "Not checked.".to_string(),
                    generation,
                    now,
                ));
            }
            // Keep the last findings visible while the check cannot run (e.g. suspended).
            if let Some(previous) = previous {
                status.namespaces = previous.namespaces;
                status.errors = previous.errors;
                status.warnings = previous.warnings;
                status.infos = previous.infos;
                status.findings = previous.findings.clone();
                status.findings_truncated = previous.findings_truncated;
            }
        }
        Outcome::Checked {
            findings,
            namespaces,
        } => {
            status.namespaces = *namespaces;
            let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count() as i32;
            status.errors = count(Severity::Error);
            status.warnings = count(Severity::Warning);
            status.infos = count(Severity::Info);
            status.findings = findings
                .iter()
                .take(MAX_FINDINGS)
                .map(finding_status)
                .collect();
            status.findings_truncated = findings.len() > MAX_FINDINGS;
            let blocking: Vec<&Finding> = findings
                .iter()
                .filter(|f| blocks(spec.ready_threshold, f.severity))
                .collect();
            conditions.push(if blocking.is_empty() {
                condition(
                    conditions::READY,
                    "True",
                    reasons::NO_BLOCKING_FINDINGS,
                    format!(
                        "No {} in {}.",
                        match spec.ready_threshold {
                            ReadyThreshold::Error => "errors",
                            ReadyThreshold::Warning => "errors or warnings",
                        },
                        plural(*namespaces as usize, "namespace"),
                    ),
                    generation,
                    now,
                )
            } else {
                condition(
                    conditions::READY,
                    "False",
                    reasons::BLOCKING_FINDINGS,
                    format!(
                        "{} at or above {:?} in {}: {}.",
                        plural(blocking.len(), "finding"),
                        spec.ready_threshold,
                        plural(*namespaces as usize, "namespace"),
                        code_counts(blocking.iter().copied()),
                    ),
                    generation,
                    now,
                )
            });
            for family in Family::ALL {
                let found: Vec<&Finding> = findings
                    .iter()
                    .filter(|f| f.code.family() == family && f.severity >= Severity::Warning)
                    .collect();
                conditions.push(if found.is_empty() {
                    condition(
                        family.condition_type(),
                        "True",
                        reasons::NO_WARNINGS,
                        "No errors or warnings.".to_string(),
                        generation,
                        now,
                    )
                } else {
                    let reason = if found.iter().any(|f| f.severity == Severity::Error) {
                        reasons::ERRORS_FOUND
                    } else {
                        reasons::WARNINGS_FOUND
                    };
                    condition(
                        family.condition_type(),
                        "False",
                        reason,
                        format!("{}.", code_counts(found.into_iter())),
                        generation,
                        now,
                    )
                });
            }
        }
    }
    if spec.remediation.mode != RemediationMode::Off {
        conditions.push(condition(
            conditions::REMEDIATIONS_APPLIED,
            "Unknown",
            reasons::NOT_YET_SUPPORTED,
            "This version of meshready reports only; remediation is not implemented yet."
                .to_string(),
            generation,
            now,
        ));
    }
    for c in &mut conditions {
        let kept = previous
            .and_then(|p| p.conditions.iter().find(|old| old.type_ == c.type_))
            .filter(|old| old.status == c.status);
        if let Some(old) = kept {
            c.last_transition_time = old.last_transition_time.clone();
        }
    }
    status.conditions = conditions;
    status
}

fn finding_status(f: &Finding) -> FindingStatus {
    FindingStatus {
        code: f.code,
        severity: f.severity,
        namespace: f.object.namespace.clone(),
        kind: f.object.kind.clone(),
        name: f.object.name.clone(),
        message: f.message.clone(),
        mitigated_by: None,
    }
}

/// Whether writing `desired` would change anything but `lastCheckedTime`.
pub fn changed(live: Option<&MeshReadinessStatus>, desired: &MeshReadinessStatus) -> bool {
    let Some(live) = live else { return true };
    let strip = |s: &MeshReadinessStatus| MeshReadinessStatus {
        last_checked_time: None,
        ..s.clone()
    };
    strip(live) != strip(desired)
}

/// The Ready condition's status, if present.
pub fn ready(status: &MeshReadinessStatus) -> Option<&Condition> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::READY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::ObjectRef;

    fn time(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    fn finding(code: Code, severity: Severity) -> Finding {
        Finding {
            code,
            severity,
            object: ObjectRef::new("Service", "shop", "web"),
            message: "m".into(),
        }
    }

    fn checked(findings: Vec<Finding>) -> Outcome {
        Outcome::Checked {
            findings,
            namespaces: 2,
        }
    }

    fn cond<'a>(s: &'a MeshReadinessStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn all_conditions_from_the_first_visit() {
        let s = desired(
            &MeshReadinessSpec::default(),
            Some(3),
            &checked(vec![]),
            None,
            &time(10),
        );
        assert_eq!(s.conditions.len(), 10);
        let r = cond(&s, "Ready");
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("True", reasons::NO_BLOCKING_FINDINGS)
        );
        assert_eq!(r.observed_generation, Some(3));
        assert_eq!(s.observed_generation, Some(3));
        assert!(s.conditions.iter().all(|c| c.status == "True"));
    }

    #[test]
    fn threshold_decides_what_blocks() {
        let findings = vec![
            finding(Code::MR201, Severity::Warning),
            finding(Code::MR701, Severity::Info),
        ];
        let s = desired(
            &MeshReadinessSpec::default(),
            None,
            &checked(findings.clone()),
            None,
            &time(1),
        );
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "ProtocolsDeclared").status, "False");
        assert_eq!(
            cond(&s, "ProtocolsDeclared").reason,
            reasons::WARNINGS_FOUND
        );
        assert_eq!(
            cond(&s, "RetriesCoverResets").status,
            "True",
            "Info does not flip a family"
        );
        assert_eq!((s.errors, s.warnings, s.infos), (0, 1, 1));
        let strict = MeshReadinessSpec {
            ready_threshold: ReadyThreshold::Warning,
            ..Default::default()
        };
        let s = desired(&strict, None, &checked(findings), None, &time(1));
        let r = cond(&s, "Ready");
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("False", reasons::BLOCKING_FINDINGS)
        );
        assert!(r.message.contains("MR201 (1)"), "{}", r.message);
    }

    #[test]
    fn transition_time_moves_only_on_flips() {
        let spec = MeshReadinessSpec::default();
        let first = desired(&spec, None, &checked(vec![]), None, &time(1));
        let same = desired(&spec, None, &checked(vec![]), Some(&first), &time(2));
        assert_eq!(cond(&same, "Ready").last_transition_time, time(1));
        assert!(
            !changed(Some(&first), &same),
            "only lastCheckedTime differs"
        );
        let flipped = desired(
            &spec,
            None,
            &checked(vec![finding(Code::MR301, Severity::Error)]),
            Some(&same),
            &time(3),
        );
        assert_eq!(cond(&flipped, "Ready").last_transition_time, time(3));
        assert_eq!(
            cond(&flipped, "MtlsCompatible").last_transition_time,
            time(3)
        );
        assert_eq!(
            cond(&flipped, "ProbesCompatible").last_transition_time,
            time(1)
        );
        assert!(changed(Some(&same), &flipped));
    }

    #[test]
    fn findings_are_capped() {
        let many: Vec<Finding> = (0..60)
            .map(|_| finding(Code::MR201, Severity::Warning))
            .collect();
        let s = desired(
            &MeshReadinessSpec::default(),
            None,
            &checked(many),
            None,
            &time(1),
        );
        assert_eq!(s.findings.len(), MAX_FINDINGS);
        assert!(s.findings_truncated);
        assert_eq!(s.warnings, 60);
    }

    #[test]
    fn not_checked_keeps_last_findings_and_says_why() {
        let spec = MeshReadinessSpec::default();
        let first = desired(
            &spec,
            None,
            &checked(vec![finding(Code::MR201, Severity::Warning)]),
            None,
            &time(1),
        );
        let outcome = Outcome::NotChecked {
            reason: reasons::SUSPENDED,
            message: "spec.suspend is true".into(),
        };
        let s = desired(&spec, None, &outcome, Some(&first), &time(2));
        let r = cond(&s, "Ready");
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("False", reasons::SUSPENDED)
        );
        assert_eq!(s.findings, first.findings);
        assert_eq!(cond(&s, "SidecarsInjected").status, "Unknown");
    }
}
