//! Small builders for check tests: manifests in, findings out.

use crate::checks::{self, CheckRequest, Code, Finding};
use crate::snapshot::{BuildOptions, ClusterObject, Snapshot};

/// Builds a snapshot from YAML manifests (multi-document) with offline defaults.
pub fn snapshot(yaml: &str) -> Snapshot {
    snapshot_with(yaml, &BuildOptions::default())
}

pub fn snapshot_with(yaml: &str, options: &BuildOptions) -> Snapshot {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(yaml).expect("test YAML parses");
    let objects = docs
        .into_iter()
        .filter_map(|doc| ClusterObject::from_value(doc).expect("test object decodes"));
    Snapshot::build(objects, options).expect("snapshot builds")
}

/// Runs every check on every non-system namespace of the manifests.
pub fn findings(yaml: &str) -> Vec<Finding> {
    let snapshot = snapshot(yaml);
    run_all(&snapshot)
}

pub fn run_all(snapshot: &Snapshot) -> Vec<Finding> {
    let request = CheckRequest {
        namespaces: snapshot.checkable_namespaces(),
        ..CheckRequest::default()
    };
    checks::run(snapshot, &request)
}

/// The findings of one code, as `(kind/name, severity)` pairs plus messages.
pub fn of(findings: &[Finding], code: Code) -> Vec<&Finding> {
    findings.iter().filter(|f| f.code == code).collect()
}

/// `Kind/name` of each finding with `code`.
pub fn objects(findings: &[Finding], code: Code) -> Vec<String> {
    of(findings, code)
        .iter()
        .map(|f| format!("{}/{}", f.object.kind, f.object.name))
        .collect()
}

/// The fixtures shared beside the repository (`../shared/fixtures`), or `None`, with a message,
/// where they are absent (a user's clone); CI always has them.
pub fn fixtures() -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures"));
    if dir.is_dir() {
        Some(dir.to_path_buf())
    } else {
        eprintln!("skipped: {} is absent", dir.display());
        None
    }
}

/// Every document of `examples/`, file by file in name order; documents without a kind (empty
/// ones) left out.
pub fn examples() -> Vec<serde_json::Value> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("examples")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(path).expect("reads");
            serde_saphyr::from_multiple::<serde_json::Value>(&text).expect("example parses")
        })
        .filter(|doc| doc.get("kind").is_some())
        .collect()
}
