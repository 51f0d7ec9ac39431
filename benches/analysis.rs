//! Benchmarks 1 and 2: full analysis of a built snapshot, and re-analysis of one namespace
//! after one object in it changes.
//!
//! "Built" is what the operator keeps (`operator::snapshots::SharedSnapshot`): the snapshot and
//! its [`Index`], made together and read by every reconcile, and brought up to date per
//! namespace as the caches change. Benchmark 1 times the checks over that; the index build is
//! timed with the snapshot build, and `checks::run` (index and checks, what `meshready analyze`
//! runs once after loading its files) is timed beside it.
//!
//! `cargo bench --bench analysis -- [--runs N] [--builds N] [--changes N] [--dump FILE] [sizes flags]`
//! (default: the "large" cluster; `--dump` writes the full analysis's findings to FILE, from
//! one more run outside the timing). Single thread: the checks run on the calling thread only.

mod support;

/// The allocator of the `meshready` binary (src/main.rs), so the figures are the binary's;
/// counted only in one untimed analysis, to show what one allocates.
#[global_allocator]
static ALLOCATOR: Counting<mimalloc::MiMalloc> = Counting(mimalloc::MiMalloc);

use std::time::Instant;

use meshready::checks::{self, CheckRequest, Incremental, Index};
use meshready::snapshot::BuildOptions;
use serde_json::Value;
use support::counting::{self, Counting, Counts};
use support::generator::{Rng, Sizes, generate};
use support::{Flags, Summary};

fn main() {
    counting::set_counting(false);
    let flags = Flags::from_env();
    let benching = flags.benching();
    let sizes = flags.sizes(if benching {
        Sizes::LARGE
    } else {
        Sizes::scaled(8)
    });
    let runs = flags.number("runs", if benching { 7 } else { 1 });
    // Fewer builds than runs leaves a profile of benchmark 1 to the checks alone.
    let build_runs = flags.number("builds", runs).max(1);

    let started = Instant::now();
    let cluster = generate(sizes);
    let objects = support::cluster_objects(cluster.objects());
    println!(
        "cluster: {} namespaces, {} pods, {} services, {} Istio objects (seed {}), generated and decoded in {}",
        sizes.namespaces,
        cluster.count("Pod"),
        cluster.count("Service"),
        cluster.count("PeerAuthentication")
            + cluster.count("DestinationRule")
            + cluster.count("VirtualService"),
        sizes.seed,
        support::ms(started.elapsed())
    );

    // As the operator does when it builds whole (at a relist): a new snapshot and index are built
    // while the last ones are still held, which then go.
    let (mut builds, mut indexes) = (Vec::new(), Vec::new());
    let mut built = None;
    for _ in 0..build_runs {
        let input = objects.clone();
        let started = Instant::now();
        let snapshot = meshready::snapshot::Snapshot::build(input, &Default::default())
            .expect("snapshot builds");
        let between = Instant::now();
        let index = Index::new(&snapshot);
        indexes.push(between.elapsed());
        builds.push(between - started);
        built = Some((snapshot, index));
    }
    let (snapshot, index) = built.expect("at least one build");
    Summary::of(builds).report("snapshot build (from decoded objects)", "-");
    Summary::of(indexes).report("index build (kept with the snapshot)", "-");

    let request = CheckRequest {
        namespaces: snapshot.checkable_namespaces(),
        ..CheckRequest::default()
    };
    let (mut full, mut unindexed) = (Vec::new(), Vec::new());
    let mut count = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let findings = checks::run_indexed(&snapshot, &index, &request);
        full.push(started.elapsed());
        count = findings.len();
    }
    for _ in 0..runs {
        let started = Instant::now();
        let findings = checks::run(&snapshot, &request);
        unindexed.push(started.elapsed());
        assert_eq!(
            findings.len(),
            count,
            "the same findings with and without a kept index"
        );
    }
    println!("findings: {count}");
    counting::set_counting(true);
    let before = Counts::now();
    let findings = checks::run_indexed(&snapshot, &index, &request);
    let counts = Counts::now().since(before);
    counting::set_counting(false);
    drop(findings);
    println!(
        "allocated by one full analysis (one more, untimed): {:.1} MB in {} allocations, {:.1} MB of it kept (the findings)",
        counts.requested as f64 / 1e6,
        counts.allocations,
        counts.live as f64 / 1e6
    );
    if let Some(path) = flags.value("dump") {
        dump(&checks::run_indexed(&snapshot, &index, &request), path);
    }
    Summary::of(full).report("1. full analysis (built snapshot and index)", "<= 100 ms");
    Summary::of(unindexed).report("1+. index build and full analysis", "-");
    drop(index);
    let changes = flags.number("changes", if benching { 1_000 } else { 10 });
    incremental(&cluster, snapshot, changes);
}

/// Writes one line per finding (code, severity, object, message), in report order, so two
/// versions of the checks can be compared with `cmp`.
fn dump(findings: &[checks::Finding], path: &str) {
    let mut text = String::new();
    for f in findings {
        let o = &f.object;
        text.push_str(&format!(
            "{:?}\t{:?}\t{}/{}/{}\t{}\n",
            f.code, f.severity, o.kind, o.namespace, o.name, f.message
        ));
    }
    std::fs::write(path, text).expect("writes the findings dump");
    println!("findings written to {path}");
}

/// Benchmark 2: `changes` times, one object of a random namespace changes (a Service's port
/// name flips between a declared and a tcp-named one, or a Deployment's template gains an
/// annotation); the namespace's objects are rebuilt into the kept snapshot and only it is
/// re-checked. The decoding of the namespace's objects (the operator has them decoded in
/// its caches) is outside the timing.
fn incremental(
    cluster: &support::generator::Cluster,
    snapshot: meshready::snapshot::Snapshot,
    changes: usize,
) {
    let options = BuildOptions::default();
    let started = Instant::now();
    let mut kept = Incremental::new(snapshot);
    println!("index build: {}", support::ms(started.elapsed()));
    let mut rng = Rng::new(42);
    let (mut replace, mut check, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let mut cross = 0;
    for change in 0..changes {
        // Skip istio-system (position 0): mesh-wide, rebuilt whole.
        let ns = &cluster.namespaces[1 + rng.below(cluster.namespaces.len() - 1)];
        let mut objects: Vec<Value> = ns.objects.clone();
        if change % 2 == 0 {
            if let Some(svc) = objects.iter_mut().find(|o| o["kind"] == "Service") {
                let port = &mut svc["spec"]["ports"][0];
                port["name"] = if port["name"] == "http" {
                    "tcp-web".into()
                } else {
                    "http".into()
                };
            }
        } else if let Some(deploy) = objects.iter_mut().find(|o| o["kind"] == "Deployment") {
            deploy["spec"]["template"]["metadata"]["annotations"] = serde_json::json!({"proxy.istio.io/config": "{\"holdApplicationUntilProxyStarts\": false}"});
        }
        let decoded = support::cluster_objects(&objects);
        let request = CheckRequest {
            namespaces: [ns.name.clone()].into(),
            ..CheckRequest::default()
        };
        let started = Instant::now();
        let replaced = kept
            .replace_namespace(&ns.name, decoded, &options)
            .expect("replaces");
        let between = Instant::now();
        let findings = kept.run(&request);
        let done = Instant::now();
        std::hint::black_box(findings);
        cross += usize::from(replaced.cross_namespace);
        replace.push(between - started);
        check.push(done - between);
        total.push(done - started);
    }
    Summary::of(replace).report("2a. rebuild + splice + index one namespace", "-");
    Summary::of(check).report("2b. checks on that namespace", "-");
    Summary::of(total).report("2. re-analysis after one change (total)", "p99 <= 1 ms");
    println!("changes that touched cross-namespace facts: {cross} of {changes}");
}
