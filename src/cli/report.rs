//! The result of `meshready analyze`, as every output format sees it.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::checks::{Code, Finding, Severity};
use crate::cli::load::Origin;
use crate::cli::plan::PlanEntry;
use crate::snapshot::ObjectRef;

/// The JSON and YAML document. `findings[].{code, check, severity, object, message}` never change
/// meaning; other keys may be added.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub findings: Vec<ReportedFinding>,
    /// The namespaces checked.
    pub namespaces: BTreeSet<String>,
    pub summary: Summary,
    /// With `--plan`: what `remediation.mode: Apply` would create, or why it may not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remediations: Option<Vec<PlanEntry>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReportedFinding {
    pub code: Code,
    /// The check's name, e.g. `PortProtocolUndeclared`.
    pub check: &'static str,
    pub severity: Severity,
    pub object: ObjectRef,
    pub message: String,
    /// Where the object was read, when it came from a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Origin>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub errors: usize,
    pub warnings: usize,
    pub infos: usize,
    /// How many namespaces were checked.
    pub namespaces: usize,
}

impl Report {
    /// `findings` must already be in [`Finding::report_order`].
    pub fn new(
        findings: Vec<Finding>,
        namespaces: BTreeSet<String>,
        origin: impl Fn(&ObjectRef) -> Option<Origin>,
    ) -> Self {
        let mut summary = Summary {
            namespaces: namespaces.len(),
            ..Summary::default()
        };
        for finding in &findings {
            match finding.severity {
                Severity::Error => summary.errors += 1,
                Severity::Warning => summary.warnings += 1,
                Severity::Info => summary.infos += 1,
            }
        }
        let findings = findings
            .into_iter()
            .map(|f| ReportedFinding {
                source: origin(&f.object),
                code: f.code,
                check: f.code.name(),
                severity: f.severity,
                object: f.object,
                message: f.message,
            })
            .collect();
        Report {
            findings,
            namespaces,
            summary,
            remediations: None,
        }
    }

    /// Whether a finding reaches `threshold` (`None`: nothing fails the run).
    pub fn fails(&self, threshold: Option<Severity>) -> bool {
        threshold.is_some_and(|t| self.findings.iter().any(|f| f.severity >= t))
    }
}

impl Summary {
    /// `3 errors, 12 warnings, 4 infos in 5 namespaces`.
    pub fn line(&self) -> String {
        format!(
            "{}, {}, {} in {}",
            plural(self.errors, "error"),
            plural(self.warnings, "warning"),
            plural(self.infos, "info"),
            plural(self.namespaces, "namespace"),
        )
    }
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(code: Code, severity: Severity) -> Finding {
        Finding {
            code,
            severity,
            object: ObjectRef::new("Service", "shop", "web"),
            message: "m".to_string(),
        }
    }

    #[test]
    fn summary_counts_and_threshold() {
        let findings = vec![
            finding(Code::MR201, Severity::Warning),
            finding(Code::MR101, Severity::Info),
        ];
        let namespaces = ["shop".to_string()].into_iter().collect();
        let report = Report::new(findings, namespaces, |_| None);
        assert_eq!(
            report.summary.line(),
            "0 errors, 1 warning, 1 info in 1 namespace"
        );
        assert!(!report.fails(Some(Severity::Error)));
        assert!(report.fails(Some(Severity::Warning)));
        assert!(report.fails(Some(Severity::Info)));
        assert!(!report.fails(None));
    }
}
