//! The image, as far as it can be tested without a container engine: the binary runs from the
//! final stage's filesystem (`hack/rootfs.sh`: the C runtime, /etc/passwd, the binary; no shell)
//! under chroot as UID 65532, with an empty environment and nothing writable, both as the CLI
//! and as the operator against the real API server. chroot needs root (CI has it); elsewhere
//! the run-time tests say so and skip.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{control_plane, eventually, http_get, local_address};

const BINARY: &str = env!("CARGO_BIN_EXE_meshready");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The image's filesystem with `extra` files added under /work (read-only to UID 65532).
fn rootfs(dir: &Path, extra: &[(&str, &Path)]) -> PathBuf {
    let root = dir.join("rootfs");
    let status = Command::new(format!("{ROOT}/hack/rootfs.sh"))
        .arg(BINARY)
        .arg(&root)
        .status()
        .unwrap();
    assert!(status.success(), "hack/rootfs.sh failed");
    std::fs::create_dir_all(root.join("work")).unwrap();
    for (name, source) in extra {
        let copied = Command::new("cp")
            .arg("-r")
            .arg(source)
            .arg(root.join("work").join(name))
            .status()
            .unwrap();
        assert!(copied.success());
    }
    let readable = Command::new("chmod")
        .args(["-R", "a+rX,a-w"])
        .arg(root.join("work"))
        .status()
        .unwrap();
    assert!(readable.success());
    root
}

/// `meshready ARGS` inside `root` as the image's user, with nothing in its environment.
fn in_image(root: &Path, args: &[&str]) -> Command {
    // Resolved here: with the environment cleared, PATH would be empty when it is looked up.
    let chroot = ["/usr/sbin/chroot", "/usr/bin/chroot"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chroot (coreutils) is installed");
    let mut command = Command::new(chroot);
    command
        .arg("--userspec=65532:65532")
        .arg(root)
        .arg("/usr/local/bin/meshready")
        .args(args)
        .env_clear()
        .current_dir("/");
    command
}

#[test]
fn dockerfile_final_stage_is_distroless_nonroot_with_oci_labels() {
    let dockerfile = std::fs::read_to_string(format!("{ROOT}/Dockerfile")).unwrap();
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "multi-stage: build, then run");
    assert_eq!(stages[1], "FROM gcr.io/distroless/cc-debian12:nonroot");
    assert!(dockerfile.contains("USER 65532:65532"));
    assert!(dockerfile.contains("--locked"));
    for label in [
        "title",
        "description",
        "source",
        "licenses",
        "version",
        "revision",
        "created",
    ] {
        assert!(
            dockerfile.contains(&format!("org.opencontainers.image.{label}=")),
            "OCI label {label} missing"
        );
    }
    // The Deployment runs it the way the image is built to run.
    let manager = std::fs::read_to_string(format!("{ROOT}/config/manager/manager.yaml")).unwrap();
    assert!(manager.contains("readOnlyRootFilesystem: true"));
    assert!(manager.contains("runAsNonRoot: true"));
}

#[test]
fn cli_runs_from_the_image_filesystem() {
    if !is_root() {
        eprintln!("skipped: chroot needs root (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let examples = PathBuf::from(format!("{ROOT}/examples"));
    let root = rootfs(dir.path(), &[("examples", &examples)]);
    assert!(!root.join("bin/sh").exists(), "the image has no shell");

    let version = in_image(&root, &["version"]).output().unwrap();
    assert!(version.status.success(), "{version:?}");
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("meshready "));

    let analyze = in_image(
        &root,
        &[
            "analyze",
            "-f",
            "/work/examples",
            "-o",
            "json",
            "--fail-on",
            "error",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(
        analyze.status.code(),
        Some(1),
        "the examples hold Errors: {}",
        String::from_utf8_lossy(&analyze.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&analyze.stdout).unwrap();
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "MR201")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_runs_from_the_image_filesystem_and_stops_on_sigterm() {
    if !is_root() {
        eprintln!("skipped: chroot needs root (CI runs as root)");
        return;
    }
    let plane = control_plane(true);
    let client = plane.client().await;
    support::apply_yaml(
        &client,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: image, labels: {istio-injection: enabled}}\n---\n\
         apiVersion: meshreadiness.io/v1alpha1\nkind: MeshReadiness\nmetadata: {name: ready, namespace: image}\nspec: {}\n",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let root = rootfs(dir.path(), &[("kubeconfig", &plane.kubeconfig)]);
    let admin = local_address();
    let log = dir.path().join("operator.log");
    let mut operator = in_image(
        &root,
        &[
            "controller",
            "--kubeconfig",
            "/work/kubeconfig",
            "--admin-address",
            &admin.to_string(),
            "--log-format",
            "json",
            "--log-level",
            "info",
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();

    eventually(Duration::from_secs(60), "/readyz to answer 200", || async {
        (http_get(admin, "/readyz").map(|r| r.0) == Some(200)).then_some(())
    })
    .await;
    // It did its job: the status is written, and its metrics say so.
    eventually(
        Duration::from_secs(60),
        "the MeshReadiness to be Ready",
        || async {
            let (_, metrics) = http_get(admin, "/metrics")?;
            metrics
                .contains(r#"meshreadiness_ready{name="ready",namespace="image"} 1"#)
                .then_some(())
        },
    )
    .await;

    // SIGTERM: a clean exit, well within the Deployment's grace period (chroot execs the
    // binary, so the child is the operator itself).
    let status = support::terminate(&mut operator, Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");

    // Every log line is one JSON object with a level and a message.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.trim().is_empty(), "no logs at --log-level info");
    for line in text.lines() {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            entry["level"].is_string() && entry["message"].is_string(),
            "{line}"
        );
    }
    assert!(text.contains("controller stopped"), "{text}");
}
