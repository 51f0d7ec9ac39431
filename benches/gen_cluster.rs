//! Writes a synthetic cluster as manifests, one multi-document YAML file per namespace.
//!
//! `cargo bench --bench gen_cluster -- --out DIR [--seed N --namespaces N --pods N --services N
//! --istio N]` (defaults: the "large" cluster, seed 1). Without `--bench` (as `cargo test` runs
//! it) it writes a tiny cluster into a temporary directory and checks that it reads back.

mod support;

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use support::Flags;
use support::generator::{Sizes, generate};

fn main() {
    let flags = Flags::from_env();
    let (sizes, out) = if flags.benching() {
        let out = PathBuf::from(flags.value("out").unwrap_or("target/bench/cluster-large"));
        (flags.sizes(Sizes::LARGE), out)
    } else {
        let out = std::env::temp_dir().join(format!("meshready-gen-{}", std::process::id()));
        (Sizes::scaled(6), out)
    };
    let cluster = generate(sizes);
    if out.exists() {
        fs::remove_dir_all(&out).expect("removing the old cluster directory");
    }
    fs::create_dir_all(&out).expect("creating the cluster directory");
    for ns in &cluster.namespaces {
        let path = out.join(format!("{}.yaml", ns.name));
        let mut file = std::io::BufWriter::new(fs::File::create(&path).expect("creating a file"));
        for object in &ns.objects {
            let text = serde_saphyr::to_string(object).expect("YAML serialises");
            writeln!(file, "---\n{}", text.trim_end()).expect("writing");
        }
        file.flush().expect("writing");
    }
    let kinds = [
        "Namespace",
        "Deployment",
        "ReplicaSet",
        "Pod",
        "Service",
        "PeerAuthentication",
        "DestinationRule",
        "VirtualService",
    ];
    let counts: Vec<String> = kinds
        .iter()
        .map(|k| format!("{k} {}", cluster.count(k)))
        .collect();
    println!(
        "wrote {} (seed {}): {}",
        out.display(),
        sizes.seed,
        counts.join(", ")
    );
    println!("planted problems: {:?}", cluster.planted);
    if !flags.benching() {
        // Read back through the same loader `meshready analyze` uses.
        let loaded = meshready::cli::load(std::slice::from_ref(&out), "default", std::io::empty())
            .expect("generated manifests load");
        assert!(!loaded.objects.is_empty());
        fs::remove_dir_all(&out).expect("cleaning up");
    }
}
