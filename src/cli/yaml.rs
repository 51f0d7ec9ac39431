//! YAML (and JSON, which YAML reads too) parsed under a budget into a tree that remembers the line
//! of every node, so an error in a known kind can point at the offending line.
//!
//! Hostile input fails fast: the budget bounds nesting (no stack overflow), alias replay (no
//! billion laughs), and the number of nodes, events and documents (no hang on huge input); the
//! loader caps the bytes of each input before parsing.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

/// Bytes read from one file or from stdin before giving up.
pub const MAX_INPUT_BYTES: usize = 32 * 1024 * 1024;
/// Nesting of mappings and sequences. Kubernetes objects (CRD schemas included) stay well below.
pub const MAX_DEPTH: usize = 128;
/// Documents in one input (a rendered chart or a cluster dump may hold thousands).
pub const MAX_DOCUMENTS: usize = 20_000;
/// Mappings, sequences and scalars in one input.
pub const MAX_NODES: usize = 1_000_000;
/// Parser events in one input.
pub const MAX_EVENTS: usize = 3_000_000;
/// Alias uses (`*name`) in one input: manifests rarely use any.
pub const MAX_ALIASES: usize = 1_000;
/// Events replayed by expanding aliases in one input: what stops a billion-laughs bomb early.
pub const MAX_REPLAYED_EVENTS: usize = 100_000;

/// The parser options every input is read with.
pub fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            flow_nesting_limit: MAX_DEPTH,
            max_documents: MAX_DOCUMENTS,
            max_nodes: MAX_NODES,
            max_events: MAX_EVENTS,
            max_aliases: MAX_ALIASES,
            max_anchors: MAX_ALIASES,
            max_merge_keys: MAX_ALIASES,
            max_total_scalar_bytes: MAX_INPUT_BYTES,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_REPLAYED_EVENTS,
            max_replay_stack_depth: 16,
        },
        with_snippet: false,
    }
}

/// A node and the line it starts on (1-based).
#[derive(Clone, Debug, PartialEq)]
pub struct Located {
    pub line: u64,
    pub node: Node,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    String(String),
    Seq(Vec<Located>),
    /// Entries in document order; keys are read as text, as Kubernetes' JSON needs.
    Map(Vec<(Key, Located)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub text: String,
    pub line: u64,
}

/// A syntax or budget error, with the line where the parser stopped.
#[derive(Debug)]
pub struct SyntaxError {
    pub line: Option<u64>,
    pub message: String,
    pub source: Option<Box<serde_saphyr::Error>>,
}

/// The parser recurses once per nesting level, and a debug build spends up to 64 KiB of stack on
/// each: it runs on a thread whose stack holds [`MAX_DEPTH`] levels with room to spare.
const PARSER_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Parses every document of one input. Empty and comment-only documents yield nothing.
pub fn parse_documents(text: &str) -> Result<Vec<Located>, SyntaxError> {
    let parse = || {
        serde_saphyr::from_multiple_with_options::<Located>(text, options()).map_err(|source| {
            SyntaxError {
                line: source.location().map(|l| l.line()).filter(|&l| l > 0),
                message: message_of(&source),
                source: Some(Box::new(source)),
            }
        })
    };
    std::thread::scope(|scope| {
        let parser = std::thread::Builder::new()
            .name("yaml-parser".to_string())
            .stack_size(PARSER_STACK_BYTES)
            .spawn_scoped(scope, parse)
            .map_err(|e| SyntaxError {
                line: None,
                message: format!("cannot start the parser thread: {e}"),
                source: None,
            })?;
        parser
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The error's text without the "at line X, column Y" the loader states its own way.
fn message_of(error: &serde_saphyr::Error) -> String {
    let mut inner = error;
    while let serde_saphyr::Error::AliasError { error, .. }
    | serde_saphyr::Error::WithSnippet { error, .. } = inner
    {
        inner = error;
    }
    // The text may quote the input: keep control characters out of the terminal.
    let text: String = UserMessageFormatter
        .format_message(inner)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    match inner.location().map(|l| l.column()).filter(|&c| c > 0) {
        Some(column) => format!("{text} (column {column})"),
        None => text,
    }
}

impl Located {
    pub fn get(&self, key: &str) -> Option<&Located> {
        match &self.node {
            Node::Map(entries) => entries.iter().find(|(k, _)| k.text == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The JSON value, as the Kubernetes API would see it.
    pub fn to_json(&self) -> Value {
        match &self.node {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(n) => Value::from(*n),
            Node::UInt(n) => Value::from(*n),
            Node::Float(x) => Value::from(*x),
            Node::String(s) => Value::String(s.clone()),
            Node::Seq(items) => Value::Array(items.iter().map(Located::to_json).collect()),
            Node::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.text.clone(), v.to_json()))
                    .collect::<Map<_, _>>(),
            ),
        }
    }

    /// The line of the field at `path` (as `serde_path_to_error` prints it, e.g.
    /// `spec.ports[0].port`), or of the deepest part of it that exists.
    pub fn line_at(&self, path: &str) -> u64 {
        let mut node = self;
        let mut line = self.line;
        let mut rest = path;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('[') {
                let Some((index, tail)) = after.split_once(']') else {
                    break;
                };
                let (Ok(index), Node::Seq(items)) = (index.parse::<usize>(), &node.node) else {
                    break;
                };
                let Some(item) = items.get(index) else {
                    break;
                };
                (node, line, rest) = (item, item.line, tail);
            } else {
                let wanted = rest.strip_prefix('.').unwrap_or(rest);
                let Node::Map(entries) = &node.node else {
                    break;
                };
                // Keys may hold dots (`sidecar.istio.io/inject`): take the longest that fits.
                let found = entries
                    .iter()
                    .filter(|(k, _)| {
                        wanted.strip_prefix(k.text.as_str()).is_some_and(|tail| {
                            tail.is_empty() || tail.starts_with('.') || tail.starts_with('[')
                        })
                    })
                    .max_by_key(|(k, _)| k.text.len());
                let Some((key, value)) = found else {
                    break;
                };
                (node, line, rest) = (value, key.line, &wanted[key.text.len()..]);
            }
        }
        line
    }
}

impl<'de> Deserialize<'de> for Located {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Node>::deserialize(deserializer)?;
        Ok(Located {
            line: spanned.referenced.line(),
            node: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::Float(v as f64), Node::Int))
    }

    fn visit_u128<E>(self, v: u128) -> Result<Node, E> {
        Ok(u64::try_from(v).map_or(Node::Float(v as f64), Node::UInt))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::String(String::from_utf8_lossy(v).into_owned()))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Located>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<Spanned<KeyText>, Located>()? {
            let key = Key {
                text: key.value.0,
                line: key.referenced.line(),
            };
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// A mapping key read as text: `2:` is "2", `n:` is "n" (not `false`), `~:` is "null".
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_option(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = KeyText;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar mapping key")
    }

    fn visit_none<E>(self) -> Result<KeyText, E> {
        Ok(KeyText("null".to_string()))
    }

    fn visit_unit<E>(self) -> Result<KeyText, E> {
        Ok(KeyText("null".to_string()))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<KeyText, D::Error> {
        deserializer.deserialize_string(KeyVisitor)
    }

    fn visit_str<E>(self, v: &str) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<KeyText, E> {
        Ok(KeyText(v))
    }

    fn visit_bool<E>(self, v: bool) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Vec<Located> {
        parse_documents(text).expect("parses")
    }

    #[test]
    fn skips_empty_and_comment_only_documents() {
        let docs = parse("# only a comment\n---\n---\na: 1\n---\n# trailing\n");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].line, 4);
        assert_eq!(docs[0].to_json(), json!({"a": 1}));
    }

    #[test]
    fn keys_are_text_and_merges_apply() {
        let docs = parse("base: &b {x: 1}\nm:\n  <<: *b\n  n: no\n  2: two\n  ~: nul\n");
        assert_eq!(
            docs[0].to_json(),
            json!({"base": {"x": 1}, "m": {"n": false, "2": "two", "null": "nul", "x": 1}})
        );
    }

    #[test]
    fn reads_json() {
        let docs = parse(r#"{"kind": "List", "items": [{"a": [1, 2.5, null, true]}]}"#);
        assert_eq!(
            docs[0].to_json(),
            json!({"kind": "List", "items": [{"a": [1, 2.5, null, true]}]})
        );
    }

    #[test]
    fn finds_the_line_of_a_path() {
        let text = "kind: Service\nmetadata:\n  annotations:\n    a.b/c: x\nspec:\n  ports:\n  - name: web\n    port: eighty\n";
        let doc = &parse(text)[0];
        assert_eq!(doc.line_at("spec.ports[0].port"), 8);
        assert_eq!(doc.line_at("spec.ports[0]"), 7);
        assert_eq!(doc.line_at("metadata.annotations.a.b/c"), 4);
        assert_eq!(doc.line_at("spec.ports[3].port"), 6);
        assert_eq!(doc.line_at(""), 1);
    }

    #[test]
    fn errors_carry_the_line() {
        let err = parse_documents("a: 1\nb: [unclosed\n").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(!err.message.contains("at line"), "{}", err.message);
    }

    #[test]
    fn deep_nesting_and_alias_bombs_fail() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse_documents(&deep).is_err());
        let block: String = (0..1_000)
            .map(|i| format!("{}k:\n", "  ".repeat(i)))
            .collect();
        assert!(parse_documents(&block).is_err());
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
        for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
            .iter()
            .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
        {
            let refs = vec![format!("*{prev}"); 9].join(", ");
            bomb.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        assert!(parse_documents(&bomb).is_err());
    }
}
