//! Properties of the offline analysis, over the examples (and Istio's analyzer inputs and the
//! real-world manifests when ../shared is beside the clone):
//! - deterministic, and independent of the order of the input documents (and of the files);
//! - the manifest loader and the checks never panic on mangled input: they report or refuse it.
//!
//! proptest drives both with a fixed case count, so the run is bounded (a few seconds) and, on a
//! failure, shrinks to a small input and prints it (nothing is written to the tree).

use std::path::{Path, PathBuf};

use clap::Parser;
use meshready::cli::{self, Cli, Command};
use proptest::prelude::*;

/// The documents of every YAML file in `dir` (recursively), as text.
fn documents_in(dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            documents_in(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            out.extend(
                text.split("\n---")
                    .map(|d| d.trim_start_matches("---").trim().to_string())
                    .filter(|d| !d.is_empty() && d.lines().any(|l| l.starts_with("kind:"))),
            );
        }
    }
}

fn corpus() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = Vec::new();
    documents_in(&root.join("examples"), &mut docs);
    docs
}

/// Istio's analyzer inputs and the real-world manifests, one set of documents per file, when
/// ../shared is there.
fn fixture_sets() -> Vec<Vec<String>> {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures");
    if !shared.is_dir() {
        eprintln!("skipped the fixtures: ../shared/fixtures is absent (CI has it)");
        return Vec::new();
    }
    let mut sets = Vec::new();
    for sub in ["istio-analyzer-testdata", "realworld"] {
        let Ok(entries) = std::fs::read_dir(shared.join(sub)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let mut docs = Vec::new();
            if path.is_dir() {
                documents_in(&path, &mut docs);
            } else {
                let dir = tempfile::tempdir().unwrap();
                if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    std::fs::copy(&path, dir.path().join("in.yaml")).unwrap();
                }
                documents_in(dir.path(), &mut docs);
            }
            if !docs.is_empty() {
                sets.push(docs);
            }
        }
    }
    sets
}

/// `meshready analyze -f - -o json` in-process: the exit status and what it printed, or the
/// error it refused the input with.
fn analyze(input: &str) -> Result<(u8, String), String> {
    let args = Cli::parse_from([
        "meshready",
        "analyze",
        "-f",
        "-",
        "-o",
        "json",
        "--fail-on",
        "info",
    ]);
    let Command::Analyze(args) = args.command else {
        unreachable!()
    };
    let mut out = Vec::new();
    match cli::analyze(&args, input.as_bytes(), &mut out) {
        Ok(status) => Ok((status.exit_code(), String::from_utf8(out).unwrap())),
        Err(error) => Err(error.to_string()),
    }
}

/// The report without where each object was read (`source`: file and line), which follows
/// the input's order by design.
fn without_sources(
    report: Result<(u8, String), String>,
) -> Result<(u8, serde_json::Value), String> {
    report.map(|(code, text)| {
        let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
        for finding in json["findings"].as_array_mut().into_iter().flatten() {
            finding.as_object_mut().unwrap().remove("source");
        }
        (code, json)
    })
}

fn joined(docs: &[String]) -> String {
    docs.iter()
        .map(|d| format!("---\n{d}\n"))
        .collect::<String>()
}

#[test]
fn analysis_is_deterministic() {
    let input = joined(&corpus());
    let first = analyze(&input).unwrap();
    for _ in 0..3 {
        assert_eq!(analyze(&input).unwrap(), first);
    }
}

#[test]
fn fixtures_are_independent_of_document_order() {
    for docs in fixture_sets() {
        let forward = without_sources(analyze(&joined(&docs)));
        let mut reversed = docs.clone();
        reversed.reverse();
        assert_eq!(
            without_sources(analyze(&joined(&reversed))),
            forward,
            "{docs:?}"
        );
    }
}

/// A character a mutation may insert: YAML's structure and some plain text.
fn yaml_char() -> impl Strategy<Value = char> {
    prop_oneof![
        prop::sample::select(vec![
            ':', '-', ' ', '\n', '{', '}', '[', ']', ',', '#', '&', '*', '!', '|', '>', '\'', '"',
            '%', '@', '`', '\t', '?', '~',
        ]),
        prop::char::range('0', '9'),
        prop::char::range('a', 'z'),
        Just('é'),
    ]
}

/// One edit at a relative position: insert text, delete a run, or duplicate a run.
#[derive(Clone, Debug)]
enum Edit {
    Insert(f64, String),
    Delete(f64, usize),
    Duplicate(f64, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0.0..1.0, prop::collection::vec(yaml_char(), 1..8))
            .prop_map(|(at, cs)| Edit::Insert(at, cs.into_iter().collect())),
        (0.0..1.0, 1usize..40).prop_map(|(at, n)| Edit::Delete(at, n)),
        (0.0..1.0, 1usize..200).prop_map(|(at, n)| Edit::Duplicate(at, n)),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = |f: f64| ((chars.len() as f64) * f) as usize;
    match edit {
        Edit::Insert(f, s) => {
            let i = at(*f);
            format!(
                "{}{s}{}",
                chars[..i].iter().collect::<String>(),
                chars[i..].iter().collect::<String>()
            )
        }
        Edit::Delete(f, n) => {
            let i = at(*f);
            let j = (i + n).min(chars.len());
            format!(
                "{}{}",
                chars[..i].iter().collect::<String>(),
                chars[j..].iter().collect::<String>()
            )
        }
        Edit::Duplicate(f, n) => {
            let i = at(*f);
            let j = (i + n).min(chars.len());
            let run: String = chars[i..j].iter().collect();
            format!(
                "{}{run}{run}{}",
                chars[..i].iter().collect::<String>(),
                chars[j..].iter().collect::<String>()
            )
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Shuffled documents give the same report (findings, their order, the summary).
    #[test]
    fn independent_of_document_order(docs in Just(corpus()).prop_shuffle()) {
        let baseline = without_sources(analyze(&joined(&corpus())));
        prop_assert_eq!(without_sources(analyze(&joined(&docs))), baseline);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Mangled manifests are reported on or refused (exit 2 with a message), never a panic;
    /// and the same mangled input always gives the same answer.
    #[test]
    fn mangled_input_never_panics(
        pick in prop::sample::subsequence(corpus(), 1..6),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let mut text = joined(&pick);
        for e in &edits {
            text = apply(&text, e);
        }
        let first = analyze(&text);
        if let Err(message) = &first {
            prop_assert!(!message.is_empty());
        }
        prop_assert_eq!(analyze(&text), first);
    }
}
