//! Keeps `docs/checks.md` in step with the catalogue of finding codes in code.

use std::path::Path;

use meshready::checks::{Code, Family};

/// The bold-led paragraphs every code's section must have, in this order.
const PARAGRAPHS: [&str; 6] = [
    "**Severity:**",
    "**Reported on:**",
    "**What it means:**",
    "**Why it causes 503s:**",
    "**How to fix:**",
    "**istioctl analyze / Kiali:**",
];

fn read_doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/checks.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The document's lines outside fenced code blocks, with their 1-based line numbers.
fn prose_lines(doc: &str) -> Vec<(usize, &str)> {
    let mut in_fence = false;
    let mut lines = Vec::new();
    for (i, line) in doc.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if !in_fence {
            lines.push((i + 1, line));
        }
    }
    assert!(
        !in_fence,
        "docs/checks.md: a fenced code block is never closed"
    );
    lines
}

/// `MRnnn` at the start of `text`, if any.
fn code_prefix(text: &str) -> Option<&str> {
    let candidate = text.get(..5)?;
    let bytes = candidate.as_bytes();
    (bytes[0] == b'M' && bytes[1] == b'R' && bytes[2..].iter().all(u8::is_ascii_digit))
        .then_some(candidate)
}

/// A heading's level and text, for lines such as `## MR101 NamespaceNotInjected`.
fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.bytes().take_while(|&b| b == b'#').count();
    if level == 0 || level > 6 {
        return None;
    }
    line[level..]
        .strip_prefix(' ')
        .map(|text| (level, text.trim_end()))
}

struct Section<'a> {
    line: usize,
    heading: &'a str,
    body: Vec<&'a str>,
}

/// The `## MRnnn Name` sections, each up to the next level-1 or level-2 heading.
fn code_sections(doc: &str) -> Vec<Section<'_>> {
    let mut sections: Vec<Section> = Vec::new();
    let mut current: Option<Section> = None;
    for (number, line) in prose_lines(doc) {
        if let Some((level, text)) = heading(line)
            && level <= 2
        {
            sections.extend(current.take());
            if level == 2 && code_prefix(text).is_some() {
                current = Some(Section {
                    line: number,
                    heading: text,
                    body: Vec::new(),
                });
            }
            continue;
        }
        if let Some(section) = current.as_mut() {
            section.body.push(line);
        }
    }
    sections.extend(current);
    sections
}

#[test]
fn every_code_has_a_section_in_catalogue_order() {
    let doc = read_doc();
    let found: Vec<String> = code_sections(&doc)
        .iter()
        .map(|s| s.heading.to_string())
        .collect();
    let expected: Vec<String> = Code::ALL
        .iter()
        .map(|code| format!("{} {}", code.as_str(), code.name()))
        .collect();
    assert_eq!(
        found, expected,
        "docs/checks.md must have one `## MRnnn Name` heading per code, in the order of Code::ALL"
    );
}

#[test]
fn no_heading_names_an_unknown_code() {
    let doc = read_doc();
    for (number, line) in prose_lines(&doc) {
        let Some((level, text)) = heading(line) else {
            continue;
        };
        let Some(prefix) = code_prefix(text) else {
            continue;
        };
        let code: Code = prefix.parse().unwrap_or_else(|_| {
            panic!("docs/checks.md:{number}: heading {text:?} names a code that does not exist")
        });
        assert_eq!(
            level, 2,
            "docs/checks.md:{number}: the heading for {code} must be a level-2 `## ` heading"
        );
        assert_eq!(
            text,
            format!("{} {}", code.as_str(), code.name()),
            "docs/checks.md:{number}: heading must be exactly `## {} {}`",
            code.as_str(),
            code.name()
        );
    }
}

#[test]
fn every_section_has_the_bold_paragraphs_in_order() {
    let doc = read_doc();
    for section in code_sections(&doc) {
        let mut last: Option<(usize, &str)> = None;
        for label in PARAGRAPHS {
            let starts: Vec<usize> = section
                .body
                .iter()
                .enumerate()
                .filter(|(_, line)| line.starts_with(label))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(
                starts.len(),
                1,
                "docs/checks.md:{}: section {:?} must have exactly one paragraph starting with {label}",
                section.line,
                section.heading
            );
            let at = starts[0];
            let text = section.body[at][label.len()..].trim();
            assert!(
                !text.is_empty()
                    || section
                        .body
                        .get(at + 1)
                        .is_some_and(|l| !l.trim().is_empty()),
                "docs/checks.md:{}: section {:?}: {label} is empty",
                section.line,
                section.heading
            );
            if let Some((before, previous)) = last {
                assert!(
                    at > before,
                    "docs/checks.md:{}: section {:?}: {label} must come after {previous}",
                    section.line,
                    section.heading
                );
            }
            last = Some((at, label));
        }
    }
}

#[test]
fn severity_paragraph_names_the_default_severity() {
    let doc = read_doc();
    let sections = code_sections(&doc);
    for code in Code::ALL {
        let heading = format!("{} {}", code.as_str(), code.name());
        let Some(section) = sections.iter().find(|s| s.heading == heading) else {
            panic!("docs/checks.md has no section for {heading}");
        };
        let severity = section
            .body
            .iter()
            .find(|line| line.starts_with(PARAGRAPHS[0]))
            .expect("checked by every_section_has_the_bold_paragraphs_in_order");
        let default = code.default_severity().as_str();
        assert!(
            severity[PARAGRAPHS[0].len()..]
                .trim_start()
                .starts_with(default),
            "docs/checks.md:{}: the severity of {code} must start with its default, {default}",
            section.line
        );
    }
}

#[test]
fn families_table_names_every_condition_type() {
    let doc = read_doc();
    for family in Family::ALL {
        let condition = format!("`{}`", family.condition_type());
        assert!(
            doc.lines()
                .any(|line| line.starts_with('|') && line.contains(&condition)),
            "docs/checks.md must list the condition type {condition} in its families table"
        );
    }
}
