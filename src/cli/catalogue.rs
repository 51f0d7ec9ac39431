//! `meshready checks`: the catalogue of finding codes, and where each is documented.

use serde::Serialize;

use crate::checks::{Code, Severity};

/// The document that explains every code, relative to the repository root.
pub const CHECKS_DOC: &str = "docs/checks.md";

/// The repository, when `Cargo.toml` names one; links are relative to its root otherwise.
fn repository() -> Option<&'static str> {
    Some(env!("CARGO_PKG_REPOSITORY").trim_end_matches('/')).filter(|r| !r.is_empty())
}

/// Where to read about meshready.
pub fn information_uri() -> String {
    repository().map_or_else(|| "README.md".to_string(), str::to_string)
}

/// The heading of `code` in `docs/checks.md` (`## MR201 PortProtocolUndeclared`).
pub fn docs_link(code: Code) -> String {
    let anchor = format!("{}-{}", code.as_str(), code.name()).to_lowercase();
    match repository() {
        Some(repo) => format!("{repo}/blob/main/{CHECKS_DOC}#{anchor}"),
        None => format!("{CHECKS_DOC}#{anchor}"),
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub code: Code,
    pub name: &'static str,
    /// The usual severity; MR301, MR601 and MR701 raise or lower it per finding.
    pub severity: Severity,
    /// The status condition of the code's family.
    pub condition: &'static str,
    pub summary: &'static str,
    pub docs: String,
}

pub fn entries() -> Vec<Entry> {
    Code::ALL
        .iter()
        .map(|&code| Entry {
            code,
            name: code.name(),
            severity: code.default_severity(),
            condition: code.family().condition_type(),
            summary: code.summary(),
            docs: docs_link(code),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_to_the_heading() {
        assert!(docs_link(Code::MR201).ends_with("docs/checks.md#mr201-portprotocolundeclared"));
    }
}
