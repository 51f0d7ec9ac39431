//! SARIF 2.1.0, for code-scanning dashboards: one rule per code, one result per finding, located
//! at the object's file and line when known and always by `namespace/Kind/name`.

use std::path::Path;

use serde_json::{Value, json};

use crate::checks::{Code, Severity};
use crate::cli::catalogue::{docs_link, information_uri};
use crate::cli::load::{Origin, STDIN};
use crate::cli::report::{Report, ReportedFinding};

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// `cwd` turns absolute file names under it into relative URIs.
pub fn report(report: &Report, cwd: Option<&Path>) -> Value {
    let rules: Vec<Value> = Code::ALL.iter().map(|&code| rule(code)).collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|finding| result(finding, cwd))
        .collect();
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": env!("CARGO_PKG_NAME"),
                    "version": env!("CARGO_PKG_VERSION"),
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "informationUri": information_uri(),
                    "rules": rules,
                }
            },
            "results": results,
        }]
    })
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

fn rule(code: Code) -> Value {
    json!({
        "id": code.as_str(),
        "name": code.name(),
        "shortDescription": {"text": code.summary()},
        "helpUri": docs_link(code),
        "defaultConfiguration": {"level": level(code.default_severity())},
        "properties": {"condition": code.family().condition_type()},
    })
}

fn result(finding: &ReportedFinding, cwd: Option<&Path>) -> Value {
    let object = &finding.object;
    let qualified = format!("{}/{}/{}", object.namespace, object.kind, object.name);
    let mut location = json!({
        "logicalLocations": [{
            "name": object.name,
            "fullyQualifiedName": qualified,
            "kind": "resource",
        }]
    });
    if let Some(physical) = finding.source.as_ref().and_then(|o| physical(o, cwd)) {
        location["physicalLocation"] = physical;
    }
    json!({
        "ruleId": finding.code.as_str(),
        "ruleIndex": Code::ALL.iter().position(|&c| c == finding.code),
        "level": level(finding.severity),
        "message": {"text": finding.message},
        "locations": [location],
        "partialFingerprints": {"meshready/v1": format!("{}:{qualified}", finding.code)},
    })
}

fn physical(origin: &Origin, cwd: Option<&Path>) -> Option<Value> {
    if origin.file == STDIN {
        return None;
    }
    Some(json!({
        "artifactLocation": {"uri": file_uri(Path::new(&origin.file), cwd)},
        "region": {"startLine": origin.line},
    }))
}

/// A relative URI for relative paths and paths under `cwd`, else a `file://` URI.
fn file_uri(path: &Path, cwd: Option<&Path>) -> String {
    let relative = match cwd.and_then(|cwd| path.strip_prefix(cwd).ok()) {
        Some(inside) => inside,
        None => path,
    };
    let text = relative.to_string_lossy().replace('\\', "/");
    let text = text.trim_start_matches("./");
    if relative.is_absolute() {
        format!("file://{}", encode(text))
    } else {
        encode(text)
    }
}

/// Percent-encodes what may not stand in a URI path.
fn encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Finding;
    use crate::snapshot::ObjectRef;

    #[test]
    fn uris_are_relative_where_possible() {
        let cwd = Path::new("/repo");
        assert_eq!(
            file_uri(Path::new("./k8s/a b.yaml"), Some(cwd)),
            "k8s/a%20b.yaml"
        );
        assert_eq!(
            file_uri(Path::new("/repo/k8s/a.yaml"), Some(cwd)),
            "k8s/a.yaml"
        );
        assert_eq!(
            file_uri(Path::new("/elsewhere/a.yaml"), Some(cwd)),
            "file:///elsewhere/a.yaml"
        );
    }

    #[test]
    fn results_point_at_rules_and_locations() {
        let finding = Finding {
            code: Code::MR201,
            severity: Severity::Warning,
            object: ObjectRef::new("Service", "shop", "web"),
            message: "declare it".to_string(),
        };
        let origin = |_: &ObjectRef| {
            Some(Origin {
                file: "shop.yaml".to_string(),
                line: 3,
            })
        };
        let namespaces = ["shop".to_string()].into_iter().collect();
        let sarif = report(&Report::new(vec![finding], namespaces, origin), None);
        let run = &sarif["runs"][0];
        assert_eq!(
            run["tool"]["driver"]["rules"].as_array().map(Vec::len),
            Some(Code::ALL.len())
        );
        let result = &run["results"][0];
        let index = result["ruleIndex"].as_u64().expect("index") as usize;
        assert_eq!(run["tool"]["driver"]["rules"][index]["id"], "MR201");
        assert_eq!(result["level"], "warning");
        let location = &result["locations"][0];
        assert_eq!(
            location["physicalLocation"]["artifactLocation"]["uri"],
            "shop.yaml"
        );
        assert_eq!(location["physicalLocation"]["region"]["startLine"], 3);
        assert_eq!(
            location["logicalLocations"][0]["fullyQualifiedName"],
            "shop/Service/web"
        );
    }
}
