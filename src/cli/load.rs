//! Reads manifest files, directories and stdin into cluster objects, remembering where each
//! object came from so reports can point at its file and line.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;
use tracing::{debug, warn};

use crate::cli::error::{Error, Position, Result};
use crate::cli::yaml::{self, Located, Node};
use crate::snapshot::{ClusterObject, ObjectRef};

/// How stdin is named in messages and reports.
pub const STDIN: &str = "<stdin>";

const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Where an object was read: the file as the user named it (or `<stdin>`) and the line its
/// document or list item starts on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub file: String,
    pub line: u64,
}

/// The objects read, in input order (into a list, or straight into a snapshot builder), and
/// where each came from.
#[derive(Debug, Default)]
pub struct Loaded<Objects = Vec<ClusterObject>> {
    pub objects: Objects,
    pub origins: BTreeMap<ObjectRef, Origin>,
}

/// One input to read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Input {
    Stdin,
    File(PathBuf),
}

/// Reads every path: `-` is `stdin`, a directory is walked for *.yaml, *.yml and *.json files
/// (sorted, hidden entries skipped), anything else is read as a file.
pub fn load(paths: &[PathBuf], default_namespace: &str, stdin: impl Read) -> Result<Loaded> {
    load_into(paths, default_namespace, stdin, Vec::new())
}

/// [`load`], each object passed to `objects` as soon as it is decoded, while only its file's
/// documents are held.
pub fn load_into<Objects: Extend<ClusterObject>>(
    paths: &[PathBuf],
    default_namespace: &str,
    stdin: impl Read,
    objects: Objects,
) -> Result<Loaded<Objects>> {
    let mut loaded = Loaded {
        objects,
        origins: BTreeMap::new(),
    };
    let mut stdin = Some(stdin);
    for input in inputs(paths)? {
        let (name, text) = match input {
            Input::Stdin => match stdin.take() {
                Some(reader) => (STDIN.to_string(), read_capped(reader, STDIN)?),
                None => continue, // `-f -` twice: stdin is read once
            },
            Input::File(path) => {
                let name = path.display().to_string();
                let file = std::fs::File::open(&path).map_err(|source| Error::Read {
                    path: path.clone(),
                    source,
                })?;
                let text = read_capped(file, &name)?;
                (name, text)
            }
        };
        debug!(file = %name, bytes = text.len(), "reading");
        read_documents(&name, &text, default_namespace, &mut loaded)?;
    }
    Ok(loaded)
}

fn inputs(paths: &[PathBuf]) -> Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            inputs.push(Input::Stdin);
            continue;
        }
        let meta = std::fs::metadata(path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            let mut files = Vec::new();
            walk(path, &mut files)?;
            files.sort();
            inputs.extend(files.into_iter().map(Input::File));
        } else {
            inputs.push(Input::File(path.clone()));
        }
    }
    Ok(inputs)
}

/// Collects manifest files under `dir`. Symlinked files are read; symlinked directories are not
/// followed, so a link loop cannot trap the walk.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let read_error = |source| Error::Read {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let file_type = entry.file_type().map_err(read_error)?;
        if file_type.is_dir() {
            walk(&path, files)?;
        } else if is_manifest(&path) && (file_type.is_file() || path.is_file()) {
            files.push(path);
        }
    }
    Ok(())
}

fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

/// Reads at most [`yaml::MAX_INPUT_BYTES`] of UTF-8 text (a leading byte-order mark dropped).
pub(crate) fn read_capped(reader: impl Read, name: &str) -> Result<String> {
    let mut bytes = Vec::new();
    let limit = yaml::MAX_INPUT_BYTES;
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| Error::Read {
            path: PathBuf::from(name),
            source,
        })?;
    if bytes.len() > limit {
        return Err(Error::TooLarge {
            file: name.to_string(),
            limit,
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| Error::NotUtf8 {
        file: name.to_string(),
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

fn read_documents(
    file: &str,
    text: &str,
    default_ns: &str,
    loaded: &mut Loaded<impl Extend<ClusterObject>>,
) -> Result<()> {
    let documents = yaml::parse_documents(text).map_err(|e| Error::Syntax {
        at: Position {
            file: file.to_string(),
            line: e.line,
        },
        message: e.message,
        source: e.source,
    })?;
    for document in &documents {
        read_object(file, document, document.to_json(), default_ns, loaded)?;
    }
    Ok(())
}

/// Reads one document or list item; `value` is its JSON (with kind and apiVersion filled in for
/// the items of a typed list such as `ServiceList`).
fn read_object(
    file: &str,
    located: &Located,
    value: Value,
    default_ns: &str,
    loaded: &mut Loaded<impl Extend<ClusterObject>>,
) -> Result<()> {
    let at = |line| Position {
        file: file.to_string(),
        line: Some(line),
    };
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(item_kind) = list_item_kind(&kind, located) {
        return read_list(file, located, &value, item_kind, default_ns, loaded);
    }
    let identity = identity(&value, default_ns);
    let object = match ClusterObject::from_value(value) {
        Ok(Some(object)) => object,
        Ok(None) => {
            debug!(
                file,
                line = located.line,
                kind,
                "skipped: not a kind the checks read"
            );
            return Ok(());
        }
        Err(source) => {
            return Err(Error::Decode {
                at: at(located.line_at(&source.path)),
                source,
            });
        }
    };
    let Some(identity) = identity else {
        return Err(Error::Malformed {
            at: at(located.line),
            what: format!("{kind} has no metadata.name"),
        });
    };
    let origin = Origin {
        file: file.to_string(),
        line: located.line,
    };
    match loaded.origins.get(&identity) {
        Some(first) => warn!(
            object = %format!("{}/{}/{}", identity.namespace, identity.kind, identity.name),
            first = %format!("{}:{}", first.file, first.line),
            again = %format!("{}:{}", origin.file, origin.line),
            "object defined twice"
        ),
        None => {
            loaded.origins.insert(identity, origin);
        }
    }
    loaded.objects.extend([object]);
    Ok(())
}

/// Reads the items of a list document; `item_kind` fills in the kind items of a typed list omit.
fn read_list(
    file: &str,
    list: &Located,
    value: &Value,
    item_kind: Option<&str>,
    default_ns: &str,
    loaded: &mut Loaded<impl Extend<ClusterObject>>,
) -> Result<()> {
    let items = match list.get("items") {
        None => return Ok(()),
        Some(items) => match &items.node {
            Node::Null => return Ok(()),
            Node::Seq(items) => items,
            _ => {
                return Err(Error::Malformed {
                    at: Position {
                        file: file.to_string(),
                        line: Some(items.line),
                    },
                    what: "items of a list is not a list".to_string(),
                });
            }
        },
    };
    let api_version = value.get("apiVersion");
    for item in items {
        let mut value = item.to_json();
        if let (Some(object), Some(item_kind)) = (value.as_object_mut(), item_kind) {
            object
                .entry("kind")
                .or_insert_with(|| Value::String(item_kind.to_string()));
            if let Some(api_version) = api_version {
                object
                    .entry("apiVersion")
                    .or_insert_with(|| api_version.clone());
            }
        }
        read_object(file, item, value, default_ns, loaded)?;
    }
    Ok(())
}

/// For a list document (`kind: List`, or `FooList` with `items`): `Some(Some("Foo"))` for a
/// typed list whose items may omit their kind, `Some(None)` for a plain `List`.
fn list_item_kind<'k>(kind: &'k str, located: &Located) -> Option<Option<&'k str>> {
    if kind == "List" {
        return Some(None);
    }
    let item_kind = kind.strip_suffix("List").filter(|k| !k.is_empty())?;
    matches!(
        located.get("items").map(|i| &i.node),
        Some(Node::Seq(_) | Node::Null)
    )
    .then_some(Some(item_kind))
}

/// The object's kind, namespace and name as findings name it; a Namespace is its own namespace.
fn identity(value: &Value, default_ns: &str) -> Option<ObjectRef> {
    let kind = value.get("kind").and_then(Value::as_str)?;
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())?;
    let namespace = if kind == "Namespace" {
        name
    } else {
        value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
            .unwrap_or(default_ns)
    };
    Some(ObjectRef::new(kind, namespace, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Loaded> {
        load(&[PathBuf::from("-")], "default", text.as_bytes())
    }

    fn names(loaded: &Loaded) -> Vec<String> {
        loaded
            .origins
            .iter()
            .map(|(o, origin)| format!("{}/{}/{}@{}", o.namespace, o.kind, o.name, origin.line))
            .collect()
    }

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  ports:\n  - name: web\n    port: 80\n";

    #[test]
    fn reads_documents_and_skips_unknown_kinds() {
        let text = format!(
            "# comment\n---\n---\n{SERVICE}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n---\nfoo: bar\n"
        );
        let loaded = load_text(&text).expect("loads");
        assert_eq!(loaded.objects.len(), 1);
        assert_eq!(names(&loaded), ["shop/Service/web@4"]);
    }

    #[test]
    fn reads_lists_and_typed_lists() {
        let text = r#"{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
  {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}
]}
---
apiVersion: v1
kind: ServiceList
items:
- metadata: {name: api, namespace: shop}
"#;
        let loaded = load_text(text).expect("loads");
        assert_eq!(
            names(&loaded),
            [
                "shop/Namespace/shop@2",
                "default/Service/web@3",
                "shop/Service/api@9"
            ]
        );
    }

    #[test]
    fn malformed_known_kind_names_the_line() {
        let text = SERVICE.replace("port: 80", "port: eighty");
        let err = load_text(&text).expect_err("malformed");
        let message = err.to_string();
        assert!(
            message.starts_with("<stdin>:9: Service \"web\": spec.ports[0].port: "),
            "{message}"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = load_text("apiVersion: v1\nkind: Service\nmetadata: {name: [x\n").unwrap_err();
        assert!(err.to_string().starts_with("<stdin>:"), "{err}");
        assert!(matches!(
            err,
            Error::Syntax {
                at: Position { line: Some(_), .. },
                ..
            }
        ));
    }

    #[test]
    fn a_known_kind_needs_a_name() {
        let err = load_text("apiVersion: v1\nkind: Service\nmetadata: {}\n").unwrap_err();
        assert_eq!(err.to_string(), "<stdin>:1: Service has no metadata.name");
    }

    #[test]
    fn walks_directories_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/c")).expect("mkdir");
        std::fs::create_dir_all(root.join(".git")).expect("mkdir");
        for name in [
            "b/c/z.yml",
            "b/a.json",
            "a.yaml",
            "notes.txt",
            ".git/x.yaml",
        ] {
            std::fs::write(root.join(name), "").expect("write");
        }
        let found: Vec<_> = inputs(&[root.to_path_buf()])
            .expect("walks")
            .into_iter()
            .map(|i| match i {
                Input::File(p) => p.strip_prefix(root).expect("under root").to_path_buf(),
                Input::Stdin => PathBuf::from("-"),
            })
            .collect();
        let expected: Vec<PathBuf> = ["a.yaml", "b/a.json", "b/c/z.yml"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(found, expected);
    }
}
