//! The `meshready` binary end to end: exit codes, inputs, outputs, and hostile input.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Any run, hostile input included, must end well before this.
const DEADLINE: Duration = Duration::from_secs(10);

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `args` in `dir`, feeding `stdin`; kills it and fails past [`DEADLINE`].
fn run_in(dir: &Path, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshready"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_string();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes()); // the binary may not read it
    });
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("meshready {args:?} ran longer than {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    feeder.join().expect("stdin feeder");
    Run {
        code: status.code().expect("exited, not killed by a signal"),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn run(args: &[&str], stdin: &str) -> Run {
    run_in(Path::new("."), args, stdin)
}

/// A temporary directory holding `files` (relative path, content).
fn workspace(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, content) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }
    dir
}

fn path(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).display().to_string()
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

fn codes(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            let o = &f["object"];
            format!(
                "{} {}/{}/{}",
                f["code"].as_str().unwrap_or("?"),
                o["namespace"],
                o["kind"],
                o["name"]
            )
            .replace('"', "")
        })
        .collect()
}

/// A Service whose port `web` declares no protocol: MR201, a Warning.
const UNDECLARED: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - name: web
    port: 80
";

/// The same Service with its protocol declared.
const DECLARED: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - name: http-web
    port: 80
";

#[test]
fn exit_codes_follow_fail_on() {
    let dir = workspace(&[("svc.yaml", UNDECLARED)]);
    let file = path(&dir, "svc.yaml");
    let code = |extra: &[&str]| {
        let mut args = vec!["analyze", "-f", &file];
        args.extend_from_slice(extra);
        let run = run(&args, "");
        assert!(run.stderr.is_empty(), "{}", run.stderr);
        run.code
    };
    assert_eq!(
        code(&[]),
        0,
        "a Warning does not fail at the default --fail-on error"
    );
    assert_eq!(code(&["--fail-on", "error"]), 0);
    assert_eq!(code(&["--fail-on", "warning"]), 1);
    assert_eq!(code(&["--fail-on", "info"]), 1);
    assert_eq!(code(&["--fail-on", "never"]), 0);
}

#[test]
fn finds_mr201_and_not_when_declared() {
    let found = json(&run(&["analyze", "-f", "-", "-o", "json"], UNDECLARED));
    assert!(
        codes(&found).contains(&"MR201 shop/Service/web".to_string()),
        "{found}"
    );
    let clean = json(&run(&["analyze", "-f", "-", "-o", "json"], DECLARED));
    assert!(
        !codes(&clean).iter().any(|c| c.starts_with("MR201")),
        "{clean}"
    );
}

#[test]
fn reads_stdin() {
    let run = run(&["analyze", "-f", "-", "--fail-on", "warning"], UNDECLARED);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("MR201"), "{}", run.stdout);
    assert!(
        run.stdout.contains("Service/web  (<stdin>:1)"),
        "{}",
        run.stdout
    );
}

#[test]
fn walks_directories_recursively_and_skips_other_files() {
    let json_service = r#"{"apiVersion": "v1", "kind": "Service",
 "metadata": {"name": "api", "namespace": "ads"},
 "spec": {"ports": [{"name": "api", "port": 8080}]}}"#;
    let dir = workspace(&[
        ("k8s/shop/svc.yaml", UNDECLARED),
        ("k8s/ads/deep/api.json", json_service),
        ("k8s/README.txt", "not: [yaml"),
        ("k8s/.hidden/broken.yaml", "not: [yaml"),
    ]);
    let run = run_in(dir.path(), &["analyze", "-f", "k8s", "-o", "json"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = json(&run);
    let found = codes(&report);
    assert!(
        found.contains(&"MR201 shop/Service/web".to_string()),
        "{found:?}"
    );
    assert!(
        found.contains(&"MR201 ads/Service/api".to_string()),
        "{found:?}"
    );
    let mr201: Vec<_> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["code"] == "MR201")
        .map(|f| f["source"]["file"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(mr201, ["k8s/ads/deep/api.json", "k8s/shop/svc.yaml"]);
}

#[test]
fn reads_lists_json_and_skips_unknown_kinds() {
    let list = r#"{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "cart", "namespace": "shop"},
   "spec": {"ports": [{"name": "cart", "port": 7070}]}},
  {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "shop"},
   "data": {"weird": 42}}
]}"#;
    let other = "\
# a comment-only document
---
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
spec: {anything: [1, 2, {deep: true}]}
---
just: a map without apiVersion or kind
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec: 17
";
    let dir = workspace(&[("list.json", list), ("other.yaml", other)]);
    let run = run(
        &[
            "analyze",
            "-f",
            &path(&dir, "list.json"),
            "-f",
            &path(&dir, "other.yaml"),
            "-o",
            "json",
        ],
        "",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let found = codes(&json(&run));
    assert!(
        found.contains(&"MR201 shop/Service/cart".to_string()),
        "{found:?}"
    );
}

#[test]
fn malformed_known_kind_names_file_and_line() {
    let bad = UNDECLARED.replace("port: 80", "port: eighty");
    let dir = workspace(&[
        ("ok.yaml", DECLARED),
        ("bad.yaml", &format!("# header\n---\n{bad}")),
    ]);
    let run = run_in(
        dir.path(),
        &["analyze", "-f", "ok.yaml", "-f", "bad.yaml"],
        "",
    );
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("bad.yaml:12: Service \"web\": spec.ports[0].port: "),
        "{}",
        run.stderr
    );
}

#[test]
fn invalid_yaml_names_file_and_line() {
    let dir = workspace(&[(
        "broken.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: [web\n",
    )]);
    let run = run_in(dir.path(), &["analyze", "-f", "broken.yaml"], "");
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.starts_with("meshready: broken.yaml:"),
        "{}",
        run.stderr
    );
    let line = run.stderr["meshready: broken.yaml:".len()..]
        .split(':')
        .next()
        .and_then(|n| n.parse::<u32>().ok());
    assert!(line.is_some(), "{}", run.stderr);
}

#[test]
fn missing_file_is_bad_input() {
    let run = run(&["analyze", "-f", "/nonexistent/manifests.yaml"], "");
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("/nonexistent/manifests.yaml"),
        "{}",
        run.stderr
    );
}

#[test]
fn alias_bomb_fails_fast() {
    let mut bomb = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    for pair in names.windows(2) {
        let refs = vec![format!("*{}", pair[0]); 9].join(", ");
        bomb.push_str(&format!("{}: &{} [{refs}]\n", pair[1], pair[1]));
    }
    let started = Instant::now();
    let run = run(&["analyze", "-f", "-"], &bomb);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("<stdin>:"), "{}", run.stderr);
    assert!(started.elapsed() < DEADLINE);
}

#[test]
fn deep_nesting_fails_fast() {
    let flow = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let json = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    let block: String = (0..1_000)
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect();
    for input in [flow, json, block] {
        let run = run(&["analyze", "-f", "-"], &input);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(run.stderr.contains("<stdin>:"), "{}", run.stderr);
    }
}

#[test]
fn json_shape() {
    let run = run(&["analyze", "-f", "-", "-o", "json"], UNDECLARED);
    let report = json(&run);
    let finding = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["code"] == "MR201")
        .expect("an MR201 finding");
    for key in ["code", "check", "severity", "object", "message"] {
        assert!(finding.get(key).is_some(), "{key} missing: {finding}");
    }
    assert_eq!(finding["check"], "PortProtocolUndeclared");
    assert_eq!(finding["severity"], "Warning");
    assert_eq!(
        finding["object"],
        serde_json::json!({"kind": "Service", "namespace": "shop", "name": "web"})
    );
    assert!(finding["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(
        report["summary"]["warnings"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    );
    assert_eq!(report["namespaces"], serde_json::json!(["shop"]));
}

#[test]
fn yaml_output_is_the_same_document() {
    let as_json = json(&run(&["analyze", "-f", "-", "-o", "json"], UNDECLARED));
    let yaml = run(&["analyze", "-f", "-", "-o", "yaml"], UNDECLARED);
    let as_yaml: Value = serde_saphyr::from_str(&yaml.stdout).expect("valid YAML");
    assert_eq!(as_yaml, as_json);
}

#[test]
fn sarif_shape() {
    let dir = workspace(&[("svc.yaml", UNDECLARED)]);
    let run = run_in(
        dir.path(),
        &["analyze", "-f", "svc.yaml", "-o", "sarif"],
        "",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let sarif = json(&run);
    assert_eq!(sarif["version"], "2.1.0");
    assert!(
        sarif["$schema"]
            .as_str()
            .is_some_and(|s| s.contains("sarif"))
    );
    let driver = &sarif["runs"][0]["tool"]["driver"];
    assert_eq!(driver["name"], "meshready");
    assert_eq!(driver["version"], env!("CARGO_PKG_VERSION"));
    assert!(driver["informationUri"].is_string());
    let rules = driver["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), meshready::checks::Code::ALL.len());
    let mr201 = rules
        .iter()
        .find(|r| r["id"] == "MR201")
        .expect("rule MR201");
    assert_eq!(mr201["name"], "PortProtocolUndeclared");
    assert!(mr201["shortDescription"]["text"].is_string());
    assert!(
        mr201["helpUri"]
            .as_str()
            .is_some_and(|u| u.contains("docs/checks.md#mr201-portprotocolundeclared"))
    );
    assert_eq!(mr201["defaultConfiguration"]["level"], "warning");
    let result = sarif["runs"][0]["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["ruleId"] == "MR201")
        .expect("an MR201 result");
    assert_eq!(result["level"], "warning");
    assert!(result["message"]["text"].is_string());
    let location = &result["locations"][0];
    assert_eq!(
        location["physicalLocation"]["artifactLocation"]["uri"],
        "svc.yaml"
    );
    assert_eq!(location["physicalLocation"]["region"]["startLine"], 1);
    assert_eq!(
        location["logicalLocations"][0]["fullyQualifiedName"],
        "shop/Service/web"
    );
}

#[test]
fn table_fits_100_columns() {
    let long = UNDECLARED.replace(
        "name: web\n  namespace",
        &format!("name: {}\n  namespace", "a".repeat(63)),
    );
    let dir = workspace(&[(&format!("{}/svc.yaml", "d".repeat(80)), &long)]);
    let run = run_in(dir.path(), &["analyze", "-f", "."], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("MR201"), "{}", run.stdout);
    for line in run.stdout.lines() {
        assert!(line.chars().count() <= 100, "too wide: {line:?}");
    }
    let last = run.stdout.lines().last().unwrap_or_default();
    assert!(last.ends_with("in 1 namespace"), "{last}");
}

#[test]
fn meshreadiness_disables_checks_in_its_namespaces() {
    let own = "\
apiVersion: meshreadiness.io/v1alpha1
kind: MeshReadiness
metadata: {name: ready, namespace: shop}
spec:
  checks: {disabled: [MR201]}
";
    let fleet = "\
apiVersion: meshreadiness.io/v1alpha1
kind: MeshReadiness
metadata: {name: fleet, namespace: meshreadiness-system}
spec:
  namespaceSelector: {matchLabels: {team: ads}}
  checks: {disabled: [MR201]}
---
apiVersion: v1
kind: Namespace
metadata: {name: ads, labels: {team: ads, istio-injection: enabled}}
";
    let ads = UNDECLARED.replace("namespace: shop", "namespace: ads");
    let cart = UNDECLARED.replace("namespace: shop", "namespace: cart");
    let input = [UNDECLARED, own, &ads, fleet, &cart].join("---\n");
    let found = codes(&json(&run(&["analyze", "-f", "-", "-o", "json"], &input)));
    let mr201: Vec<_> = found.iter().filter(|c| c.starts_with("MR201")).collect();
    assert_eq!(mr201, ["MR201 cart/Service/web"], "{found:?}");
}

#[test]
fn bad_mesh_config_is_bad_input() {
    let dir = workspace(&[("mesh.yaml", "rootNamespace: [x\n"), ("svc.yaml", DECLARED)]);
    let run = run_in(
        dir.path(),
        &["analyze", "-f", "svc.yaml", "--mesh-config", "mesh.yaml"],
        "",
    );
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("mesh.yaml"), "{}", run.stderr);
}

#[test]
fn checks_lists_the_catalogue() {
    let table = run(&["checks"], "");
    assert_eq!(table.code, 0);
    assert!(
        table.stdout.contains("MR201  PortProtocolUndeclared"),
        "{}",
        table.stdout
    );
    assert!(table.stdout.lines().all(|l| l.chars().count() <= 100));
    let list = json(&run(&["checks", "-o", "json"], ""));
    let entries = list.as_array().expect("a list");
    assert_eq!(entries.len(), meshready::checks::Code::ALL.len());
    assert_eq!(entries[0]["code"], "MR101");
    assert_eq!(entries[0]["condition"], "SidecarsInjected");
}

#[test]
fn version_names_the_binary() {
    let run = run(&["version"], "");
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout.trim(),
        format!("meshready {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["analyze"], "").code, 2);
    assert_eq!(run(&["analyze", "-f", "-", "-o", "xml"], "").code, 2);
}

#[test]
fn committed_crd_is_current() {
    let committed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds/meshreadiness.yaml");
    let committed = std::fs::read_to_string(&committed).unwrap_or_default();
    let run = run(&["crd"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        committed == run.stdout,
        "crds/meshreadiness.yaml is stale: run `make crd` \
         (cargo run -- crd > crds/meshreadiness.yaml) and commit the result"
    );
}
