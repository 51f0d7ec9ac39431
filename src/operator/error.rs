//! The operator layer's errors, each with a short category for logs, metrics and Event reasons.

use crate::snapshot::BuildError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("building the snapshot: {0}")]
    Snapshot(#[from] BuildError),

    /// The blocking thread that builds the snapshot panicked or was cancelled (at shutdown).
    #[error("building the snapshot: {0}")]
    Blocking(#[from] tokio::task::JoinError),

    #[error("writing the status of {object}: {source}")]
    WriteStatus {
        object: String,
        #[source]
        source: kube::Error,
    },

    #[error("writing remediation {object}: {source}")]
    Remediate {
        object: String,
        #[source]
        source: kube::Error,
    },

    #[error("encoding the status: {0}")]
    Encode(#[from] serde_json::Error),

    #[error("connecting to the API server: {0}")]
    Connect(#[source] kube::Error),

    #[error("reading the kubeconfig: {0}")]
    Kubeconfig(#[source] kube::config::KubeconfigError),

    #[error("MeshReadiness {0} has no namespace")]
    MissingNamespace(String),

    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),

    #[error("serving metrics and health on {address}: {source}")]
    Serve {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A short, bounded label: safe as a metric label and an Event reason suffix.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Snapshot(_) | Error::Blocking(_) => "snapshot",
            Error::WriteStatus { .. } => "status_write",
            Error::Remediate { .. } => "remediation_write",
            Error::Encode(_) => "encode",
            Error::Connect(_) => "connect",
            Error::Kubeconfig(_) => "kubeconfig",
            Error::MissingNamespace(_) => "invalid_object",
            Error::Metrics(_) => "metrics",
            Error::Serve { .. } => "serve",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
