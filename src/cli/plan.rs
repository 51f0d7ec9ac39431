//! `meshready analyze --plan`: what `remediation.mode: Apply` would create, as YAML documents a
//! GitOps team can commit, or (with `-o json`) a `remediations` list beside the findings.
//!
//! Each MeshReadiness of the input plans for the namespaces it covers, with its own kind flags
//! (its mode counts as `Apply`; a suspended one plans nothing). With no MeshReadiness in the
//! input, every checked namespace gets an implicit one, [`IMPLICIT_NAME`], allowing all three
//! kinds with the default settings.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::api::{MeshReadinessSpec, RemediationMode, RemediationState};
use crate::checks::{CheckRequest, Finding};
use crate::cli::error::{Error, Result};
use crate::cli::render;
use crate::remediation::{
    self, DesiredObject, FindingKey, Kind, MeshReadinessKey, MeshReadinessRef, PlanRequest, Reason,
    Remediation,
};
use crate::snapshot::scope::{covered, selector_problem};
use crate::snapshot::{MeshReadinessInfo, Meta, Snapshot};

/// The name of the MeshReadiness assumed in each namespace when the input has none.
pub const IMPLICIT_NAME: &str = "default";

/// One remediation and the MeshReadiness that planned it. Serialized in `-o json` as an entry
/// of `remediations`: `state`, `reason` (one CamelCase word), `message` (for people) and
/// `object`, plus where it comes from and what it mitigates.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanEntry {
    pub state: RemediationState,
    pub reason: Reason,
    pub message: String,
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    /// `namespace/name` of the MeshReadiness.
    pub mesh_readiness: String,
    pub mitigates: Vec<FindingKey>,
    pub object: DesiredObject,
}

impl PlanEntry {
    fn new(mr: &MeshReadinessKey, remediation: Remediation) -> Self {
        PlanEntry {
            state: remediation.state,
            reason: remediation.reason,
            message: remediation.message,
            kind: remediation.kind,
            namespace: remediation.namespace,
            name: remediation.name,
            mesh_readiness: mr.to_string(),
            mitigates: remediation.mitigates,
            object: remediation.object,
        }
    }
}

/// Every checked namespace's implicit MeshReadiness: all three kinds, default settings.
fn implicit(snapshot: &Snapshot) -> Vec<MeshReadinessInfo> {
    let mut spec = MeshReadinessSpec::default();
    spec.remediation.permissive_mtls = true;
    spec.remediation.idle_timeout = true;
    spec.remediation.reset_retries = true;
    snapshot
        .checkable_namespaces()
        .into_iter()
        .map(|namespace| MeshReadinessInfo {
            meta: Meta {
                namespace,
                name: IMPLICIT_NAME.to_string(),
                ..Meta::default()
            },
            spec: spec.clone(),
        })
        .collect()
}

/// The check request a MeshReadiness makes: its namespaces, disabled codes and app timeouts.
fn request_for(spec: &MeshReadinessSpec, namespaces: BTreeSet<String>) -> CheckRequest {
    let app_idle_timeouts = spec
        .app_idle_timeouts
        .iter()
        .filter(|t| !t.timeout.is_negative())
        .flat_map(|t| {
            namespaces.iter().map(move |ns| {
                (
                    (ns.clone(), t.service.clone()),
                    std::time::Duration::from(t.timeout),
                )
            })
        })
        .collect();
    CheckRequest {
        app_idle_timeouts,
        disabled: spec.checks.disabled.iter().copied().collect(),
        namespaces,
    }
}

/// Plans as the operator would in `Apply` mode, for every MeshReadiness of the input (or the
/// implicit ones). `findings` are those `analyze` reports.
pub fn plan(
    snapshot: &Snapshot,
    findings: &[Finding],
    operator_namespace: &str,
    now: Timestamp,
) -> Vec<PlanEntry> {
    let implicit_ones;
    let candidates: &[MeshReadinessInfo] = if snapshot.mesh_readiness.is_empty() {
        implicit_ones = implicit(snapshot);
        &implicit_ones
    } else {
        &snapshot.mesh_readiness
    };
    let namespaces = snapshot.checkable_namespaces();
    let owners: BTreeMap<String, MeshReadinessKey> =
        remediation::owners(candidates, snapshot, &namespaces, operator_namespace)
            .into_iter()
            .map(|(ns, mr)| (ns, MeshReadinessKey::of(mr)))
            .collect();
    let mut entries = Vec::new();
    for mr in candidates.iter().filter(|mr| !mr.spec.suspend) {
        let usable = mr
            .spec
            .namespace_selector
            .as_ref()
            .and_then(selector_problem)
            .is_none();
        let namespaces = if usable {
            covered(snapshot, mr, operator_namespace)
        } else {
            BTreeSet::new()
        };
        let mut spec = mr.spec.clone();
        spec.remediation.mode = RemediationMode::Apply;
        let checks = request_for(&spec, namespaces);
        let key = MeshReadinessKey::of(mr);
        let planned = remediation::plan(&PlanRequest {
            snapshot,
            findings,
            checks: &checks,
            mesh_readiness: MeshReadinessRef {
                key: &key,
                uid: None,
                spec: &spec,
            },
            owners: &owners,
            now,
            previous: &[],
        });
        entries.extend(planned.into_iter().map(|r| PlanEntry::new(&key, r)));
    }
    entries.sort_by(|a, b| {
        (&a.namespace, a.kind, &a.name, &a.mesh_readiness).cmp(&(
            &b.namespace,
            b.kind,
            &b.name,
            &b.mesh_readiness,
        ))
    });
    entries
}

const HEADER: &str = "meshready analyze --plan: what remediation.mode: Apply would create. \
These objects carry meshready's labels; to commit them yourself instead, drop the \
app.kubernetes.io/managed-by and meshreadiness.io/owner labels, since meshready treats objects \
with them as its own (the checks skip them, and the operator may delete them).";

/// The planned objects as YAML documents, each under a comment naming what it mitigates; what
/// is blocked or expired, with the reason, in comments at the top.
pub fn yaml(entries: &[PlanEntry]) -> Result<String> {
    let mut out = comment(HEADER, "# ", "# ");
    for (state, title) in [
        (
            RemediationState::Blocked,
            "Blocked (not created; the reason says what to change instead):",
        ),
        (
            RemediationState::Expired,
            "Expired (a PERMISSIVE policy past its TTL, not created again):",
        ),
    ] {
        let listed: Vec<&PlanEntry> = entries.iter().filter(|e| e.state == state).collect();
        if listed.is_empty() {
            continue;
        }
        out.push_str("#\n");
        out.push_str(&comment(title, "# ", "# "));
        for entry in listed {
            let text = format!(
                "{} {}/{} (MeshReadiness {}): {}",
                entry.kind, entry.namespace, entry.name, entry.mesh_readiness, entry.message
            );
            out.push_str(&comment(&text, "# - ", "#   "));
        }
    }
    let planned: Vec<&PlanEntry> = entries
        .iter()
        .filter(|e| e.state == RemediationState::Planned)
        .collect();
    if planned.is_empty() {
        out.push_str("#\n# Nothing to create.\n");
    }
    for entry in planned {
        out.push_str("---\n");
        let mitigates: Vec<String> = entry.mitigates.iter().map(|f| f.to_string()).collect();
        let text = format!(
            "{} {}/{} (MeshReadiness {}) mitigates {}.",
            entry.kind,
            entry.namespace,
            entry.name,
            entry.mesh_readiness,
            mitigates.join(", ")
        );
        out.push_str(&comment(&text, "# ", "# "));
        out.push_str(&manifest(&entry.object)?);
    }
    Ok(out)
}

/// `text` as comment lines of at most [`render::WIDTH`] characters. Words are never cut, and a
/// `kubectl ... -p '...'` command gets a line of its own, whole, so it can be copied.
fn comment(text: &str, first: &str, indent: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut line = first.to_string();
    let mut empty = true;
    for (command, segment) in segments(text) {
        if command {
            if !empty {
                lines.push(std::mem::replace(&mut line, indent.to_string()));
            }
            lines.push(format!("{line}{segment}"));
            line = indent.to_string();
            empty = true;
            continue;
        }
        for word in segment.split_whitespace() {
            let needed = word.chars().count() + usize::from(!empty);
            if !empty && line.chars().count() + needed > render::WIDTH {
                lines.push(std::mem::replace(&mut line, indent.to_string()));
                empty = true;
            }
            if !empty {
                line.push(' ');
            }
            line.push_str(word);
            empty = false;
        }
    }
    if !empty || lines.is_empty() {
        lines.push(line);
    }
    lines
        .iter()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect()
}

/// Splits prose from the `kubectl ... -p '...'` commands in it: `(is_command, text)`.
fn segments(text: &str) -> Vec<(bool, &str)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("kubectl ") {
        let Some(end) = rest[start..]
            .find(" -p '")
            .map(|p| start + p + " -p '".len())
            .and_then(|open| rest[open..].find('\'').map(|close| open + close + 1))
        else {
            break;
        };
        out.push((false, &rest[..start]));
        out.push((true, &rest[start..end]));
        rest = &rest[end..];
    }
    out.push((false, rest));
    out
}

/// A planned object as a YAML document: long strings stay plain scalars, as people write them.
fn manifest(object: &DesiredObject) -> Result<String> {
    let options = serde_saphyr::ser_options! { prefer_block_scalars: false };
    serde_saphyr::to_string_with_options(object, options).map_err(|e| Error::Serialize(Box::new(e)))
}

/// `--plan` prints YAML documents or JSON; SARIF has no place for objects.
pub fn check_format(format: crate::cli::OutputFormat) -> Result<()> {
    if format == crate::cli::OutputFormat::Sarif {
        return Err(Error::Usage(
            "--plan prints YAML documents (the default) or JSON (-o json), not SARIF".to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_wrap_without_cutting_words() {
        let long = "x".repeat(150);
        let text = format!("a b {long} c");
        let lines = comment(&text, "# - ", "#   ");
        let lines: Vec<&str> = lines.lines().collect();
        assert_eq!(lines, ["# - a b", &format!("#   {long}"), "#   c"]);
        let short = comment("one two", "# ", "# ");
        assert_eq!(short, "# one two\n");
    }

    #[test]
    fn commands_get_a_line_of_their_own() {
        let text = "Blocked. Patch yours: kubectl -n shop patch destinationrule cart --type merge -p '{\"spec\": 1}' And more.";
        let lines = comment(text, "# - ", "#   ");
        let lines: Vec<&str> = lines.lines().collect();
        assert_eq!(
            lines,
            [
                "# - Blocked. Patch yours:",
                "#   kubectl -n shop patch destinationrule cart --type merge -p '{\"spec\": 1}'",
                "#   And more.",
            ]
        );
        let alone = comment("kubectl -n a patch x y --type merge -p '{}'", "# ", "# ");
        assert_eq!(alone, "# kubectl -n a patch x y --type merge -p '{}'\n");
    }
}
