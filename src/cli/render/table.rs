//! The default, human output: findings grouped by namespace, then severity, wrapped to
//! [`WIDTH`] columns, ending with a summary line. No colour, so it reads the same in CI logs.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt::Write;

use crate::checks::{Code, Severity};
use crate::cli::render::{WIDTH, wrap, wrap_words};
use crate::cli::report::{Report, ReportedFinding};

/// Findings sit under their severity; continuation lines align with the check's name.
const FINDING_INDENT: &str = "    ";
const TEXT_INDENT: &str = "           ";

pub fn report(report: &Report) -> String {
    let mut groups: BTreeMap<&str, BTreeMap<Reverse<Severity>, Vec<&ReportedFinding>>> =
        BTreeMap::new();
    for finding in &report.findings {
        groups
            .entry(&finding.object.namespace)
            .or_default()
            .entry(Reverse(finding.severity))
            .or_default()
            .push(finding);
    }
    let mut out = String::new();
    if groups.is_empty() {
        out.push_str("No findings.\n\n");
    }
    for (namespace, by_severity) in groups {
        let _ = writeln!(out, "namespace {namespace}");
        for (Reverse(severity), findings) in by_severity {
            let _ = writeln!(out, "  {severity} ({})", findings.len());
            for finding in findings {
                write_finding(&mut out, finding);
            }
        }
        out.push('\n');
    }
    out.push_str(&report.summary.line());
    out.push('\n');
    out
}

fn write_finding(out: &mut String, finding: &ReportedFinding) {
    let object = format!("{}/{}", finding.object.kind, finding.object.name);
    let source = finding
        .source
        .as_ref()
        .map(|s| format!("({}:{})", s.file, s.line));
    let fields = [finding.code.as_str(), finding.check, object.as_str()]
        .into_iter()
        .chain(source.as_deref());
    for line in wrap_words(fields, "  ", WIDTH, FINDING_INDENT, TEXT_INDENT) {
        let _ = writeln!(out, "{line}");
    }
    for line in wrap(&finding.message, WIDTH, TEXT_INDENT, TEXT_INDENT) {
        let _ = writeln!(out, "{line}");
    }
}

/// `meshready checks`: one block per code, its summary wrapped below.
pub fn catalogue() -> String {
    let name_width = Code::ALL.iter().map(|c| c.name().len()).max().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<7}{:<w$}  {:<9}CONDITION",
        "CODE",
        "NAME",
        "SEVERITY",
        w = name_width
    );
    for code in Code::ALL {
        let _ = writeln!(
            out,
            "{:<7}{:<w$}  {:<9}{}",
            code.as_str(),
            code.name(),
            code.default_severity().as_str(),
            code.family().condition_type(),
            w = name_width
        );
        for line in wrap(code.summary(), WIDTH, "       ", "       ") {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Finding;
    use crate::cli::load::Origin;
    use crate::snapshot::ObjectRef;

    fn finding(code: Code, severity: Severity, ns: &str, message: &str) -> Finding {
        Finding {
            code,
            severity,
            object: ObjectRef::new("Service", ns, "web"),
            message: message.to_string(),
        }
    }

    #[test]
    fn groups_by_namespace_then_severity_within_width() {
        let long = "word ".repeat(60);
        let mut findings = vec![
            finding(Code::MR201, Severity::Warning, "shop", &long),
            finding(Code::MR203, Severity::Error, "shop", "conflict"),
            finding(Code::MR101, Severity::Info, "ads", "not injected"),
        ];
        findings.sort_by(Finding::report_order);
        let namespaces = ["ads", "shop"].iter().map(|s| s.to_string()).collect();
        let origin = |_: &ObjectRef| {
            Some(Origin {
                file: "manifests/shop.yaml".to_string(),
                line: 12,
            })
        };
        let text = report(&Report::new(findings, namespaces, origin));
        assert!(text.lines().all(|l| l.chars().count() <= WIDTH), "{text}");
        let headers: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with(FINDING_INDENT))
            .collect();
        assert_eq!(
            headers,
            [
                "namespace ads",
                "  Info (1)",
                "",
                "namespace shop",
                "  Error (1)",
                "  Warning (1)",
                "",
                "1 error, 1 warning, 1 info in 2 namespaces"
            ]
        );
        assert!(text.contains(
            "    MR203  PortProtocolConflict  Service/web  (manifests/shop.yaml:12)\n           conflict\n"
        ), "{text}");
    }

    #[test]
    fn catalogue_lists_every_code_within_width() {
        let text = catalogue();
        assert!(text.lines().all(|l| l.chars().count() <= WIDTH), "{text}");
        for code in Code::ALL {
            assert!(text.contains(code.name()), "{code}");
        }
    }
}
