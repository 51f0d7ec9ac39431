//! Events (events.k8s.io/v1) on transitions only: a finding appears or clears, a condition
//! flips, a remediation is planned (DryRun), applied, blocked, expires or is removed. A Warning
//! also goes to the object a new Error finding is about.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType};

use crate::api::{MeshReadiness, MeshReadinessStatus, RemediationState, RemediationStatus};
use crate::checks::{Finding, Severity};
use crate::operator::context::{Context, FindingKey};

/// Above this many transitions at once, one summary Event is sent instead of one each.
const MAX_SINGLE_EVENTS: usize = 10;

/// What changed between two reconciles.
#[derive(Debug, Default, PartialEq)]
pub struct Transitions {
    pub appeared: Vec<Finding>,
    pub cleared: Vec<Finding>,
    /// (type, old status, new condition status, reason, message)
    pub flipped: Vec<(String, Option<String>, String, String, String)>,
    pub remediations: Vec<RemediationChange>,
}

/// A remediation whose state changed between two statuses.
#[derive(Debug, PartialEq)]
pub enum RemediationChange {
    /// Listed with a new state, or (while `Planned`, in DryRun) a new object.
    Now(RemediationStatus),
    /// Was `Applied`, and is no longer listed: meshready deleted it.
    Removed(RemediationStatus),
}

fn remediation_changes(
    old: Option<&MeshReadinessStatus>,
    new: &MeshReadinessStatus,
) -> Vec<RemediationChange> {
    let before = old.map(|o| o.remediations.as_slice()).unwrap_or_default();
    let same = |a: &RemediationStatus, b: &RemediationStatus| {
        (&a.kind, &a.namespace, &a.name) == (&b.kind, &b.namespace, &b.name)
    };
    let mut out: Vec<RemediationChange> = new
        .remediations
        .iter()
        .filter(|now| {
            before
                .iter()
                .find(|was| same(was, now))
                .is_none_or(|was| was.state != now.state || was.object != now.object)
        })
        .cloned()
        .map(RemediationChange::Now)
        .collect();
    out.extend(
        before
            .iter()
            .filter(|was| was.state == RemediationState::Applied)
            .filter(|was| !new.remediations.iter().any(|now| same(was, now)))
            .cloned()
            .map(RemediationChange::Removed),
    );
    out
}

/// Compares what was reported with what is found now. Pure.
pub fn transitions(
    before: &BTreeMap<FindingKey, Finding>,
    now: &BTreeMap<FindingKey, Finding>,
    old: Option<&MeshReadinessStatus>,
    new: &MeshReadinessStatus,
) -> Transitions {
    let appeared = now
        .iter()
        .filter(|(k, _)| !before.contains_key(k))
        .map(|(_, f)| f.clone())
        .collect();
    let cleared = before
        .iter()
        .filter(|(k, _)| !now.contains_key(k))
        .map(|(_, f)| f.clone())
        .collect();
    let flipped = new
        .conditions
        .iter()
        .filter_map(|c| {
            let previous = old.and_then(|o| o.conditions.iter().find(|p| p.type_ == c.type_));
            // On the first visit only Ready is announced, not ten conditions at once.
            let announce = match previous {
                Some(p) => p.status != c.status,
                None => c.type_ == crate::operator::status::conditions::READY,
            };
            announce.then(|| {
                (
                    c.type_.clone(),
                    previous.map(|p| p.status.clone()),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                )
            })
        })
        .collect();
    Transitions {
        appeared,
        cleared,
        flipped,
        remediations: remediation_changes(old, new),
    }
}

/// Keys findings for comparison.
pub fn keyed(findings: &[Finding]) -> BTreeMap<FindingKey, Finding> {
    findings
        .iter()
        .map(|f| ((f.code, f.object.clone()), f.clone()))
        .collect()
}

fn api_version(kind: &str) -> &'static str {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        "PeerAuthentication" => "security.istio.io/v1",
        "DestinationRule" | "VirtualService" => "networking.istio.io/v1",
        "EnvoyFilter" => "networking.istio.io/v1alpha3",
        _ => "v1",
    }
}

fn describe(f: &Finding) -> String {
    format!(
        "{} {} on {}/{} in {}: {}",
        f.code,
        f.code.name(),
        f.object.kind,
        f.object.name,
        f.object.namespace,
        f.message
    )
}

fn summary(findings: &[Finding]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for f in findings {
        *counts.entry(f.code.to_string()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(c, n)| format!("{c} ({n})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Events are at most 1 kB of note.
fn note(text: String) -> Option<String> {
    let mut text = text;
    if text.len() > 1000 {
        let mut end = 997;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    Some(text)
}

/// An object of a kind the checks read, as an Event reference.
fn reference_to(kind: &str, namespace: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version(kind).to_string()),
        kind: Some(kind.to_string()),
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        ..ObjectReference::default()
    }
}

/// The object a finding is about, as an Event reference.
fn object_reference(f: &Finding) -> ObjectReference {
    reference_to(&f.object.kind, &f.object.namespace, &f.object.name)
}

fn event(
    type_: EventType,
    reason: &str,
    action: String,
    text: String,
    related: Option<ObjectReference>,
) -> Event {
    Event {
        type_,
        reason: reason.to_string(),
        note: note(text),
        action,
        secondary: related,
    }
}

/// The Event about one finding on the MeshReadiness. The Recorder folds Events with the same
/// reason, action and references into one series, so the finding's object and code are part
/// of them: two findings never share an Event.
fn finding_event(type_: EventType, reason: &str, f: &Finding) -> Event {
    event(
        type_,
        reason,
        format!("Check{}", f.code),
        describe(f),
        Some(object_reference(f)),
    )
}

fn severity_type(severity: Severity) -> EventType {
    if severity >= Severity::Warning {
        EventType::Warning
    } else {
        EventType::Normal
    }
}

/// The Event about one remediation, related to the Istio object it concerns (so two never
/// fold into one series). A PERMISSIVE policy applied is a Warning: it weakens mTLS.
fn remediation_event(change: &RemediationChange) -> Event {
    let (entry, removed) = match change {
        RemediationChange::Now(entry) => (entry, false),
        RemediationChange::Removed(entry) => (entry, true),
    };
    let what = format!("{} {}/{}", entry.kind, entry.namespace, entry.name);
    let (type_, reason, text) = match entry.state {
        _ if removed => (
            EventType::Normal,
            "RemediationRemoved",
            format!("Removed {what}: no longer needed or allowed."),
        ),
        RemediationState::Planned => {
            let object = entry
                .object
                .as_ref()
                .map(|o| o.to_string())
                .unwrap_or_default();
            (
                EventType::Normal,
                "RemediationPlanned",
                format!("DryRun: mode Apply would write {what}: {object}"),
            )
        }
        RemediationState::Applied if entry.kind == "PeerAuthentication" => (
            EventType::Warning,
            "PermissiveMtlsApplied",
            format!(
                "Applied {what} (PERMISSIVE: mTLS is not enforced): {}",
                entry.message
            ),
        ),
        RemediationState::Applied => (
            EventType::Normal,
            "RemediationApplied",
            format!("Applied {what}: {}", entry.message),
        ),
        RemediationState::Blocked => (
            EventType::Warning,
            "RemediationBlocked",
            format!("{what} blocked ({}): {}", entry.reason, entry.message),
        ),
        RemediationState::Expired => (
            EventType::Warning,
            "RemediationExpired",
            format!("{what} expired: {}", entry.message),
        ),
    };
    let related = reference_to(&entry.kind, &entry.namespace, &entry.name);
    event(type_, reason, "Remediate".into(), text, Some(related))
}

/// Sends the Events for `transitions`. Failures are logged, not returned: a lost Event must not
/// fail the reconcile that already wrote the status.
pub async fn publish(ctx: &Context, mr: &MeshReadiness, t: &Transitions) {
    let reference = mr.object_ref(&());
    let mut events: Vec<(Event, ObjectReference)> = Vec::new();
    if t.appeared.len() > MAX_SINGLE_EVENTS {
        let worst = t
            .appeared
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Info);
        let text = format!(
            "{} new findings: {}",
            t.appeared.len(),
            summary(&t.appeared)
        );
        events.push((
            event(
                severity_type(worst),
                "FindingsAppeared",
                "Check".into(),
                text,
                None,
            ),
            reference.clone(),
        ));
    } else {
        for f in &t.appeared {
            events.push((
                finding_event(severity_type(f.severity), "FindingAppeared", f),
                reference.clone(),
            ));
        }
    }
    if t.cleared.len() > MAX_SINGLE_EVENTS {
        let text = format!(
            "{} findings cleared: {}",
            t.cleared.len(),
            summary(&t.cleared)
        );
        events.push((
            event(
                EventType::Normal,
                "FindingsCleared",
                "Check".into(),
                text,
                None,
            ),
            reference.clone(),
        ));
    } else {
        for f in &t.cleared {
            events.push((
                finding_event(EventType::Normal, "FindingCleared", f),
                reference.clone(),
            ));
        }
    }
    for (type_, old, new, reason, message) in &t.flipped {
        let event_type = if new == "True" {
            EventType::Normal
        } else {
            EventType::Warning
        };
        let from = old
            .as_deref()
            .map(|o| format!(" (was {o})"))
            .unwrap_or_default();
        let text = format!("{type_} is {new}{from}: {reason}. {message}");
        events.push((
            event(
                event_type,
                &format!("{type_}{new}"),
                "Check".into(),
                text,
                None,
            ),
            reference.clone(),
        ));
    }
    for change in &t.remediations {
        events.push((remediation_event(change), reference.clone()));
    }
    // The object a new Error is about hears of it too, where its owners look.
    for f in t.appeared.iter().filter(|f| f.severity == Severity::Error) {
        let text = format!(
            "{}: {} (reported by MeshReadiness {}/{})",
            f.code,
            f.message,
            reference.namespace.as_deref().unwrap_or_default(),
            reference.name.as_deref().unwrap_or_default()
        );
        let on_object = event(
            EventType::Warning,
            f.code.name(),
            format!("Check{}", f.code),
            text,
            Some(reference.clone()),
        );
        events.push((on_object, object_reference(f)));
    }
    for (event, regarding) in events {
        match ctx.recorder.publish(&event, &regarding).await {
            Ok(()) => ctx.metrics.write("Event", "create"),
            Err(error) => tracing::warn!(%error, reason = %event.reason, "could not publish event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MeshReadinessSpec;
    use crate::checks::Code;
    use crate::operator::status::{Outcome, desired};
    use crate::snapshot::ObjectRef;

    fn finding(code: Code, name: &str) -> Finding {
        Finding {
            code,
            severity: Severity::Warning,
            object: ObjectRef::new("Service", "shop", name),
            message: "m".into(),
        }
    }

    fn time(secs: i64) -> crate::api::k8s::Time {
        crate::api::k8s::Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn only_changes_are_transitions() {
        let spec = MeshReadinessSpec::default();
        let a = vec![finding(Code::MR201, "web"), finding(Code::MR701, "web")];
        let b = vec![finding(Code::MR201, "web"), finding(Code::MR201, "api")];
        let first = desired(
            &spec,
            None,
            &Outcome::Checked {
                findings: a.clone(),
                namespaces: 1,
                remediations: Vec::new(),
            },
            None,
            &time(1),
        );
        let second = desired(
            &spec,
            None,
            &Outcome::Checked {
                findings: b.clone(),
                namespaces: 1,
                remediations: Vec::new(),
            },
            Some(&first),
            &time(2),
        );
        let t = transitions(&keyed(&a), &keyed(&b), Some(&first), &second);
        assert_eq!(t.appeared, vec![finding(Code::MR201, "api")]);
        assert_eq!(t.cleared, vec![finding(Code::MR701, "web")]);
        // MR701 cleared, so its family's condition flipped; Ready (threshold Error) did not.
        let flipped: Vec<&str> = t.flipped.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(flipped, ["RetriesCoverResets"]);
        let same = transitions(&keyed(&b), &keyed(&b), Some(&second), &second);
        assert_eq!(same, Transitions::default());
    }

    fn entry(name: &str, state: RemediationState) -> RemediationStatus {
        RemediationStatus {
            kind: "DestinationRule".into(),
            namespace: "shop".into(),
            name: name.into(),
            state,
            reason: "MitigatesFindings".into(),
            message: "m".into(),
            object: None,
        }
    }

    fn listing(entries: Vec<RemediationStatus>) -> MeshReadinessStatus {
        MeshReadinessStatus {
            remediations: entries,
            ..MeshReadinessStatus::default()
        }
    }

    #[test]
    fn remediation_states_announce_changes_only() {
        use RemediationState::*;
        let before = listing(vec![
            entry("a", Planned),
            entry("b", Applied),
            entry("c", Applied),
        ]);
        let after = listing(vec![
            entry("a", Applied),
            entry("b", Applied),
            entry("d", Blocked),
        ]);
        let changes = remediation_changes(Some(&before), &after);
        assert_eq!(
            changes,
            vec![
                RemediationChange::Now(entry("a", Applied)),
                RemediationChange::Now(entry("d", Blocked)),
                RemediationChange::Removed(entry("c", Applied)),
            ]
        );
        assert!(remediation_changes(Some(&after), &after).is_empty());
        let event = remediation_event(&changes[2]);
        assert_eq!(event.reason, "RemediationRemoved");
        let mut permissive = entry("meshreadiness-permissive", Applied);
        permissive.kind = "PeerAuthentication".into();
        let event = remediation_event(&RemediationChange::Now(permissive));
        assert_eq!(
            (event.type_, event.reason.as_str()),
            (EventType::Warning, "PermissiveMtlsApplied")
        );
        // In DryRun a changed object is news even though the state is still Planned.
        let mut planned = entry("a", Planned);
        planned.object = Some(serde_json::json!({"spec": {"host": "a"}}));
        let mut replanned = planned.clone();
        replanned.object = Some(serde_json::json!({"spec": {"host": "b"}}));
        let changes = remediation_changes(Some(&listing(vec![planned])), &listing(vec![replanned]));
        assert_eq!(changes.len(), 1);
        let note = remediation_event(&changes[0]).note.unwrap_or_default();
        assert!(note.contains(r#""host":"b""#), "{note}");
    }

    #[test]
    fn first_visit_announces_ready_only() {
        let spec = MeshReadinessSpec::default();
        let s = desired(
            &spec,
            None,
            &Outcome::Checked {
                findings: vec![],
                namespaces: 1,
                remediations: Vec::new(),
            },
            None,
            &time(1),
        );
        let t = transitions(&BTreeMap::new(), &BTreeMap::new(), None, &s);
        assert_eq!(t.flipped.len(), 1);
        assert_eq!(t.flipped[0].0, "Ready");
    }
}
