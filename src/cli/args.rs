//! Command-line arguments (clap derive). `main` parses them and dispatches.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::checks::Severity;

pub use crate::api::keys::DEFAULT_OPERATOR_NAMESPACE;

#[derive(Debug, Parser)]
#[command(
    name = "meshready",
    version,
    about = "Tells whether Kubernetes namespaces are ready for the Istio service mesh, and why \
             requests would fail with 503 once meshed"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifest files offline and report what would break once meshed.
    Analyze(AnalyzeArgs),
    /// List the finding codes.
    Checks(ChecksArgs),
    /// Print the MeshReadiness CustomResourceDefinition as YAML.
    Crd,
    /// Print the name and version.
    Version,
    /// Run the operator against the cluster of the current kubeconfig (or in-cluster config).
    Controller(ControllerArgs),
}

#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// The namespace whose MeshReadiness objects may select other namespaces (default: the
    /// namespace the operator runs in, else meshreadiness-system).
    #[arg(long, env = "OPERATOR_NAMESPACE")]
    pub operator_namespace: Option<String>,

    /// Changes within this many milliseconds are folded into one reconcile. Short enough that a
    /// change shows in status well within a second (BENCHMARKS.md, benchmark 4), long enough to
    /// fold a rollout's burst of pod events.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    pub debounce_ms: u64,

    /// Elect one writer among replicas with a Lease (`meshready-leader`) in the operator namespace.
    #[arg(long)]
    pub leader_elect: bool,

    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, value_name = "ADDRESS", default_value = "0.0.0.0:8080")]
    pub admin_address: std::net::SocketAddr,

    /// The kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else the in-cluster config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use (default: its current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,

    #[command(flatten)]
    pub log: LogArgs,
}

/// How the operator logs (to stderr, through `tracing`).
#[derive(Debug, Args)]
pub struct LogArgs {
    /// `json` (one object per line, for log collectors) or `text`.
    #[arg(long, value_enum, env = "MESHREADY_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// A level (`error`, `warn`, `info`, `debug`, `trace`) or a `tracing` filter such as
    /// `info,kube=warn`. `RUST_LOG`, when set, wins.
    #[arg(
        long,
        value_name = "FILTER",
        env = "MESHREADY_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// A manifest file, a directory (read recursively: *.yaml, *.yml, *.json), or `-` for stdin.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Exit 1 when a finding at or above this severity exists.
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    pub fail_on: FailOn,

    /// The namespace of objects that name none.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,

    /// Treat namespaces without a Namespace object in the input as injected.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub assume_injected: bool,

    /// Whether istiod runs the proxy as a native sidecar (default: the injector's values, else off).
    #[arg(long, value_enum)]
    pub native_sidecars: Option<Toggle>,

    /// A MeshConfig YAML file; overrides any `istio` ConfigMap in the input.
    #[arg(long, value_name = "FILE")]
    pub mesh_config: Option<PathBuf>,

    /// The operator's namespace: a MeshReadiness there may select namespaces by label.
    #[arg(long, value_name = "NS", default_value = DEFAULT_OPERATOR_NAMESPACE)]
    pub operator_namespace: String,

    /// Print what `remediation.mode: Apply` would create: YAML documents ready to commit, or
    /// with `-o json` a `remediations` list beside the findings. Follows the remediation flags
    /// of the input's MeshReadiness objects; with none in the input, every namespace gets all
    /// three kinds with the default settings (as if a MeshReadiness named `default` allowed
    /// them). The exit code still follows the findings and --fail-on.
    #[arg(long)]
    pub plan: bool,
}

#[derive(Debug, Args)]
pub struct ChecksArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = CatalogueFormat::Table)]
    pub output: CatalogueFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Yaml,
    Sarif,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CatalogueFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Error,
    Warning,
    Info,
    Never,
}

impl FailOn {
    /// The lowest severity that fails the run, if any does.
    pub fn threshold(self) -> Option<Severity> {
        match self {
            FailOn::Error => Some(Severity::Error),
            FailOn::Warning => Some(Severity::Warning),
            FailOn::Info => Some(Severity::Info),
            FailOn::Never => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Toggle {
    On,
    Off,
}

impl From<Toggle> for bool {
    fn from(toggle: Toggle) -> bool {
        toggle == Toggle::On
    }
}
