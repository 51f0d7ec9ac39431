//! `meshready analyze`: manifests in, findings out.

use std::collections::BTreeSet;
use std::io::{Read, Write};

use k8s_openapi::jiff::Timestamp;
use tracing::warn;

use crate::checks::{self, Finding};
use crate::cli::args::{AnalyzeArgs, OutputFormat};
use crate::cli::error::{Error, Position, Result};
use crate::cli::report::Report;
use crate::cli::{emit, load, plan, render, scope};
use crate::istio::mesh::MeshConfig;
use crate::snapshot::scope::selector_problem;
use crate::snapshot::{BuildError, BuildOptions, ObjectRef, Snapshot, SnapshotBuilder};

/// How a run ended, when it could run at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Nothing reached `--fail-on`.
    Passed,
    /// A finding reached `--fail-on`.
    Failed,
}

impl Status {
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Passed => 0,
            Status::Failed => 1,
        }
    }
}

pub fn analyze(args: &AnalyzeArgs, stdin: impl Read, out: &mut impl Write) -> Result<Status> {
    if args.plan {
        plan::check_format(args.output)?;
    }
    let options = BuildOptions {
        default_namespace: args.namespace.clone(),
        assume_injected: args.assume_injected,
        native_sidecars: args.native_sidecars.map(bool::from),
        mesh_config: args
            .mesh_config
            .as_deref()
            .map(read_mesh_config)
            .transpose()?,
    };
    // Each object goes into the snapshot as it is decoded: holding every decoded object first
    // would hold every pod's spec, most of a large cluster's manifests.
    let loaded = load::load_into(
        &args.files,
        &args.namespace,
        stdin,
        SnapshotBuilder::new(options),
    )?;
    if loaded.objects.is_empty() {
        warn!("the input holds no object of a kind meshready reads");
    }
    let load::Loaded {
        objects: builder,
        origins,
    } = loaded;
    let snapshot = builder.finish().map_err(|source| {
        let BuildError::Config {
            namespace, name, ..
        } = &source;
        let config_map = ObjectRef::new("ConfigMap", namespace.as_str(), name.as_str());
        let at = match origins.get(&config_map) {
            Some(origin) => Position {
                file: origin.file.clone(),
                line: Some(origin.line),
            },
            None => Position {
                file: "input".to_string(),
                line: None,
            },
        };
        Error::Config { at, source }
    })?;
    let (findings, namespaces) = run_checks(&snapshot, &args.operator_namespace);
    let planned = args.plan.then(|| {
        plan::plan(
            &snapshot,
            &findings,
            &args.operator_namespace,
            Timestamp::now(),
        )
    });
    let mut report = Report::new(findings, namespaces, |object| origins.get(object).cloned());
    let text = match (planned, args.output) {
        (Some(planned), OutputFormat::Json) => {
            report.remediations = Some(planned);
            render::json(&report)?
        }
        (Some(planned), _) => plan::yaml(&planned)?,
        (None, format) => render_report(&report, format)?,
    };
    emit(out, &text)?;
    Ok(if report.fails(args.fail_on.threshold()) {
        Status::Failed
    } else {
        Status::Passed
    })
}

fn render_report(report: &Report, format: OutputFormat) -> Result<String> {
    Ok(match format {
        OutputFormat::Table => render::table::report(report),
        OutputFormat::Json => render::json(report)?,
        OutputFormat::Yaml => render::yaml(report)?,
        OutputFormat::Sarif => {
            let cwd = std::env::current_dir().ok();
            render::json(&render::sarif::report(report, cwd.as_deref()))?
        }
    })
}

/// Runs the checks on every checkable namespace of `snapshot`, each with the settings of the
/// MeshReadiness that covers it. Returns the findings in report order and the namespaces checked.
pub fn run_checks(
    snapshot: &Snapshot,
    operator_namespace: &str,
) -> (Vec<Finding>, BTreeSet<String>) {
    for mr in &snapshot.mesh_readiness {
        let Some(selector) = &mr.spec.namespace_selector else {
            continue;
        };
        let object = format!("{}/{}", mr.meta.namespace, mr.meta.name);
        if mr.meta.namespace != operator_namespace {
            warn!(
                meshreadiness = %object,
                operator_namespace,
                "namespaceSelector is honoured only in the operator namespace; this object covers nothing"
            );
        } else if let Some(problem) = selector_problem(selector) {
            warn!(meshreadiness = %object, "{problem}; this object covers nothing");
        }
    }
    let namespaces = snapshot.checkable_namespaces();
    let assigned = scope::assign(snapshot, &namespaces, operator_namespace);
    let mut findings: Vec<Finding> = scope::requests(&namespaces, &assigned)
        .iter()
        .flat_map(|request| checks::run(snapshot, request))
        .collect();
    findings.sort_by(Finding::report_order);
    findings.dedup_by(|a, b| a.code == b.code && a.object == b.object);
    (findings, namespaces)
}

fn read_mesh_config(path: &std::path::Path) -> Result<MeshConfig> {
    let file = std::fs::File::open(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = load::read_capped(file, &path.display().to_string())?;
    MeshConfig::parse(&text).map_err(|source| Error::MeshConfig {
        path: path.to_path_buf(),
        source,
    })
}
