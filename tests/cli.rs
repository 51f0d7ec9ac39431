//! The `meshready` binary end to end: exit codes, inputs, outputs, and hostile input.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/odd.rs"]
mod odd;

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

// --- `analyze --plan` ---------------------------------------------------------------------------

/// One namespace that needs all three remediations: mesh-wide STRICT with a plaintext caller in
/// `shop` (MR301 on `api`), and Service `api` with a 60s app idle timeout (MR601, MR701).
const NEEDS_ALL: &str = "\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec: {containers: [{name: api, image: shop/api, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: legacy, namespace: shop}
spec:
  selector: {matchLabels: {app: legacy}}
  template:
    metadata: {labels: {app: legacy, sidecar.istio.io/inject: 'false'}}
    spec: {containers: [{name: legacy, image: shop/legacy}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop, annotations: {meshreadiness.io/app-idle-timeout: 60s}}
spec:
  selector: {app: api}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: grpc-admin, port: 9000, targetPort: 9000}
";

/// The YAML documents of a `--plan` run (comments and empty documents dropped).
fn documents(run: &Run) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(&run.stdout)
        .unwrap_or_else(|e| panic!("--plan output is not YAML: {e}\n{}", run.stdout));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn by_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn plan_prints_the_three_objects_as_yaml() {
    let run = run(&["analyze", "-f", "-", "--plan"], NEEDS_ALL);
    assert_eq!(
        run.code, 1,
        "the MR301 Error still fails the run: {}",
        run.stderr
    );
    let docs = documents(&run);
    assert_eq!(docs.len(), 3, "{}", run.stdout);
    for doc in &docs {
        let labels = &doc["metadata"]["labels"];
        assert_eq!(
            labels["app.kubernetes.io/managed-by"], "meshreadiness",
            "{doc}"
        );
        // No MeshReadiness in the input: the implicit `default` in each namespace.
        assert_eq!(labels["meshreadiness.io/owner"], "shop.default", "{doc}");
        assert_eq!(doc["metadata"]["namespace"], "shop");
        assert!(
            doc["metadata"].get("ownerReferences").is_none(),
            "no uid offline"
        );
    }

    let pa = by_kind(&docs, "PeerAuthentication");
    assert_eq!(pa.len(), 1);
    assert_eq!(pa[0]["apiVersion"], "security.istio.io/v1");
    assert_eq!(pa[0]["metadata"]["name"], "meshreadiness-permissive");
    assert_eq!(
        pa[0]["spec"],
        serde_json::json!({"mtls": {"mode": "PERMISSIVE"}})
    );

    let dr = by_kind(&docs, "DestinationRule");
    assert_eq!(dr.len(), 1);
    assert_eq!(dr[0]["apiVersion"], "networking.istio.io/v1");
    assert_eq!(dr[0]["metadata"]["name"], "api-meshreadiness");
    assert_eq!(dr[0]["spec"]["host"], "api.shop.svc.cluster.local");
    let pool = &dr[0]["spec"]["trafficPolicy"]["connectionPool"];
    assert_eq!(pool["http"]["idleTimeout"], "54s");
    assert_eq!(pool["tcp"]["idleTimeout"], "54s");

    let vs = by_kind(&docs, "VirtualService");
    assert_eq!(vs.len(), 1);
    assert_eq!(vs[0]["apiVersion"], "networking.istio.io/v1");
    assert_eq!(vs[0]["metadata"]["name"], "api-meshreadiness");
    assert_eq!(
        vs[0]["spec"]["hosts"],
        serde_json::json!(["api.shop.svc.cluster.local"])
    );
    assert!(vs[0]["spec"].get("gateways").is_none(), "the mesh only");
    let http = vs[0]["spec"]["http"].as_array().expect("http routes");
    assert_eq!(http.len(), 2);
    let methods: Vec<&str> = http[0]["match"]
        .as_array()
        .expect("method matches")
        .iter()
        .map(|m| m["method"]["exact"].as_str().expect("exact method"))
        .collect();
    assert_eq!(methods, ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);
    assert!(
        http[1].get("match").is_none(),
        "the second route is the catch-all"
    );
    let defaults = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
    for (route, extra) in http.iter().zip(["reset", "reset-before-request"]) {
        assert_eq!(route["retries"]["attempts"], 2);
        assert_eq!(route["retries"]["retryOn"], format!("{defaults},{extra}"));
        // No port: each of the Service's ports routes to itself.
        assert_eq!(
            route["route"],
            serde_json::json!([{"destination": {"host": "api.shop.svc.cluster.local"}}])
        );
    }
}

#[test]
fn plan_json_lists_remediations_beside_findings() {
    let blocked_vs = "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: shop}
spec: {hosts: [api], http: [{route: [{destination: {host: api}}]}]}
";
    let input = format!("{NEEDS_ALL}{blocked_vs}");
    let run = run(&["analyze", "-f", "-", "--plan", "-o", "json"], &input);
    assert_eq!(run.code, 1);
    let report = json(&run);
    assert!(!codes(&report).is_empty(), "findings stay");
    let remediations = report["remediations"].as_array().expect("remediations");
    assert_eq!(remediations.len(), 3, "{report:#}");
    for r in remediations {
        assert!(
            matches!(r["state"].as_str(), Some("Planned" | "Blocked")),
            "{r}"
        );
        assert!(r["reason"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
        assert!(
            r["object"]["apiVersion"].is_string() && r["object"]["kind"].is_string(),
            "{r}"
        );
        assert_eq!(r["object"]["kind"], r["kind"]);
        assert_eq!(r["object"]["metadata"]["name"], r["name"]);
        assert!(
            r["mitigates"].as_array().is_some_and(|m| !m.is_empty()),
            "{r}"
        );
    }
    let vs = remediations
        .iter()
        .find(|r| r["kind"] == "VirtualService")
        .expect("the VirtualService");
    assert_eq!(vs["state"], "Blocked");
    assert_eq!(vs["reason"], "UserObjectForHost");
    let message = vs["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("kubectl -n shop patch virtualservice api --type json"),
        "{message}"
    );
    // Without --plan there is no `remediations` key.
    let plain = json(&run_plain(&input));
    assert!(plain.get("remediations").is_none());
}

fn run_plain(input: &str) -> Run {
    run(&["analyze", "-f", "-", "-o", "json"], input)
}

#[test]
fn plan_follows_the_flags_of_the_input_meshreadiness() {
    let only_idle = "---
apiVersion: meshreadiness.io/v1alpha1
kind: MeshReadiness
metadata: {name: ready, namespace: shop}
spec: {remediation: {mode: DryRun, idleTimeout: true}}
";
    let out = run(
        &["analyze", "-f", "-", "--plan"],
        &format!("{NEEDS_ALL}{only_idle}"),
    );
    let docs = documents(&out);
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds, ["DestinationRule"], "{}", out.stdout);
    assert_eq!(
        docs[0]["metadata"]["labels"]["meshreadiness.io/owner"],
        "shop.ready"
    );
    // Mode Off with every flag: --plan shows what Apply would create.
    let off = "---
apiVersion: meshreadiness.io/v1alpha1
kind: MeshReadiness
metadata: {name: ready, namespace: shop}
spec: {remediation: {permissiveMtls: true, idleTimeout: true, resetRetries: true, retryAttempts: 4}}
";
    let out = run(
        &["analyze", "-f", "-", "--plan"],
        &format!("{NEEDS_ALL}{off}"),
    );
    let docs = documents(&out);
    assert_eq!(docs.len(), 3, "{}", out.stdout);
    let vs = by_kind(&docs, "VirtualService");
    assert_eq!(vs[0]["spec"]["http"][0]["retries"]["attempts"], 4);
    // No flag: nothing, and the YAML says so.
    let none = "---
apiVersion: meshreadiness.io/v1alpha1
kind: MeshReadiness
metadata: {name: ready, namespace: shop}
spec: {}
";
    let out = run(
        &["analyze", "-f", "-", "--plan"],
        &format!("{NEEDS_ALL}{none}"),
    );
    assert!(documents(&out).is_empty(), "{}", out.stdout);
    assert!(
        out.stdout.contains("# Nothing to create."),
        "{}",
        out.stdout
    );
}

#[test]
fn plan_keeps_the_exit_code_and_refuses_sarif() {
    for args in [
        vec!["analyze", "-f", "-"],
        vec!["analyze", "-f", "-", "--plan"],
        vec!["analyze", "-f", "-", "--plan", "-o", "json"],
    ] {
        assert_eq!(run(&args, NEEDS_ALL).code, 1, "{args:?}");
        let mut never = args.clone();
        never.extend(["--fail-on", "never"]);
        assert_eq!(run(&never, NEEDS_ALL).code, 0, "{never:?}");
    }
    let sarif = run(&["analyze", "-f", "-", "--plan", "-o", "sarif"], NEEDS_ALL);
    assert_eq!(sarif.code, 2);
    assert!(sarif.stderr.contains("--plan"), "{}", sarif.stderr);
}

// --- planned objects against Istio's real CRD schemas ------------------------------------------

/// Istio's CRDs as `make envtest` caches them, else the shared fixture; `None` (with a message)
/// where neither is present.
fn istio_crds() -> Option<Vec<Value>> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("MESHREADY_ENVTEST") {
        candidates.push(PathBuf::from(dir).join("istio-crds.yaml"));
    }
    let cache = std::env::var_os("MESHREADY_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/meshready")));
    if let Some(Ok(entries)) = cache.map(|c| std::fs::read_dir(c.join("envtest"))) {
        let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        dirs.sort();
        candidates.extend(dirs.into_iter().rev().map(|d| d.join("istio-crds.yaml")));
    }
    candidates
        .push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/istio-crds.yaml"));
    let Some(path) = candidates.into_iter().find(|p| p.is_file()) else {
        eprintln!("skipped: Istio's CRDs not found (run `make envtest`)");
        return None;
    };
    let text = std::fs::read_to_string(&path).expect("readable CRDs");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("CRD YAML");
    Some(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// The openAPIV3Schema Istio serves for an object's apiVersion and kind.
fn schema_of<'a>(crds: &'a [Value], object: &Value) -> &'a Value {
    let api_version = object["apiVersion"].as_str().expect("apiVersion");
    let (group, version) = api_version.split_once('/').expect("group/version");
    let crd = crds
        .iter()
        .find(|c| c["spec"]["group"] == group && c["spec"]["names"]["kind"] == object["kind"])
        .unwrap_or_else(|| panic!("no CRD for {api_version} {}", object["kind"]));
    let served = crd["spec"]["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["name"] == version && v["served"] == true)
        .unwrap_or_else(|| panic!("{api_version} is not served"));
    &served["schema"]["openAPIV3Schema"]
}

/// Structural validation as the API server does it before CEL: types, unknown fields (refused
/// under strict field validation), required fields, enums, bounds and oneOf/anyOf/not.
fn structural(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let flag = |key: &str| schema.get(key) == Some(&Value::Bool(true));
    if value.is_null() && flag("nullable") {
        return;
    }
    if flag("x-kubernetes-int-or-string") {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            errors.push(format!("{path}: not an int or string"));
        }
        return;
    }
    let bound = |key: &str| schema.get(key).and_then(Value::as_u64);
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let Some(map) = value.as_object() else {
                return errors.push(format!("{path}: not an object"));
            };
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (key, item) in map {
                let at = format!("{path}.{key}");
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(sub), _) => structural(sub, item, &at, errors),
                    (None, Some(sub)) if sub.is_object() => structural(sub, item, &at, errors),
                    (None, Some(Value::Bool(true))) => {}
                    _ if flag("x-kubernetes-preserve-unknown-fields") => {}
                    _ => errors.push(format!("{at}: unknown field")),
                }
            }
            if bound("minProperties").is_some_and(|n| (map.len() as u64) < n)
                || bound("maxProperties").is_some_and(|n| (map.len() as u64) > n)
            {
                errors.push(format!("{path}: property count out of bounds"));
            }
        }
        Some("array") => {
            let Some(items) = value.as_array() else {
                return errors.push(format!("{path}: not an array"));
            };
            for (i, item) in items.iter().enumerate() {
                if let Some(sub) = schema.get("items") {
                    structural(sub, item, &format!("{path}[{i}]"), errors);
                }
            }
            if bound("minItems").is_some_and(|n| (items.len() as u64) < n)
                || bound("maxItems").is_some_and(|n| (items.len() as u64) > n)
            {
                errors.push(format!("{path}: item count out of bounds"));
            }
        }
        Some("string") => match value.as_str() {
            None => errors.push(format!("{path}: not a string")),
            Some(s) => {
                let len = s.chars().count() as u64;
                if bound("maxLength").is_some_and(|n| len > n)
                    || bound("minLength").is_some_and(|n| len < n)
                {
                    errors.push(format!("{path}: length out of bounds"));
                }
            }
        },
        Some("integer") => match value
            .as_i64()
            .map(i128::from)
            .or(value.as_u64().map(i128::from))
        {
            None => errors.push(format!("{path}: not an integer")),
            Some(n) => {
                let limit = |key: &str| schema.get(key).and_then(Value::as_f64);
                let int32 = schema.get("format") == Some(&Value::from("int32"));
                if limit("minimum").is_some_and(|m| (n as f64) < m)
                    || limit("maximum").is_some_and(|m| (n as f64) > m)
                    || (int32 && i32::try_from(n).is_err())
                {
                    errors.push(format!("{path}: {n} out of bounds"));
                }
            }
        },
        Some("boolean") if !value.is_boolean() => errors.push(format!("{path}: not a boolean")),
        Some("number") if !value.is_number() => errors.push(format!("{path}: not a number")),
        _ => {}
    }
    if let (Some(required), Some(map)) = (
        schema.get("required").and_then(Value::as_array),
        value.as_object(),
    ) {
        for key in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(key) {
                errors.push(format!("{path}.{key}: required"));
            }
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: {value} not in {allowed:?}"));
    }
    let passes = |sub: &Value| {
        let mut sub_errors = Vec::new();
        structural(sub, value, path, &mut sub_errors);
        sub_errors.is_empty()
    };
    if let Some(subs) = schema.get("oneOf").and_then(Value::as_array)
        && subs.iter().filter(|s| passes(s)).count() != 1
    {
        errors.push(format!("{path}: must match exactly one of oneOf"));
    }
    if let Some(subs) = schema.get("anyOf").and_then(Value::as_array)
        && !subs.iter().any(&passes)
    {
        errors.push(format!("{path}: must match one of anyOf"));
    }
    if let Some(subs) = schema.get("allOf").and_then(Value::as_array) {
        for sub in subs {
            structural(sub, value, path, errors);
        }
    }
    if let Some(sub) = schema.get("not")
        && passes(sub)
    {
        errors.push(format!("{path}: must not match `not`"));
    }
}

/// What the API server would refuse in `object` (Istio's CRD schema and CEL rules), if anything.
fn refusals(crds: &[Value], object: &Value) -> Vec<String> {
    let schema = schema_of(crds, object);
    let mut errors = Vec::new();
    for key in ["apiVersion", "kind", "metadata", "spec"] {
        assert!(object.get(key).is_some(), "{key} missing in {object}");
    }
    for key in object.as_object().expect("an object").keys() {
        if !["apiVersion", "kind", "metadata", "spec"].contains(&key.as_str()) {
            errors.push(format!("{key}: not expected at the top"));
        }
    }
    structural(
        &schema["properties"]["spec"],
        &object["spec"],
        "spec",
        &mut errors,
    );
    if let Err(cel) = kube::core::cel::Validator::new().validate(schema, object, None) {
        errors.push(format!("CEL: {cel:?}"));
    }
    errors
}

#[test]
fn planned_objects_pass_istios_crd_schemas() {
    let Some(crds) = istio_crds() else { return };
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let examples = examples.display().to_string();
    let runs = [
        run(&["analyze", "-f", "-", "--plan"], NEEDS_ALL),
        run(&["analyze", "-f", &examples, "--plan"], ""),
        run(&["analyze", "-f", "-", "--plan", "-o", "json"], NEEDS_ALL),
    ];
    let mut objects: Vec<Value> = documents(&runs[0]);
    objects.extend(documents(&runs[1]));
    // Blocked objects too: what the status shows must be writable as well.
    let report = json(&runs[2]);
    objects.extend(
        report["remediations"]
            .as_array()
            .expect("remediations")
            .iter()
            .map(|r| r["object"].clone()),
    );
    assert!(objects.len() >= 8, "{objects:#?}");
    for object in &objects {
        let refused = refusals(&crds, object);
        assert!(
            refused.is_empty(),
            "{object:#}\nwould be refused: {refused:#?}"
        );
    }
}

#[test]
fn the_schema_check_refuses_what_the_api_server_refuses() {
    let Some(crds) = istio_crds() else { return };
    let docs = documents(&run(&["analyze", "-f", "-", "--plan"], NEEDS_ALL));
    let pick = |kind: &str| by_kind(&docs, kind)[0].clone();
    let broken: Vec<(&str, Value)> = vec![
        ("CEL duration", {
            let mut dr = pick("DestinationRule");
            dr["spec"]["trafficPolicy"]["connectionPool"]["http"]["idleTimeout"] = "0s".into();
            dr
        }),
        ("unknown field", {
            let mut dr = pick("DestinationRule");
            dr["spec"]["trafficPolicy"]["connectionPool"]["http"]["idle"] = "5s".into();
            dr
        }),
        ("oneOf", {
            let mut vs = pick("VirtualService");
            vs["spec"]["http"][0]["match"][0]["method"]["prefix"] = "G".into();
            vs
        }),
        ("required", {
            let mut vs = pick("VirtualService");
            vs["spec"]["http"][1]["route"][0]["destination"] =
                serde_json::json!({"port": {"number": 80}});
            vs
        }),
        ("enum", {
            let mut pa = pick("PeerAuthentication");
            pa["spec"]["mtls"]["mode"] = "LAX".into();
            pa
        }),
        ("CEL rule on the spec", {
            let mut pa = pick("PeerAuthentication");
            pa["spec"]["portLevelMtls"] = serde_json::json!({"8080": {"mode": "DISABLE"}});
            pa
        }),
    ];
    for (what, object) in broken {
        assert!(
            !refusals(&crds, &object).is_empty(),
            "{what} not caught: {object:#}"
        );
    }
}

#[test]
fn odd_but_legal_content_is_analyzed() {
    let input = odd::odd_namespace("odd", true);
    let started = Instant::now();
    let out = run(
        &["analyze", "-f", "-", "-o", "json", "--fail-on", "never"],
        &input,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report = json(&out);
    let findings = report["findings"].as_array().unwrap();
    // The content is read, not skipped: the DestinationRule's ISTIO_MUTUAL to pods without a
    // sidecar (the namespace is injected, but nothing runs) is judged, and nothing fails.
    assert!(
        findings.iter().all(|f| f["object"]["namespace"] == "odd"),
        "{findings:?}"
    );
    let codes: Vec<(&str, &str)> = findings
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap_or_default(),
                f["object"]["name"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    for expected in [("MR201", "many-ports"), ("MR804", "many-ports")] {
        assert!(codes.contains(&expected), "{expected:?} missing: {codes:?}");
    }
    // Thousands of ports make a message that names a few and counts the rest.
    for f in findings {
        let message = f["message"].as_str().unwrap_or_default();
        assert!(
            message.len() < 4096,
            "{} bytes: {message:.300}",
            message.len()
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?} for one odd namespace",
        started.elapsed()
    );
    // Non-ASCII label values (not legal in a cluster, but found in manifests) are not an error.
    let non_ascii = input.replace("team: caf-e9", "team: café");
    let out = run(&["analyze", "-f", "-", "--fail-on", "never"], &non_ascii);
    assert_eq!(out.code, 0, "{}", out.stderr);
}
