//! Golden tests: `meshready analyze` on `examples/` is pinned byte for byte, every code of the
//! catalogue is found there exactly where `examples/README.md` says, and the clean namespace
//! stays clean. `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the pinned files after an
//! intended change (review the diff).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use meshready::checks::Code;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn analyze(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshready"))
        .current_dir(ROOT)
        .args(["analyze", "-f", "examples/"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

fn pinned(name: &str, actual: &str) {
    let path = Path::new(ROOT).join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run UPDATE_GOLDEN=1 cargo test --test golden",
            path.display()
        )
    });
    pretty_assertions::assert_eq!(
        expected,
        actual,
        "{} differs; if intended, run UPDATE_GOLDEN=1 cargo test --test golden",
        path.display()
    );
}

#[test]
fn table_is_pinned() {
    let (code, table) = analyze(&[]);
    assert_eq!(
        code, 1,
        "the shop has Errors, so the default --fail-on error exits 1"
    );
    pinned("examples.table.txt", &table);
    assert!(
        table.lines().all(|l| l.chars().count() <= 100),
        "table wider than 100 columns"
    );
}

#[test]
fn json_is_pinned() {
    let (_, json) = analyze(&["-o", "json"]);
    pinned("examples.json", &json);
}

#[test]
fn sarif_is_pinned() {
    let (_, sarif) = analyze(&["-o", "sarif"]);
    pinned("examples.sarif", &sarif);
}

fn findings() -> Vec<serde_json::Value> {
    let (_, json) = analyze(&["-o", "json"]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    report["findings"].as_array().unwrap().clone()
}

#[test]
fn every_code_is_found_in_the_examples() {
    let found: BTreeSet<String> = findings()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect();
    let all: BTreeSet<String> = Code::ALL.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        found,
        all,
        "missing: {:?}",
        all.difference(&found).collect::<Vec<_>>()
    );
}

#[test]
fn examples_readme_names_where_each_code_fires() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("examples/README.md")).unwrap();
    let found: BTreeSet<(String, String, String, String)> = findings()
        .iter()
        .map(|f| {
            let o = &f["object"];
            let s = |v: &serde_json::Value| v.as_str().unwrap().to_string();
            (
                s(&f["code"]),
                s(&o["namespace"]),
                s(&o["kind"]),
                s(&o["name"]),
            )
        })
        .collect();
    let mut rows = 0;
    for line in readme.lines().filter(|l| l.starts_with("| MR")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let object: Vec<String> = cells[4]
            .split(',')
            .map(|p| p.trim().trim_matches('`').to_string())
            .collect();
        let key = (
            cells[1].to_string(),
            object[0].clone(),
            object[1].clone(),
            object[2].clone(),
        );
        assert!(
            found.contains(&key),
            "examples/README.md says {key:?}, analyze does not find it"
        );
        rows += 1;
    }
    assert!(rows >= Code::ALL.len(), "a row per code");
}

#[test]
fn the_clean_namespace_stays_clean() {
    let in_clean: Vec<_> = findings()
        .into_iter()
        .filter(|f| f["object"]["namespace"] == "shop-reviews")
        .collect();
    assert!(in_clean.is_empty(), "{in_clean:#?}");
}

#[test]
fn plan_is_pinned() {
    let (code, plan) = analyze(&["--plan"]);
    assert_eq!(code, 1, "--plan keeps the exit code of the findings");
    pinned("examples.plan.yaml", &plan);
}

/// `(state, kind, namespace, name)` of every remediation `--plan -o json` reports.
fn remediations() -> BTreeSet<(String, String, String, String)> {
    let (_, json) = analyze(&["--plan", "-o", "json"]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let s = |v: &serde_json::Value| v.as_str().unwrap().to_string();
    report["remediations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                s(&r["state"]),
                s(&r["kind"]),
                s(&r["namespace"]),
                s(&r["name"]),
            )
        })
        .collect()
}

#[test]
fn examples_readme_lists_what_plan_gives() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("examples/README.md")).unwrap();
    let section = readme
        .split("## Remediation")
        .nth(1)
        .expect("a Remediation section in examples/README.md");
    let mut listed = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let namespace = cells[1].trim_matches('`');
        for kind in ["PeerAuthentication", "DestinationRule", "VirtualService"] {
            for after in cells[3].split(&format!("{kind} `")).skip(1) {
                let (name, rest) = after.split_once('`').unwrap();
                let state = rest.trim_start().strip_prefix("**").unwrap();
                let state = state.split("**").next().unwrap();
                listed.insert((
                    state.to_string(),
                    kind.to_string(),
                    namespace.to_string(),
                    name.to_string(),
                ));
            }
        }
    }
    assert!(
        !listed.is_empty(),
        "the README's remediation table lists nothing"
    );
    assert_eq!(
        listed,
        remediations(),
        "examples/README.md and --plan disagree"
    );
}
