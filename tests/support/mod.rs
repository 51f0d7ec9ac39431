//! A real control plane for integration tests: etcd and kube-apiserver started from the binaries
//! `make envtest` builds, on 127.0.0.1 with fresh certificates, one per test binary, and the
//! meshready operator running against it in the same process.
//!
//! The processes are started from a thread that lives as long as the test binary and are bound
//! to it with `PR_SET_PDEATHSIG`, so they die with it, even when a test panics or the binary is
//! killed.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

pub mod odd;

use std::io::BufRead;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, CustomResourceExt};
use meshready::api::MeshReadiness;

pub const OPERATOR_NAMESPACE: &str = "meshreadiness-system";

/// Where `make envtest` put the binaries and Istio's CRDs.
pub struct Envtest {
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub etcd: PathBuf,
    pub istio_crds: PathBuf,
}

impl Envtest {
    fn find() -> Envtest {
        Envtest::locate().unwrap_or_else(|problem| panic!("{problem}"))
    }

    /// The binaries, or what is missing (for a program that reports it rather than panicking).
    pub fn locate() -> Result<Envtest, String> {
        let dir = std::env::var_os("MESHREADY_ENVTEST")
            .map(PathBuf::from)
            .or_else(|| {
                let cache = std::env::var_os("MESHREADY_CACHE")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                            .join(".cache/meshready")
                    });
                let versions = std::fs::read_dir(cache.join("envtest")).ok()?;
                let mut dirs: Vec<PathBuf> = versions
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.join("env").is_file())
                    .collect();
                dirs.sort();
                dirs.pop()
            });
        let dir = dir.ok_or("no envtest binaries: run `make envtest` first (CI does)")?;
        let envtest = Envtest {
            kube_apiserver: dir.join("kube-apiserver"),
            kube_controller_manager: dir.join("kube-controller-manager"),
            etcd: dir.join("etcd"),
            istio_crds: dir.join("istio-crds.yaml"),
        };
        for path in [
            &envtest.kube_apiserver,
            &envtest.kube_controller_manager,
            &envtest.etcd,
            &envtest.istio_crds,
        ] {
            if !path.is_file() {
                return Err(format!("{} is missing: run `make envtest`", path.display()));
            }
        }
        Ok(envtest)
    }
}

/// A running control plane, shared by the tests of one binary.
pub struct ControlPlane {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub audit_log: PathBuf,
    pub envtest: Envtest,
    /// kube-apiserver's arguments and running pid, so fault tests can stop and restart it.
    apiserver: std::sync::Mutex<(Vec<String>, Option<u32>)>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// [`spawn_bound`] from a thread of its own that never exits, for processes started after the
/// control plane (a test's thread ends with the test, and its children would die with it).
fn spawn_kept(command: Command, log: PathBuf) -> u32 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tx.send(spawn_bound(command, &log)).unwrap();
        loop {
            std::thread::park();
        }
    });
    rx.recv().unwrap()
}

/// Children die with the thread that spawned them (a thread that never exits).
fn spawn_bound(mut command: Command, log: &Path) -> u32 {
    let out = std::fs::File::create(log).unwrap();
    command
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"))
        .id()
}

struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    admin_cert: String,
    admin_key: String,
    sa_key: String,
    sa_pub: String,
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "meshready-test-ca");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let mut server =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    server
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server.signed_by(&server_key, &issuer).unwrap();

    let admin_key = KeyPair::generate().unwrap();
    let mut admin = CertificateParams::new(Vec::<String>::new()).unwrap();
    admin
        .distinguished_name
        .push(DnType::CommonName, "meshready-test-admin");
    admin
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_cert = admin.signed_by(&admin_key, &issuer).unwrap();

    let sa = KeyPair::generate().unwrap();
    Pki {
        ca: ca_cert.pem(),
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
        admin_cert: admin_cert.pem(),
        admin_key: admin_key.serialize_pem(),
        sa_key: sa.serialize_pem(),
        sa_pub: sa.public_key_pem(),
    }
}

const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: [\"system:apiserver\"]
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection, list]
- level: None
";

/// Starts etcd and kube-apiserver; returns the kubeconfig, kube-apiserver's arguments and pid.
fn start(dir: &Path, envtest: &Envtest) -> (PathBuf, Vec<String>, u32) {
    let pki = pki();
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca = file("ca.crt", &pki.ca);
    let server_cert = file("apiserver.crt", &pki.server_cert);
    let server_key = file("apiserver.key", &pki.server_key);
    let sa_key = file("sa.key", &pki.sa_key);
    let sa_pub = file("sa.pub", &pki.sa_pub);
    let policy = file("audit-policy.yaml", AUDIT_POLICY);
    let (client_port, peer_port, api_port) = (free_port(), free_port(), free_port());
    let etcd_url = format!("http://127.0.0.1:{client_port}");
    let mut etcd = Command::new(&envtest.etcd);
    etcd.args([
        "--name=meshready-test".to_string(),
        format!("--data-dir={}", dir.join("etcd").display()),
        format!("--listen-client-urls={etcd_url}"),
        format!("--advertise-client-urls={etcd_url}"),
        format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
        format!("--initial-cluster=meshready-test=http://127.0.0.1:{peer_port}"),
        "--unsafe-no-fsync=true".to_string(),
        "--log-level=warn".to_string(),
    ]);
    spawn_bound(etcd, &dir.join("etcd.log"));
    let apiserver_args = vec![
        format!("--etcd-servers={etcd_url}"),
        format!("--secure-port={api_port}"),
        "--bind-address=127.0.0.1".to_string(),
        "--advertise-address=127.0.0.1".to_string(),
        "--endpoint-reconciler-type=none".to_string(),
        format!("--cert-dir={}", dir.join("pki").display()),
        format!("--tls-cert-file={}", server_cert.display()),
        format!("--tls-private-key-file={}", server_key.display()),
        format!("--client-ca-file={}", ca.display()),
        format!("--service-account-key-file={}", sa_pub.display()),
        format!("--service-account-signing-key-file={}", sa_key.display()),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
        "--authorization-mode=RBAC".to_string(),
        // Room for the thousands of Services of the operator benchmark (a /24 holds 254).
        "--service-cluster-ip-range=10.0.0.0/16".to_string(),
        "--disable-admission-plugins=ServiceAccount".to_string(),
        format!("--audit-policy-file={}", policy.display()),
        format!("--audit-log-path={}", dir.join("audit.log").display()),
    ];
    let mut apiserver = Command::new(&envtest.kube_apiserver);
    apiserver.args(&apiserver_args);
    let apiserver_pid = spawn_bound(apiserver, &dir.join("kube-apiserver.log"));
    let kubeconfig = dir.join("kubeconfig");
    let b64 = |text: &str| {
        use std::io::Write;
        let mut child = Command::new("base64")
            .arg("-w0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    };
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://127.0.0.1:{api_port}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: test\n  context: {{cluster: test, user: admin}}\ncurrent-context: test\n",
            b64(&pki.ca),
            b64(&pki.admin_cert),
            b64(&pki.admin_key)
        ),
    )
    .unwrap();
    (kubeconfig, apiserver_args, apiserver_pid)
}

static PLANE: OnceLock<ControlPlane> = OnceLock::new();

/// Data directories of earlier test binaries that have exited (statics are never dropped, so
/// each binary cleans up after its predecessors).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("meshready-test-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The test binary's control plane, started on first use. With `istio`, Istio's CRDs are
/// installed before it is handed out. Safe to call from async tests: the set-up runs on the
/// control plane's own thread.
pub fn control_plane(istio: bool) -> &'static ControlPlane {
    control_plane_with(istio, false)
}

/// Starts kube-controller-manager with only its garbage collector, which deletes objects whose
/// ownerReferences all point to deleted owners, as in a real cluster. Not on by default: tests
/// that invent owners (pods of a ReplicaSet never created) would see their objects collected.
fn start_garbage_collector(plane: &ControlPlane) {
    let mut kcm = Command::new(&plane.envtest.kube_controller_manager);
    kcm.args([
        format!("--kubeconfig={}", plane.kubeconfig.display()),
        "--controllers=garbagecollector".to_string(),
        "--leader-elect=false".to_string(),
        "--secure-port=0".to_string(),
        "--concurrent-gc-syncs=5".to_string(),
    ]);
    spawn_bound(kcm, &plane.dir.join("kube-controller-manager.log"));
}

/// [`control_plane`], with the garbage collector running when `garbage_collector` is set (the
/// first call of a test binary decides).
pub fn control_plane_with(istio: bool, garbage_collector: bool) -> &'static ControlPlane {
    PLANE.get_or_init(|| {
        remove_stale_dirs();
        let dir = std::env::temp_dir().join(format!("meshready-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread_dir = dir.clone();
        std::thread::Builder::new()
            .name("control-plane".into())
            .spawn(move || {
                let envtest = Envtest::find();
                let started = Instant::now();
                let (kubeconfig, args, pid) = start(&thread_dir, &envtest);
                let plane = ControlPlane {
                    audit_log: thread_dir.join("audit.log"),
                    kubeconfig,
                    dir: thread_dir,
                    envtest,
                    apiserver: std::sync::Mutex::new((args, Some(pid))),
                };
                block_on(async {
                    let client = plane.client().await;
                    wait_ready(&client, &plane.dir.join("kube-apiserver.log")).await;
                    install_crd(&client, MeshReadiness::crd()).await;
                    if istio {
                        plane.install_istio_crds(&client).await;
                    }
                    create_namespace(&client, OPERATOR_NAMESPACE).await;
                });
                // After the CRDs, so its first discovery already knows them.
                if garbage_collector {
                    start_garbage_collector(&plane);
                }
                eprintln!(
                    "control plane ready in {:?} at {}",
                    started.elapsed(),
                    plane.dir.display()
                );
                tx.send(plane).unwrap();
                // The processes die with this thread, so it lives as long as the binary.
                loop {
                    std::thread::park();
                }
            })
            .unwrap();
        rx.recv()
            .expect("the control plane started (see the panic above)")
    })
}

/// Runs a future to completion on a throwaway runtime (for set-up outside a test's runtime).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Waits until the kube-apiserver `client` talks to answers `/readyz`; past two minutes, fails
/// with the tail of its `log`.
async fn wait_ready(client: &Client, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let req = http::Request::get("/readyz").body(Vec::new()).unwrap();
        if let Ok(text) = client.request_text(req).await
            && text.trim() == "ok"
        {
            return;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "kube-apiserver not ready after 120s; log tail:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn install_crd(client: &Client, crd: CustomResourceDefinition) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().unwrap();
    api.patch(
        &name,
        &PatchParams::apply("meshready-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    let established = kube::runtime::wait::conditions::is_crd_established();
    tokio::time::timeout(
        Duration::from_secs(60),
        kube::runtime::wait::await_condition(api, &name, established),
    )
    .await
    .expect("CRD established in 60s")
    .unwrap();
    // Established is not yet served: the resource's handler is installed a moment later, and a
    // watcher that lists too early backs off for many seconds. Wait until a list answers.
    let version = crd
        .spec
        .versions
        .iter()
        .find(|v| v.storage)
        .map_or_else(|| crd.spec.versions[0].name.clone(), |v| v.name.clone());
    let resource = kube::api::ApiResource {
        group: crd.spec.group.clone(),
        version: version.clone(),
        api_version: format!("{}/{version}", crd.spec.group),
        kind: crd.spec.names.kind.clone(),
        plural: crd.spec.names.plural.clone(),
    };
    let served: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &resource);
    let deadline = Instant::now() + Duration::from_secs(30);
    while served
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "{name} not served 30s after Established"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn create_namespace(client: &Client, name: &str) {
    apply_json(
        client,
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )
    .await;
}

/// Server-side applies one object given as JSON.
pub async fn apply_json(client: &Client, object: serde_json::Value) {
    let object: kube::api::DynamicObject = serde_json::from_value(object).unwrap();
    let types = object.types.clone().unwrap();
    let gvk = kube::api::GroupVersionKind::try_from(&types).unwrap();
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await.unwrap();
    let api = dynamic_api(
        client,
        &resource,
        &caps.scope,
        object.metadata.namespace.as_deref(),
    );
    let name = object.metadata.name.clone().unwrap();
    api.patch(
        &name,
        &PatchParams::apply("meshready-tests").force(),
        &Patch::Apply(&object),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {} {name}: {e}", gvk.kind));
}

/// The API of one resource, in `namespace` when the resource is namespaced.
pub fn dynamic_api(
    client: &Client,
    resource: &kube::api::ApiResource,
    scope: &kube::discovery::Scope,
    namespace: Option<&str>,
) -> Api<kube::api::DynamicObject> {
    match (scope, namespace) {
        (kube::discovery::Scope::Namespaced, Some(ns)) => {
            Api::namespaced_with(client.clone(), ns, resource)
        }
        _ => Api::all_with(client.clone(), resource),
    }
}

/// Server-side applies every document of a YAML text.
pub async fn apply_yaml(client: &Client, yaml: &str) {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(yaml).unwrap();
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        apply_json(client, doc).await;
    }
}

impl ControlPlane {
    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .unwrap();
        Client::try_from(config).unwrap()
    }

    pub async fn install_istio_crds(&self, client: &Client) {
        let text = std::fs::read_to_string(&self.envtest.istio_crds).unwrap();
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            let crd: CustomResourceDefinition = serde_json::from_value(doc).unwrap();
            install_crd(client, crd).await;
        }
    }

    /// The port kube-apiserver listens on.
    pub fn api_port(&self) -> u16 {
        let (args, _) = &*self.apiserver.lock().unwrap();
        args.iter()
            .find_map(|a| a.strip_prefix("--secure-port="))
            .and_then(|p| p.parse().ok())
            .expect("--secure-port")
    }

    /// Kills kube-apiserver (SIGKILL: no goodbye to its clients) and waits until its port is
    /// free. etcd keeps running.
    pub fn stop_apiserver(&self) {
        let pid = self.apiserver.lock().unwrap().1.take().expect("running");
        // SAFETY: plain syscalls on our own child's pid.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
            libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
        }
        let port = self.api_port();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpListener::bind(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "port {port} still taken");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts kube-apiserver again, as it was, and waits until it is ready.
    pub async fn start_apiserver(&self) {
        let args = {
            let (args, pid) = &*self.apiserver.lock().unwrap();
            assert!(pid.is_none(), "already running");
            args.clone()
        };
        let mut command = Command::new(&self.envtest.kube_apiserver);
        command.args(&args);
        let log = self.dir.join("kube-apiserver-restarted.log");
        let pid = spawn_kept(command, log.clone());
        self.apiserver.lock().unwrap().1 = Some(pid);
        wait_ready(&self.client().await, &log).await;
    }

    /// A second kube-apiserver on the same etcd, with `extra` arguments: the cluster as other
    /// clients see it while the first is down. Returns a client for it once it is ready.
    pub async fn second_apiserver(&self, extra: &[&str]) -> Client {
        let port = free_port();
        let mut args: Vec<String> = self.apiserver.lock().unwrap().0.clone();
        for arg in &mut args {
            if arg.starts_with("--secure-port=") {
                *arg = format!("--secure-port={port}");
            } else if arg.starts_with("--audit-log-path=") {
                *arg = format!(
                    "--audit-log-path={}",
                    self.dir.join("audit-second.log").display()
                );
            } else if arg.starts_with("--cert-dir=") {
                *arg = format!("--cert-dir={}", self.dir.join("pki-second").display());
            }
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut command = Command::new(&self.envtest.kube_apiserver);
        command.args(&args);
        let log = self.dir.join("kube-apiserver-second.log");
        spawn_kept(command, log.clone());
        let kubeconfig = std::fs::read_to_string(&self.kubeconfig).unwrap().replace(
            &format!("127.0.0.1:{}\n", self.api_port()),
            &format!("127.0.0.1:{port}\n"),
        );
        let config = kube::Config::from_custom_kubeconfig(
            Kubeconfig::from_yaml(&kubeconfig).unwrap(),
            &KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        let client = Client::try_from(config).unwrap();
        wait_ready(&client, &log).await;
        client
    }

    /// `kubectl --kubeconfig <this plane> ARGS`: stdout on success, a panic with stderr otherwise.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("kubectl is installed");
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `kubectl --kubeconfig <this plane> ARGS` with `stdin` piped in (for `-f -`). Never panics
    /// on a failed command: the caller reads the status, stdout and stderr (where kubectl prints
    /// the API server's warnings).
    pub fn kubectl_with_stdin(&self, args: &[&str], stdin: &str) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl is installed");
        // Written from a thread: a large input must not block while kubectl's output fills up.
        let mut input = child.stdin.take().unwrap();
        let text = stdin.to_string();
        let writer = std::thread::spawn(move || input.write_all(text.as_bytes()));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        out
    }

    /// Audited writes (create, update, patch, delete) by the operator (its User-Agent)
    /// that match `filter`, as JSON lines.
    pub fn operator_writes(
        &self,
        filter: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        self.operator_requests()
            .into_iter()
            .filter(|e| e["verb"] != "list")
            .filter(|e| filter(e))
            .collect()
    }

    /// The operator's LIST requests of `resource` (a relist after a watch expired shows here).
    pub fn operator_lists(&self, resource: &str) -> Vec<serde_json::Value> {
        self.operator_requests()
            .into_iter()
            .filter(|e| e["verb"] == "list" && e["objectRef"]["resource"] == resource)
            .collect()
    }

    /// Every audited request of the operator (its User-Agent), completed.
    fn operator_requests(&self) -> Vec<serde_json::Value> {
        let Ok(file) = std::fs::File::open(&self.audit_log) else {
            return Vec::new();
        };
        std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
            .filter(|e| {
                e["userAgent"]
                    .as_str()
                    .is_some_and(|ua| ua.starts_with("meshready/"))
                    && e["stage"] == "ResponseComplete"
            })
            .collect()
    }
}

/// Starts the operator once per test binary, on its own thread and runtime, against `plane`.
/// Returns its metrics.
pub fn operator(plane: &'static ControlPlane) -> &'static meshready::operator::metrics::Metrics {
    static STARTED: OnceLock<meshready::operator::metrics::Metrics> = OnceLock::new();
    STARTED.get_or_init(|| start_operator(plane, None))
}

/// Starts one more operator instance (as after a restart, or a second replica), on its own
/// thread and runtime. It runs until the test binary exits.
pub fn start_operator(
    plane: &'static ControlPlane,
    admin_address: Option<std::net::SocketAddr>,
) -> meshready::operator::metrics::Metrics {
    start_operator_with(plane, admin_address, None, std::future::pending())
}

/// An operator instance with leader election, until `shutdown` resolves. Its runtime is then
/// dropped with every task on it, as when a process dies: the lease is not released.
pub fn start_operator_with(
    plane: &'static ControlPlane,
    admin_address: Option<std::net::SocketAddr>,
    leader_election: Option<meshready::operator::leader::LeaderElection>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> meshready::operator::metrics::Metrics {
    launch(
        plane,
        admin_address,
        leader_election,
        None,
        TEST_DEBOUNCE,
        shutdown,
    )
}

/// The debounce of the operators the tests start: short, so tests run quickly.
pub const TEST_DEBOUNCE: Duration = Duration::from_millis(200);

/// An operator instance with the given debounce (the binary's default is 250 ms), until
/// `shutdown` resolves, as [`start_operator_with`] without leader election.
pub fn start_operator_debounced(
    plane: &'static ControlPlane,
    debounce: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> meshready::operator::metrics::Metrics {
    launch(plane, None, None, None, debounce, shutdown)
}

/// The operator's ServiceAccount, as `config/rbac` names it.
pub const OPERATOR_SERVICE_ACCOUNT: &str = "system:serviceaccount:meshreadiness-system:meshready";

/// Installs `config/rbac` (the operator's ServiceAccount and roles; the remediation role
/// unbound). With `remediation`, also binds the remediation role, as a user who opts in does.
pub fn install_rbac(plane: &ControlPlane, remediation: bool) {
    let root = env!("CARGO_MANIFEST_DIR");
    plane.kubectl(&[
        "apply",
        "--server-side",
        "-k",
        &format!("{root}/config/rbac"),
    ]);
    if remediation {
        bind_remediation_role(plane);
    }
}

pub fn bind_remediation_role(plane: &ControlPlane) {
    let root = env!("CARGO_MANIFEST_DIR");
    plane.kubectl(&[
        "apply",
        "--server-side",
        "-f",
        &format!("{root}/config/rbac/remediation-binding.yaml"),
    ]);
}

/// The operator as its ServiceAccount (the admin impersonates it), so it has exactly the
/// permissions of `config/rbac`, until `shutdown` resolves.
pub fn start_operator_as_service_account(
    plane: &'static ControlPlane,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> meshready::operator::metrics::Metrics {
    launch(
        plane,
        None,
        None,
        Some(OPERATOR_SERVICE_ACCOUNT),
        TEST_DEBOUNCE,
        shutdown,
    )
}

fn launch(
    plane: &'static ControlPlane,
    admin_address: Option<std::net::SocketAddr>,
    leader_election: Option<meshready::operator::leader::LeaderElection>,
    impersonate: Option<&'static str>,
    debounce: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> meshready::operator::metrics::Metrics {
    let metrics = meshready::operator::metrics::Metrics::new().unwrap();
    let shared = metrics.clone();
    std::thread::Builder::new()
        .name("operator".into())
        .spawn(move || {
            // RUST_LOG=meshready=debug shows the operator's logs in test output.
            if std::env::var_os("RUST_LOG").is_some() {
                let _ = tracing_subscriber::fmt()
                    .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                    .with_test_writer()
                    .try_init();
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let kubeconfig = Kubeconfig::read_from(&plane.kubeconfig).unwrap();
                let mut config =
                    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                        .await
                        .unwrap();
                if let Some(user) = impersonate {
                    config.auth_info.impersonate = Some(user.to_string());
                    config.auth_info.impersonate_groups = Some(vec![
                        "system:serviceaccounts".to_string(),
                        "system:serviceaccounts:meshreadiness-system".to_string(),
                        "system:authenticated".to_string(),
                    ]);
                }
                let client = meshready::operator::client(config).unwrap();
                let options = meshready::operator::Options {
                    operator_namespace: OPERATOR_NAMESPACE.to_string(),
                    debounce,
                    admin_address,
                    leader_election,
                };
                meshready::operator::run(client, options, shared, shutdown)
                    .await
                    .unwrap();
            });
            runtime.shutdown_background();
        })
        .unwrap();
    metrics
}

/// Polls `probe` until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A free port on 127.0.0.1, for an admin server.
pub fn local_address() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A plain HTTP/1.0 GET: the status code and the body.
pub fn http_get(address: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// The `meshready` binary running `controller` against a control plane, as a child process (so
/// a test can SIGTERM or SIGKILL it); killed when dropped.
pub struct OperatorProcess(pub std::process::Child);

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl OperatorProcess {
    /// `meshready controller --kubeconfig <plane> ARGS`, its log in `<plane dir>/<name>.log`,
    /// with `env` added to its environment.
    pub fn start(plane: &ControlPlane, name: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let log = std::fs::File::create(plane.dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_meshready"))
            .args(["controller", "--log-level", "info"])
            .arg("--kubeconfig")
            .arg(&plane.kubeconfig)
            .arg("--admin-address")
            .arg(local_address().to_string())
            .args(args)
            .env("OPERATOR_NAMESPACE", OPERATOR_NAMESPACE)
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        OperatorProcess(child)
    }
}

/// Sends SIGTERM to `child` and waits for it to exit, failing past `within`.
pub async fn terminate(
    child: &mut std::process::Child,
    within: Duration,
) -> std::process::ExitStatus {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            started.elapsed() < within,
            "still running {within:?} after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Who holds the operator's leader Lease.
pub async fn lease_holder(client: &Client) -> Option<String> {
    Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .get_opt("meshready-leader")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}
