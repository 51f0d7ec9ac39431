//! Shared by the benchmark programs: the synthetic cluster, flags, and summary statistics.
//!
//! The programs are `harness = false` benches: `cargo bench --bench NAME -- FLAGS` runs them
//! at full size; `cargo test` runs each once at a tiny size (no `--bench` flag), so they keep
//! compiling and working without becoming timed tests.

#![allow(dead_code)] // each program uses its own part

pub mod counting;
pub mod generator;

use std::time::Duration;

use meshready::snapshot::{BuildOptions, ClusterObject, Snapshot};

use generator::{Cluster, Sizes};

/// `--flag value` pairs and bare `--flag`s, after cargo's own `--bench`.
pub struct Flags(Vec<String>);

impl Flags {
    pub fn from_env() -> Flags {
        Flags(std::env::args().skip(1).collect())
    }

    /// Run by `cargo bench` (full size) rather than `cargo test` (smoke run).
    pub fn benching(&self) -> bool {
        self.0.iter().any(|a| a == "--bench")
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        let flag = format!("--{name}");
        self.0
            .iter()
            .position(|a| *a == flag)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }

    pub fn number(&self, name: &str, default: usize) -> usize {
        self.value(name).map_or(default, |v| {
            v.replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("--{name} takes a whole number, not {v:?}"))
        })
    }

    /// `--seed --namespaces --pods --services --istio`, defaulting to `default`.
    pub fn sizes(&self, default: Sizes) -> Sizes {
        Sizes {
            seed: self.number("seed", default.seed as usize) as u64,
            namespaces: self.number("namespaces", default.namespaces),
            pods: self.number("pods", default.pods),
            services: self.number("services", default.services),
            istio_objects: self.number("istio", default.istio_objects),
        }
    }
}

/// Decodes generated objects as `meshready analyze` and the operator would hold them.
pub fn cluster_objects<'a>(
    values: impl IntoIterator<Item = &'a serde_json::Value>,
) -> Vec<ClusterObject> {
    values
        .into_iter()
        .filter_map(|v| ClusterObject::from_value(v.clone()).expect("generated objects decode"))
        .collect()
}

pub fn snapshot(cluster: &Cluster) -> Snapshot {
    Snapshot::build(cluster_objects(cluster.objects()), &BuildOptions::default())
        .expect("generated cluster builds")
}

/// Min, median, p99 and max of a set of timings.
pub struct Summary {
    pub runs: usize,
    pub min: Duration,
    pub median: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    pub fn of(mut samples: Vec<Duration>) -> Summary {
        assert!(!samples.is_empty(), "no samples");
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Summary {
            runs: samples.len(),
            min: samples[0],
            median: at(0.5),
            p99: at(0.99),
            max: samples[samples.len() - 1],
        }
    }

    /// One line: `name: min / median / p99 / max (runs), goal`.
    pub fn report(&self, name: &str, goal: &str) {
        println!(
            "{name:<44} min {:>10}  median {:>10}  p99 {:>10}  max {:>10}  ({} runs)  goal {goal}",
            ms(self.min),
            ms(self.median),
            ms(self.p99),
            ms(self.max),
            self.runs
        );
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}
