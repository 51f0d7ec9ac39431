//! The status a MeshReadiness should have, computed from what the checks found. Pure: the writer
//! compares it with the live status and sends nothing when they are equal.

use std::collections::BTreeMap;

use crate::api::k8s::{Condition, Time};
use crate::api::{
    FindingStatus, MeshReadinessSpec, MeshReadinessStatus, ReadyThreshold, RemediationMode,
    RemediationState, RemediationStatus,
};
use crate::checks::{self, Code, Family, Finding, Severity};
use crate::remediation::{self, FindingKey, Kind, Reason, Remediation};

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
    // RemediationsApplied
    pub const DRY_RUN: &str = "DryRun";
    pub const APPLIED: &str = "Applied";
    pub const NOTHING_TO_APPLY: &str = "NothingToApply";
    pub const BLOCKED: &str = "Blocked";
    pub const FORBIDDEN: &str = "Forbidden";
    pub const EXPIRED: &str = "Expired";
}

/// At most this many remediations are listed in status (each may carry its whole object).
pub const MAX_REMEDIATIONS: usize = 50;
/// A condition message names at most this many objects, then says how many more.
const MAX_NAMED: usize = 10;

/// What a reconcile could establish.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The checks ran over `namespaces` namespaces. `remediations` are in their final state:
    /// in `Apply` mode, what was written is `Applied`.
    Checked {
        findings: Vec<Finding>,
        namespaces: i32,
        remediations: Vec<Remediation>,
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
            remediations,
        } => {
            status.namespaces = *namespaces;
            // Only what is in the cluster mitigates: nothing in DryRun, the written in Apply.
            let mitigated = if spec.remediation.mode == RemediationMode::Apply {
                let applied: Vec<Remediation> = remediations
                    .iter()
                    .filter(|r| r.state == RemediationState::Applied)
                    .cloned()
                    .collect();
                remediation::mitigated_by(&applied)
            } else {
                BTreeMap::new()
            };
            let mitigated_by = |f: &Finding| mitigated.get(&FindingKey::from(f)).cloned();
            let unmitigated: Vec<&Finding> = findings
                .iter()
                .filter(|f| mitigated_by(f).is_none())
                .collect();
            let count = |s: Severity| unmitigated.iter().filter(|f| f.severity == s).count() as i32;
            status.errors = count(Severity::Error);
            status.warnings = count(Severity::Warning);
            status.infos = count(Severity::Info);
            status.findings = findings
                .iter()
                .take(MAX_FINDINGS)
                .map(|f| FindingStatus {
                    mitigated_by: mitigated_by(f),
                    ..finding_status(f)
                })
                .collect();
            status.findings_truncated = findings.len() > MAX_FINDINGS;
            status.remediations = remediations
                .iter()
                .take(MAX_REMEDIATIONS)
                .map(remediation_status)
                .collect();
            let at_threshold = |f: &&Finding| blocks(spec.ready_threshold, f.severity);
            let blocking: Vec<&Finding> =
                unmitigated.iter().copied().filter(at_threshold).collect();
            let mitigated_blocking: Vec<&Finding> = findings
                .iter()
                .filter(at_threshold)
                .filter(|f| mitigated_by(f).is_some())
                .collect();
            conditions.push(if blocking.is_empty() && !mitigated_blocking.is_empty() {
                condition(
                    conditions::READY,
                    "True",
                    reasons::MITIGATED,
                    format!(
                        "{} at or above {:?} in {}, each mitigated by an object meshready \
                         applied (see findings[].mitigatedBy): {}. Fix the cause; the \
                         mitigation is not the cure.",
                        plural(mitigated_blocking.len(), "finding"),
                        spec.ready_threshold,
                        plural(*namespaces as usize, "namespace"),
                        code_counts(mitigated_blocking.iter().copied()),
                    ),
                    generation,
                    now,
                )
            } else if blocking.is_empty() {
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
                let found: Vec<&Finding> = unmitigated
                    .iter()
                    .copied()
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
        let (state, reason, message) = match outcome {
            Outcome::Checked { remediations, .. } => {
                remediations_applied(spec.remediation.mode, remediations)
            }
            Outcome::NotChecked { reason, .. } => (
                "Unknown",
                *reason,
                "Not checked: nothing was planned.".to_string(),
            ),
        };
        conditions.push(condition(
            conditions::REMEDIATIONS_APPLIED,
            state,
            reason,
            message,
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

/// `RemediationsApplied`: True when everything the findings call for is in place (or nothing is
/// called for), False with the first of Forbidden, Blocked, Expired or DryRun that holds. A
/// PERMISSIVE policy in place is always named: it is a security downgrade.
fn remediations_applied(
    mode: RemediationMode,
    remediations: &[Remediation],
) -> (&'static str, &'static str, String) {
    let with = |state: RemediationState| -> Vec<&Remediation> {
        remediations.iter().filter(|r| r.state == state).collect()
    };
    let (applied, planned, blocked, expired) = (
        with(RemediationState::Applied),
        with(RemediationState::Planned),
        with(RemediationState::Blocked),
        with(RemediationState::Expired),
    );
    let forbidden: Vec<&Remediation> = blocked
        .iter()
        .copied()
        .filter(|r| r.reason == Reason::Forbidden)
        .collect();
    let mut parts = Vec::new();
    if let Some(pa) = applied.iter().find(|r| r.kind == Kind::PeerAuthentication) {
        let until = pa
            .expires
            .as_ref()
            .map(|t| format!(" until {}", t.0))
            .unwrap_or_default();
        parts.push(format!(
            "PERMISSIVE PeerAuthentication {}/{} is in place{until}: mTLS is not enforced for \
             its namespace's workloads.",
            pa.namespace, pa.name
        ));
    }
    let mut push = |title: &str, items: &[&Remediation], with_reason: bool| {
        if items.is_empty() {
            return;
        }
        parts.push(format!("{title}: {}.", objects(items, with_reason)));
    };
    if mode == RemediationMode::DryRun {
        push("Would apply (DryRun)", &planned, false);
    }
    push("Applied", &applied, false);
    push("Blocked", &blocked, true);
    push("Expired", &expired, false);
    let (status, reason) = if !forbidden.is_empty() {
        parts.insert(
            0,
            "meshready may not write these objects: bind the ClusterRole meshready-remediation \
             to its ServiceAccount (config/rbac/remediation-binding.yaml)."
                .to_string(),
        );
        ("False", reasons::FORBIDDEN)
    } else if !blocked.is_empty() {
        ("False", reasons::BLOCKED)
    } else if !expired.is_empty() {
        ("False", reasons::EXPIRED)
    } else if mode == RemediationMode::DryRun && !planned.is_empty() {
        ("False", reasons::DRY_RUN)
    } else if !applied.is_empty() {
        ("True", reasons::APPLIED)
    } else {
        parts.push("No finding calls for a remediation.".to_string());
        ("True", reasons::NOTHING_TO_APPLY)
    };
    (status, reason, parts.join(" "))
}

/// `DestinationRule shop/cart-meshreadiness (UserObjectForHost), ...`, at most [`MAX_NAMED`].
fn objects(items: &[&Remediation], with_reason: bool) -> String {
    let named: Vec<String> = items
        .iter()
        .map(|r| {
            let why = if with_reason {
                format!(" ({})", r.reason.as_str())
            } else {
                String::new()
            };
            format!("{} {}/{}{why}", r.kind, r.namespace, r.name)
        })
        .collect();
    checks::listed_at_most(&named, ", ", MAX_NAMED)
}

/// The `status.remediations` entry; a `Planned` one (DryRun) shows the exact object.
fn remediation_status(r: &Remediation) -> RemediationStatus {
    RemediationStatus {
        object: (r.state == RemediationState::Planned)
            .then(|| serde_json::to_value(&r.object).ok())
            .flatten(),
        ..r.status()
    }
}

/// Whether writing `desired` would change anything but `lastCheckedTime`.
pub fn changed(live: Option<&MeshReadinessStatus>, desired: &MeshReadinessStatus) -> bool {
    let Some(live) = live else { return true };
    // Conditions other writers own (server-side apply keeps them beside ours) are theirs: told
    // apart, they would make every reconcile write, and every write trigger a reconcile.
    let strip = |s: &MeshReadinessStatus| MeshReadinessStatus {
        last_checked_time: None,
        conditions: s
            .conditions
            .iter()
            .filter(|c| is_ours(&c.type_))
            .cloned()
            .collect(),
        ..s.clone()
    };
    strip(live) != strip(desired)
}

/// A condition type meshready writes.
fn is_ours(type_: &str) -> bool {
    type_ == conditions::READY
        || type_ == conditions::REMEDIATIONS_APPLIED
        || Family::ALL.iter().any(|f| f.condition_type() == type_)
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
            remediations: Vec::new(),
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
    fn conditions_of_other_writers_are_not_a_change() {
        let spec = MeshReadinessSpec::default();
        let first = desired(&spec, Some(1), &checked(vec![]), None, &time(10));
        let mut live = first.clone();
        let mut theirs = cond(&first, "Ready").clone();
        theirs.type_ = "ExternalAudit".into();
        live.conditions.insert(0, theirs);
        let again = desired(&spec, Some(1), &checked(vec![]), Some(&live), &time(20));
        assert!(
            !changed(Some(&live), &again),
            "a foreign condition made a write"
        );
        // One of ours changed by someone else is a change: it is put back.
        live.conditions
            .iter_mut()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .status = "Unknown".into();
        let again = desired(&spec, Some(1), &checked(vec![]), Some(&live), &time(30));
        assert!(changed(Some(&live), &again));
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

    fn remediation(state: RemediationState, reason: Reason, mitigates: &Finding) -> Remediation {
        use crate::api::istio::DestinationRule;
        Remediation {
            kind: Kind::DestinationRule,
            namespace: "shop".into(),
            name: "web-meshreadiness".into(),
            state,
            reason,
            message: "m".into(),
            object: remediation::DesiredObject::DestinationRule(DestinationRule::new(
                "web-meshreadiness",
                Default::default(),
            )),
            mitigates: vec![FindingKey::from(mitigates)],
            expires: None,
        }
    }

    fn with_remediations(findings: Vec<Finding>, remediations: Vec<Remediation>) -> Outcome {
        Outcome::Checked {
            findings,
            namespaces: 1,
            remediations,
        }
    }

    fn spec_in(mode: RemediationMode) -> MeshReadinessSpec {
        let mut spec = MeshReadinessSpec::default();
        spec.remediation.mode = mode;
        spec
    }

    #[test]
    fn applied_remediations_mitigate_and_ready_reads_mitigated() {
        let error = finding(Code::MR601, Severity::Error);
        let other = Finding {
            object: ObjectRef::new("Service", "shop", "api"),
            ..finding(Code::MR201, Severity::Warning)
        };
        let applied = remediation(RemediationState::Applied, Reason::MitigatesFindings, &error);
        let outcome = with_remediations(vec![error.clone(), other], vec![applied]);
        let s = desired(
            &spec_in(RemediationMode::Apply),
            None,
            &outcome,
            None,
            &time(1),
        );
        let ready = cond(&s, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", reasons::MITIGATED)
        );
        assert!(ready.message.contains("MR601 (1)"), "{}", ready.message);
        assert_eq!(
            s.findings[0].mitigated_by.as_deref(),
            Some("DestinationRule/web-meshreadiness")
        );
        assert_eq!(s.findings[1].mitigated_by, None);
        assert_eq!(
            (s.errors, s.warnings),
            (0, 1),
            "counts are of unmitigated findings"
        );
        assert_eq!(cond(&s, "IdleTimeoutsAligned").status, "True");
        assert_eq!(cond(&s, "ProtocolsDeclared").status, "False");
        let applied = cond(&s, "RemediationsApplied");
        assert_eq!(
            (applied.status.as_str(), applied.reason.as_str()),
            ("True", reasons::APPLIED)
        );
        assert_eq!(s.remediations[0].state, RemediationState::Applied);
        assert_eq!(
            s.remediations[0].object, None,
            "applied objects are in the cluster"
        );

        // The same plan in DryRun mitigates nothing and lists the exact object.
        let planned = remediation(RemediationState::Planned, Reason::MitigatesFindings, &error);
        let outcome = with_remediations(vec![error], vec![planned]);
        let s = desired(
            &spec_in(RemediationMode::DryRun),
            None,
            &outcome,
            None,
            &time(1),
        );
        assert_eq!(cond(&s, "Ready").reason, reasons::BLOCKING_FINDINGS);
        assert_eq!(s.findings[0].mitigated_by, None);
        let dry = cond(&s, "RemediationsApplied");
        assert_eq!(
            (dry.status.as_str(), dry.reason.as_str()),
            ("False", reasons::DRY_RUN)
        );
        let object = s.remediations[0].object.as_ref().expect("the exact object");
        assert_eq!(object["kind"], "DestinationRule");
        assert_eq!(object["metadata"]["name"], "web-meshreadiness");
    }

    #[test]
    fn forbidden_wins_over_blocked_and_permissive_is_always_named() {
        let f = finding(Code::MR301, Severity::Error);
        let mut permissive = remediation(RemediationState::Applied, Reason::MitigatesFindings, &f);
        permissive.kind = Kind::PeerAuthentication;
        permissive.name = "meshreadiness-permissive".into();
        permissive.expires = Some(time(100));
        let blocked = remediation(RemediationState::Blocked, Reason::UserObjectForHost, &f);
        let forbidden = remediation(RemediationState::Blocked, Reason::Forbidden, &f);
        let spec = spec_in(RemediationMode::Apply);
        let s = desired(
            &spec,
            None,
            &with_remediations(vec![f.clone()], vec![permissive.clone(), blocked.clone()]),
            None,
            &time(1),
        );
        let c = cond(&s, "RemediationsApplied");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", reasons::BLOCKED)
        );
        assert!(
            c.message
                .contains("PERMISSIVE PeerAuthentication shop/meshreadiness-permissive"),
            "{}",
            c.message
        );
        assert!(c.message.contains("(UserObjectForHost)"), "{}", c.message);
        let s = desired(
            &spec,
            None,
            &with_remediations(vec![f], vec![permissive, blocked, forbidden]),
            None,
            &time(1),
        );
        let c = cond(&s, "RemediationsApplied");
        assert_eq!(c.reason, reasons::FORBIDDEN);
        assert!(c.message.contains("meshready-remediation"), "{}", c.message);
        let nothing = desired(
            &spec,
            None,
            &with_remediations(vec![], vec![]),
            None,
            &time(1),
        );
        assert_eq!(
            cond(&nothing, "RemediationsApplied").reason,
            reasons::NOTHING_TO_APPLY
        );
        let off = desired(
            &MeshReadinessSpec::default(),
            None,
            &with_remediations(vec![], vec![]),
            None,
            &time(1),
        );
        assert!(
            off.conditions
                .iter()
                .all(|c| c.type_ != "RemediationsApplied")
        );
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
