//! Prometheus metrics. Labels stay bounded: kinds, verbs, codes, severities, namespaces and
//! MeshReadiness names, never pod names.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// API writes by kind and verb: what "a reconcile that changes nothing writes nothing" is
    /// measured by.
    pub api_writes: IntCounterVec,
    pub reconcile_errors: IntCounterVec,
    pub reconcile_duration: HistogramVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let api_writes = IntCounterVec::new(
            Opts::new(
                "meshreadiness_api_writes_total",
                "Writes to the API server, by kind and verb",
            ),
            &["kind", "verb"],
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "meshreadiness_reconcile_errors_total",
                "Failed reconciles, by reason",
            ),
            &["reason"],
        )?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "meshreadiness_reconcile_duration_seconds",
                "Time spent in one reconcile",
            )
            .buckets(vec![0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &[],
        )?;
        for collector in [
            Box::new(api_writes.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconcile_errors.clone()),
            Box::new(reconcile_duration.clone()),
        ] {
            registry.register(collector)?;
        }
        Ok(Self {
            registry,
            api_writes,
            reconcile_errors,
            reconcile_duration,
        })
    }

    pub fn write(&self, kind: &str, verb: &str) {
        self.api_writes.with_label_values(&[kind, verb]).inc();
    }

    /// Observes the reconcile's duration when dropped, so every exit path is measured.
    pub fn time_reconcile(&self) -> prometheus::HistogramTimer {
        self.reconcile_duration
            .with_label_values(&[] as &[&str])
            .start_timer()
    }
}
