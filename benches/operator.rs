//! Benchmark 4: the operator against the local control plane (etcd + kube-apiserver from `make
//! envtest`, Istio's CRDs installed), loaded with generated namespaces, one MeshReadiness each.
//!
//! `cargo bench --bench operator -- [--namespaces 200 --samples 40 --runs 3 --noop 10
//! --debounce-ms 250,1000]` measures, for each debounce (the operator's default is 250 ms):
//!
//! 1. cold start: the operator starts (in this process) with every status cleared; the time
//!    until every MeshReadiness has conditions and `observedGeneration` equal to its generation;
//! 2. a MeshReadiness change (`checks.disabled` gains or loses a code present in its findings)
//!    until its status reports the new generation;
//! 3. a Service fix (its unnamed port named `http`) until its MR201 finding is gone from the
//!    status, and the break (the name removed again) until it is back;
//! 4. the operator's writes per change, from the API server's audit log: status patches, Events
//!    and anything else, for the changes of 2 and 3 (effective) and for a label added to a
//!    Service (a change the checks ignore: no-op).
//!
//! Without `--bench` (under `cargo test`) it runs once on 2 namespaces with a 200 ms debounce,
//! or says it is skipped when the envtest binaries are missing. With `--bench` and no binaries
//! it exits with status 2 and says so (`make bench` then reports benchmark 4 as skipped).

#[path = "../tests/support/mod.rs"]
mod harness;
mod support;

/// The allocator of the `meshready` binary (src/main.rs), so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ApiResource, ListParams, Patch, PatchParams, TypeMeta};
use kube::discovery::Scope;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use meshready::api::MeshReadiness;
use meshready::operator::metrics::Metrics;
use serde_json::{Value, json};

use harness::ControlPlane;
use support::generator::{self, Sizes};
use support::{Flags, Summary};

/// Each namespace's MeshReadiness.
const NAME: &str = "ready";
const MANAGER: &str = "meshready-bench";
/// Objects applied at once while loading.
const CONCURRENCY: usize = 16;
/// The longest any one wait may take before the run is abandoned.
const WAIT: Duration = Duration::from_secs(300);

struct Config {
    namespaces: usize,
    samples: usize,
    runs: usize,
    noop: usize,
    debounces: Vec<Duration>,
}

fn main() {
    let flags = Flags::from_env();
    let benching = flags.benching();
    if let Err(problem) = harness::Envtest::locate() {
        if benching {
            eprintln!("benchmark 4 needs the local control plane: {problem}");
            std::process::exit(2);
        }
        println!("operator bench: smoke run skipped ({problem})");
        return;
    }
    let config =
        if benching {
            Config {
                namespaces: flags.number("namespaces", 200),
                samples: flags.number("samples", 40),
                runs: flags.number("runs", 3),
                noop: flags.number("noop", 10),
                debounces: flags
                    .value("debounce-ms")
                    .unwrap_or("250,1000")
                    .split(',')
                    .map(|ms| {
                        Duration::from_millis(ms.trim().parse().unwrap_or_else(|_| {
                            panic!("--debounce-ms takes milliseconds, not {ms:?}")
                        }))
                    })
                    .collect(),
            }
        } else {
            Config {
                namespaces: 2,
                samples: 2,
                runs: 1,
                noop: 1,
                debounces: vec![harness::TEST_DEBOUNCE],
            }
        };
    let plane = harness::control_plane(true);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(plane, &config));
}

async fn run(plane: &'static ControlPlane, config: &Config) {
    let client = plane.client().await;
    let cluster = generator::generate(Sizes::scaled(config.namespaces));
    let namespaces: Vec<String> = cluster.namespaces[1..]
        .iter()
        .map(|n| n.name.clone())
        .collect();
    let started = Instant::now();
    let objects = load(&client, &cluster, &namespaces).await;
    println!(
        "loaded {} namespaces, {} objects ({} Pods, {} Services, {} MeshReadiness) in {:.1} s",
        namespaces.len(),
        objects.len(),
        cluster.count("Pod"),
        cluster.count("Service"),
        namespaces.len(),
        started.elapsed().as_secs_f64()
    );
    let services: HashMap<(String, String), Value> = cluster
        .objects()
        .filter(|o| o["kind"] == "Service")
        .map(as_served)
        .map(|o| {
            let key = (
                o["metadata"]["namespace"].as_str().unwrap().to_string(),
                o["metadata"]["name"].as_str().unwrap().to_string(),
            );
            (key, o)
        })
        .collect();
    let bench = Bench {
        plane,
        client,
        namespaces,
        services,
        objects,
    };
    for debounce in &config.debounces {
        bench.with_debounce(*debounce, config).await;
    }
}

/// The loaded cluster and the client that changes it.
struct Bench {
    plane: &'static ControlPlane,
    client: Client,
    namespaces: Vec<String>,
    /// The generated Services by namespace and name, as applied.
    services: HashMap<(String, String), Value>,
    objects: Objects,
}

/// The generated objects, and where each kind is served.
struct Objects {
    kinds: HashMap<(String, String), (ApiResource, Scope)>,
    count: usize,
}

impl Objects {
    fn len(&self) -> usize {
        self.count
    }

    /// Server-side applies `object` as this benchmark's field manager.
    async fn apply(&self, client: &Client, object: &Value) {
        let (resource, scope) = &self.kinds[&type_key(object)];
        let name = object["metadata"]["name"].as_str().unwrap();
        harness::dynamic_api(
            client,
            resource,
            scope,
            object["metadata"]["namespace"].as_str(),
        )
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(object),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {} {name}: {e}", object["kind"]));
    }

    async fn apply_all(&self, client: &Client, objects: impl Iterator<Item = &Value>) {
        futures::stream::iter(objects)
            .for_each_concurrent(CONCURRENCY, |o| self.apply(client, o))
            .await;
    }
}

fn type_key(object: &Value) -> (String, String) {
    (
        object["apiVersion"].as_str().unwrap().to_string(),
        object["kind"].as_str().unwrap().to_string(),
    )
}

/// The name the generator's unnamed ports get: the API server requires a name when a Service
/// has more than one port, and `web` declares no protocol either (MR201 all the same).
const UNDECLARED: &str = "web";

/// A generated object as the API server can take it: no status (a Pod's is the kubelet's, and
/// the API server resets it on create anyway), and unnamed ports named [`UNDECLARED`].
fn as_served(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    if object["kind"] == "Service"
        && let Some(ports) = object["spec"]["ports"].as_array_mut()
    {
        for port in ports.iter_mut().filter(|p| p.get("name").is_none()) {
            port["name"] = json!(UNDECLARED);
        }
    }
    object
}

/// Applies the generated cluster (Namespaces first) and one MeshReadiness per namespace.
async fn load(client: &Client, cluster: &generator::Cluster, namespaces: &[String]) -> Objects {
    let mesh_readiness: Vec<Value> = namespaces
        .iter()
        .map(|ns| {
            json!({
                "apiVersion": "meshreadiness.io/v1alpha1", "kind": "MeshReadiness",
                "metadata": {"name": NAME, "namespace": ns},
                // Not the default 5 min: every MeshReadiness would re-check at once in the
                // middle of the measurements (each re-check is one cold start's worth of work).
                "spec": {"interval": "1h"},
            })
        })
        .collect();
    let all: Vec<Value> = cluster
        .objects()
        .chain(&mesh_readiness)
        .map(as_served)
        .collect();
    let mut kinds = HashMap::new();
    for object in &all {
        let key = type_key(object);
        if kinds.contains_key(&key) {
            continue;
        }
        let types = TypeMeta {
            api_version: key.0.clone(),
            kind: key.1.clone(),
        };
        let gvk = kube::api::GroupVersionKind::try_from(&types).unwrap();
        let (resource, caps) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .unwrap_or_else(|e| panic!("{key:?} is not served: {e}"));
        kinds.insert(key, (resource, caps.scope));
    }
    let objects = Objects {
        kinds,
        count: all.len(),
    };
    let (first, rest): (Vec<&Value>, Vec<&Value>) =
        all.iter().partition(|o| o["kind"] == "Namespace");
    objects.apply_all(client, first.into_iter()).await;
    objects.apply_all(client, rest.into_iter()).await;
    objects
}

/// An in-process operator, stopped (its runtime dropped) by [`Operator::stop`].
struct Operator {
    metrics: Metrics,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Operator {
    fn start(plane: &'static ControlPlane, debounce: Duration) -> Operator {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics = harness::start_operator_debounced(plane, debounce, async move {
            let _ = stopped.await;
        });
        Operator { metrics, stop }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        // Its runtime goes down with every task on it; give it a moment.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    /// Reconciles finished so far.
    fn reconciles(&self) -> u64 {
        self.metrics
            .reconcile_duration
            .with_label_values(&[] as &[&str])
            .get_sample_count()
    }

    /// Waits until at least `at_least` reconciles have finished and no more finish for the
    /// debounce and 1.5 s; returns when (from `since`) the count first reached `at_least`.
    async fn settle(&self, at_least: u64, debounce: Duration, since: Instant) -> Duration {
        let mut reached = None;
        let mut last = (self.reconciles(), Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let count = self.reconciles();
            if count >= at_least {
                reached.get_or_insert_with(|| since.elapsed());
            }
            if count != last.0 {
                last = (count, Instant::now());
            } else if let Some(reached) = reached
                && last.1.elapsed() > debounce + Duration::from_millis(1500)
            {
                return reached;
            }
            assert!(
                since.elapsed() < WAIT,
                "{count} reconciles of {at_least} after {WAIT:?}"
            );
        }
    }

    /// Total seconds spent in reconciles so far.
    fn reconcile_seconds(&self) -> f64 {
        self.metrics
            .reconcile_duration
            .with_label_values(&[] as &[&str])
            .get_sample_sum()
    }
}

/// Whether the status reports this generation, with conditions.
fn current(mr: &MeshReadiness) -> bool {
    mr.status.as_ref().is_some_and(|s| {
        s.observed_generation.is_some()
            && s.observed_generation == mr.metadata.generation
            && !s.conditions.is_empty()
    })
}

fn has_finding(mr: &MeshReadiness, code: &str, name: &str) -> bool {
    mr.status.as_ref().is_some_and(|s| {
        s.findings
            .iter()
            .any(|f| f.code.as_str() == code && f.name == name)
    })
}

/// The operator's audited writes in one namespace, by what they wrote.
#[derive(Clone, Copy, Default)]
struct Writes {
    status: usize,
    events: usize,
    other: usize,
}

impl std::ops::Sub for Writes {
    type Output = Writes;
    fn sub(self, before: Writes) -> Writes {
        Writes {
            status: self.status - before.status,
            events: self.events - before.events,
            other: self.other - before.other,
        }
    }
}

impl Writes {
    fn in_namespace(plane: &ControlPlane, ns: &str) -> Writes {
        let mut writes = Writes::default();
        for entry in plane.operator_writes(|e| e["objectRef"]["namespace"] == ns) {
            let what = &entry["objectRef"];
            if what["resource"] == "meshreadinesses" && what["subresource"] == "status" {
                writes.status += 1;
            } else if what["resource"] == "events" {
                writes.events += 1;
            } else {
                writes.other += 1;
            }
        }
        writes
    }
}

/// Per-change counts of writes and reconciles, summed over the changes of one kind.
#[derive(Default)]
struct Tally {
    changes: usize,
    writes: Vec<Writes>,
    reconciles: u64,
    /// Wall time of those reconciles, in seconds.
    reconcile_seconds: f64,
}

/// What the operator's metrics said before a change: reconciles and their wall time.
struct Before {
    writes: Writes,
    reconciles: u64,
    seconds: f64,
}

impl Before {
    fn now(plane: &ControlPlane, operator: &Operator, ns: &str) -> Before {
        Before {
            writes: Writes::in_namespace(plane, ns),
            reconciles: operator.reconciles(),
            seconds: operator.reconcile_seconds(),
        }
    }
}

impl Tally {
    /// Counts what the operator did since `before`.
    fn add(&mut self, plane: &ControlPlane, operator: &Operator, ns: &str, before: Before) {
        self.changes += 1;
        self.writes
            .push(Writes::in_namespace(plane, ns) - before.writes);
        self.reconciles += operator.reconciles() - before.reconciles;
        self.reconcile_seconds += operator.reconcile_seconds() - before.seconds;
    }

    fn report(&self, what: &str, goal: &str) {
        if self.changes == 0 {
            println!("{what:<44} no samples");
            return;
        }
        let sum = |f: fn(&Writes) -> usize| self.writes.iter().map(f).sum::<usize>();
        let range = |f: fn(&Writes) -> usize| {
            let (min, max) = (
                self.writes.iter().map(f).min().unwrap_or(0),
                self.writes.iter().map(f).max().unwrap_or(0),
            );
            format!("{:.2} ({min}..{max})", sum(f) as f64 / self.changes as f64)
        };
        println!(
            "{what:<44} per change: status patches {}, Events {}, other writes {}, reconciles {:.2} ({:.0} ms each)  ({} changes)  goal {goal}",
            range(|w| w.status),
            range(|w| w.events),
            range(|w| w.other),
            self.reconciles as f64 / self.changes as f64,
            self.reconcile_seconds * 1e3 / self.reconciles.max(1) as f64,
            self.changes
        );
    }
}

impl Bench {
    fn mesh_readiness(&self, ns: &str) -> Api<MeshReadiness> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Waits until `ns`'s MeshReadiness satisfies `condition`; how long that took from `since`.
    async fn until(
        &self,
        ns: &str,
        since: Instant,
        what: &str,
        condition: impl Fn(&MeshReadiness) -> bool,
    ) -> Duration {
        let wait = kube::runtime::wait::await_condition(
            self.mesh_readiness(ns),
            NAME,
            move |mr: Option<&MeshReadiness>| mr.is_some_and(&condition),
        );
        tokio::time::timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("{ns}: {what} not seen within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("{ns}: watching for {what}: {e}"));
        since.elapsed()
    }

    /// Removes every status, so that the next operator starts from none.
    async fn clear_statuses(&self) {
        futures::stream::iter(&self.namespaces)
            .for_each_concurrent(CONCURRENCY, |ns| async move {
                self.mesh_readiness(ns)
                    .patch_status(
                        NAME,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": null})),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("clearing {ns}'s status: {e}"));
            })
            .await;
    }

    /// Starts an operator on cleared statuses; the time until every MeshReadiness is current,
    /// and until the first one is.
    async fn cold_start(&self, debounce: Duration) -> (Operator, Duration, Duration) {
        self.clear_statuses().await;
        let mut changes = watcher(
            Api::<MeshReadiness>::all(self.client.clone()),
            watcher::Config::default(),
        )
        .applied_objects()
        .boxed();
        let started = Instant::now();
        let operator = Operator::start(self.plane, debounce);
        let mut current_ones = HashSet::new();
        let mut first = None;
        let deadline = tokio::time::Instant::now() + WAIT;
        while current_ones.len() < self.namespaces.len() {
            let mr = tokio::time::timeout_at(deadline, changes.try_next())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "cold start: {} of {} current after {WAIT:?}",
                        current_ones.len(),
                        self.namespaces.len()
                    )
                })
                .expect("watching MeshReadiness")
                .expect("the watch goes on");
            let key = mr.namespace().unwrap_or_default();
            if current(&mr) {
                first.get_or_insert_with(|| started.elapsed());
                current_ones.insert(key);
            } else {
                current_ones.remove(&key);
            }
        }
        let all = started.elapsed();
        (operator, all, first.unwrap_or(all))
    }

    /// The namespaces whose status lists MR201 for a generated Service with an unnamed port
    /// with that Service's name; else (a tiny cluster) any namespace with a finding and its code.
    async fn targets(&self) -> (Vec<(String, String)>, Vec<(String, String)>) {
        let list = Api::<MeshReadiness>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .expect("listing MeshReadiness");
        let mut unnamed_ports = Vec::new();
        let mut codes = Vec::new();
        for mr in &list.items {
            let ns = mr.namespace().unwrap_or_default();
            let findings = mr
                .status
                .as_ref()
                .map(|s| s.findings.as_slice())
                .unwrap_or_default();
            let unnamed = findings.iter().find(|f| {
                f.code.as_str() == "MR201"
                    && f.kind == "Service"
                    && self
                        .services
                        .get(&(ns.clone(), f.name.clone()))
                        .is_some_and(|s| s.to_string().contains(&format!("\"{UNDECLARED}\"")))
            });
            if let Some(f) = unnamed {
                unnamed_ports.push((ns.clone(), f.name.clone()));
                codes.push((ns, "MR201".to_string()));
            } else if let Some(f) = findings.first() {
                codes.push((ns, f.code.as_str().to_string()));
            }
        }
        // MR201 targets first, so that the MeshReadiness changes disable a Warning.
        codes.sort_by_key(|(_, code)| code != "MR201");
        (codes, unnamed_ports)
    }

    /// Makes `change` in `ns`, waits until `seen`, then lets the follow-up reconciles settle;
    /// returns the latency and records the writes and reconciles it caused.
    #[allow(clippy::too_many_arguments)]
    async fn sample<T>(
        &self,
        operator: &Operator,
        debounce: Duration,
        ns: &str,
        what: &str,
        change: impl std::future::Future<Output = T>,
        seen: impl Fn(&MeshReadiness, &T) -> bool,
        tally: &mut Tally,
    ) -> Duration {
        let before = Before::now(self.plane, operator, ns);
        let started = Instant::now();
        let changed = change.await;
        let latency = self
            .until(ns, started, what, move |mr| seen(mr, &changed))
            .await;
        // The status write is itself a change of the MeshReadiness: one more reconcile follows
        // after the debounce. Count what it writes too, and start the next change after it.
        tokio::time::sleep(debounce + Duration::from_millis(700)).await;
        tally.add(self.plane, operator, ns, before);
        latency
    }

    /// Sets (or clears) `spec.checks.disabled` of `ns`'s MeshReadiness; its new generation.
    async fn set_disabled(&self, ns: &str, code: Option<&str>) -> i64 {
        let disabled = code.map(|c| json!([c]));
        let mr = self
            .mesh_readiness(ns)
            .patch(
                NAME,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"checks": {"disabled": disabled}}})),
            )
            .await
            .unwrap_or_else(|e| panic!("changing {ns}'s MeshReadiness: {e}"));
        mr.metadata.generation.expect("generation")
    }

    /// The Service `ns/name` as loaded, its [`UNDECLARED`] port renamed `port_name`.
    fn service(&self, ns: &str, name: &str, port_name: Option<&str>) -> Value {
        let mut service = self.services[&(ns.to_string(), name.to_string())].clone();
        if let Some(port_name) = port_name {
            for port in service["spec"]["ports"].as_array_mut().unwrap() {
                if port["name"] == UNDECLARED {
                    port["name"] = json!(port_name);
                }
            }
        }
        service
    }

    async fn with_debounce(&self, debounce: Duration, config: &Config) {
        let label = format!("debounce {} ms", debounce.as_millis());
        println!("== {label}");
        let mut cold = Vec::new();
        let mut first = Vec::new();
        let mut done = Vec::new();
        let mut running: Option<Operator> = None;
        for _ in 0..config.runs.max(1) {
            if let Some(operator) = running.take() {
                operator.stop().await;
            }
            let started = Instant::now();
            let (operator, all, first_one) = self.cold_start(debounce).await;
            let at_current = operator.reconciles();
            // Each reconcile sends its Events after its status patch; the follow-up reconciles
            // (one per status patch) come a debounce later. Start measuring once all are done.
            let finished = operator
                .settle(self.namespaces.len() as u64, debounce, started)
                .await;
            let reconciles = operator.reconciles();
            println!(
                "cold start: all {} current in {:.2} s (first {:.2} s, {at_current} reconciles finished by then); all first reconciles finished (Events sent) in {:.2} s; quiet after {reconciles} reconciles, {:.0} ms of wall time each on average",
                self.namespaces.len(),
                all.as_secs_f64(),
                first_one.as_secs_f64(),
                finished.as_secs_f64(),
                operator.reconcile_seconds() * 1e3 / reconciles.max(1) as f64
            );
            cold.push(all);
            first.push(first_one);
            done.push(finished);
            running = Some(operator);
        }
        let operator = running.expect("an operator");
        Summary::of(cold).report(&format!("4. cold start, every status ({label})"), "-");
        Summary::of(first).report(&format!("4. cold start, first status ({label})"), "-");
        Summary::of(done).report(
            &format!("4. cold start, every reconcile done ({label})"),
            "-",
        );
        let (codes, unnamed_ports) = self.targets().await;

        let mut effective = Tally::default();
        let mut changed = Vec::new();
        for i in 0..config.samples.div_ceil(2) {
            let Some((ns, code)) = codes.get(i % codes.len().max(1)) else {
                println!("no MeshReadiness has a finding: the MeshReadiness changes are skipped");
                break;
            };
            // Disable the code, then enable it again: two changes, each one sample.
            for disable in [Some(code.as_str()), None] {
                let latency = self
                    .sample(
                        &operator,
                        debounce,
                        ns,
                        "the new generation in status",
                        self.set_disabled(ns, disable),
                        |mr, generation| current(mr) && mr.metadata.generation == Some(*generation),
                        &mut effective,
                    )
                    .await;
                changed.push(latency);
            }
        }
        if !changed.is_empty() {
            Summary::of(changed).report(
                &format!("4. MeshReadiness change → status ({label})"),
                "p99 < 1 s",
            );
        }
        effective.report(
            &format!("4. writes per MeshReadiness change ({label})"),
            "1 status patch",
        );

        let mut fixes = Tally::default();
        let mut breaks = Tally::default();
        let (mut cleared, mut appeared) = (Vec::new(), Vec::new());
        for i in 0..config.samples {
            let Some((ns, name)) = unnamed_ports.get(i % unnamed_ports.len().max(1)) else {
                println!("no MR201 finding on a generated Service: the Service fixes are skipped");
                break;
            };
            let fixed = self.service(ns, name, Some("http"));
            let broken = self.service(ns, name, None);
            cleared.push(
                self.sample(
                    &operator,
                    debounce,
                    ns,
                    "MR201 cleared",
                    self.objects.apply(&self.client, &fixed),
                    |mr, _| !has_finding(mr, "MR201", name),
                    &mut fixes,
                )
                .await,
            );
            appeared.push(
                self.sample(
                    &operator,
                    debounce,
                    ns,
                    "MR201 back",
                    self.objects.apply(&self.client, &broken),
                    |mr, _| has_finding(mr, "MR201", name),
                    &mut breaks,
                )
                .await,
            );
        }
        if !cleared.is_empty() {
            Summary::of(cleared).report(
                &format!("4. Service fix → MR201 cleared ({label})"),
                "p99 < 1 s",
            );
            Summary::of(appeared).report(
                &format!("4. Service break → MR201 back ({label})"),
                "p99 < 1 s",
            );
        }
        fixes.report(
            &format!("4. writes per Service fix ({label})"),
            "1 status patch",
        );
        breaks.report(
            &format!("4. writes per Service break ({label})"),
            "1 status patch",
        );

        let mut noop = Tally::default();
        for i in 0..config.noop {
            let ns = &self.namespaces[i % self.namespaces.len()];
            let Some(((_, name), service)) = self.services.iter().find(|((n, _), _)| n == ns)
            else {
                continue;
            };
            let mut touched = service.clone();
            // A value never applied before: the same one again would change nothing at all.
            touched["metadata"]["labels"]["meshready-bench/touch"] =
                json!(format!("d{}-t{i}", debounce.as_millis()));
            let before = Before::now(self.plane, &operator, ns);
            self.objects.apply(&self.client, &touched).await;
            let started = Instant::now();
            while operator.reconciles() == before.reconciles {
                assert!(
                    started.elapsed() < WAIT,
                    "{ns}: labelling Service {name} was never reconciled"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(debounce + Duration::from_millis(700)).await;
            noop.add(self.plane, &operator, ns, before);
        }
        noop.report(&format!("4. writes per no-op change ({label})"), "0 writes");
        operator.stop().await;
    }
}
