//! The admin server: `/metrics`, `/healthz` (alive) and `/readyz` (every watch has synced).
//!
//! Gauges about what the operator knows (findings, Ready) are computed at scrape time from the
//! caches it already keeps, so nothing is counted twice and nothing goes stale.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, GaugeVec, Opts, TextEncoder};

use crate::api::RemediationState;
use crate::checks::{Code, Severity};
use crate::operator::context::Context;
use crate::operator::error::{Error, Result};
use crate::operator::status;

/// Findings, Ready and remediations, read at scrape time from the operator's caches.
pub struct StateCollector {
    context: Arc<Context>,
    findings: GaugeVec,
    ready: GaugeVec,
    remediations: GaugeVec,
}

impl StateCollector {
    pub fn new(context: Arc<Context>) -> Result<Self, prometheus::Error> {
        Ok(Self {
            context,
            findings: GaugeVec::new(
                Opts::new(
                    "meshreadiness_findings",
                    "Unmitigated findings, by namespace, code and severity",
                ),
                &["namespace", "code", "severity"],
            )?,
            ready: GaugeVec::new(
                Opts::new(
                    "meshreadiness_ready",
                    "1 when a MeshReadiness is Ready, else 0",
                ),
                &["namespace", "name"],
            )?,
            remediations: GaugeVec::new(
                Opts::new(
                    "meshreadiness_remediations",
                    "Remediations listed in MeshReadiness status, by kind and state; \
                     kind=\"PeerAuthentication\",state=\"Applied\" counts PERMISSIVE policies alive",
                ),
                &["kind", "state"],
            )?,
        })
    }
}

impl Collector for StateCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.findings
            .desc()
            .into_iter()
            .chain(self.ready.desc())
            .chain(self.remediations.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.findings.reset();
        self.ready.reset();
        self.remediations.reset();
        // A finding seen by two MeshReadiness objects covering one namespace counts once.
        let mut unique: BTreeSet<(Code, &str, &str, &str, Severity)> = BTreeSet::new();
        let reported = self
            .context
            .reported
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for findings in reported.values() {
            for f in findings.values() {
                unique.insert((
                    f.code,
                    f.object.namespace.as_str(),
                    f.object.kind.as_str(),
                    f.object.name.as_str(),
                    f.severity,
                ));
            }
        }
        let mut counts: BTreeMap<(&str, Code, Severity), f64> = BTreeMap::new();
        for (code, namespace, _, _, severity) in unique {
            *counts.entry((namespace, code, severity)).or_default() += 1.0;
        }
        for ((namespace, code, severity), count) in counts {
            self.findings
                .with_label_values(&[namespace, code.as_str(), severity.as_str()])
                .set(count);
        }
        drop(reported);
        for mr in self.context.mesh_readiness.state() {
            let ready = mr
                .status
                .as_ref()
                .and_then(status::ready)
                .is_some_and(|c| c.status == "True");
            let namespace = mr.metadata.namespace.as_deref().unwrap_or_default();
            let name = mr.metadata.name.as_deref().unwrap_or_default();
            self.ready
                .with_label_values(&[namespace, name])
                .set(if ready { 1.0 } else { 0.0 });
            for r in mr.status.iter().flat_map(|s| &s.remediations) {
                self.remediations
                    .with_label_values(&[r.kind.as_str(), state_label(r.state)])
                    .inc();
            }
        }
        self.findings
            .collect()
            .into_iter()
            .chain(self.ready.collect())
            .chain(self.remediations.collect())
            .collect()
    }
}

fn state_label(state: RemediationState) -> &'static str {
    match state {
        RemediationState::Planned => "Planned",
        RemediationState::Applied => "Applied",
        RemediationState::Blocked => "Blocked",
        RemediationState::Expired => "Expired",
    }
}

async fn metrics(State(context): State<Arc<Context>>) -> impl IntoResponse {
    let mut body = Vec::new();
    match TextEncoder::new().encode(&context.metrics.registry.gather(), &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [("content-type", prometheus::TEXT_FORMAT)],
            body,
        )
            .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready once every watch has delivered its first list: before that a reconcile would judge a
/// partial cache.
async fn readyz(State(context): State<Arc<Context>>) -> (StatusCode, &'static str) {
    if context.is_synced() {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "watch caches not synced yet",
        )
    }
}

/// Binds `address` and serves until the process ends. Returns the bound address (port 0 picks one).
pub async fn serve(address: SocketAddr, context: Arc<Context>) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| Error::Serve {
            address: address.to_string(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| Error::Serve {
        address: address.to_string(),
        source,
    })?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(context);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "admin server stopped");
        }
    });
    tracing::info!(address = %bound, "serving /metrics, /healthz and /readyz");
    Ok(bound)
}
