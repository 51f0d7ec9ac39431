//! The offline CLI: `analyze` reads manifests and reports findings; `checks`, `crd` and
//! `version` print what they say. `main` parses [`Cli`] and calls one of these.

mod analyze;
mod args;
mod catalogue;
mod error;
mod load;
mod plan;
mod render;
mod report;
pub mod scope;
mod yaml;

use std::io::{self, Write};

use kube::CustomResourceExt;

pub use analyze::{Status, analyze, run_checks};
pub use args::{
    AnalyzeArgs, CatalogueFormat, ChecksArgs, Cli, Command, ControllerArgs, FailOn, LogArgs,
    LogFormat, OutputFormat,
};
pub use error::{Error, Result};
pub use load::{Loaded, Origin, load};
pub use plan::{IMPLICIT_NAME, PlanEntry};
pub use report::{Report, ReportedFinding, Summary};

/// `meshready checks`: the catalogue of finding codes.
pub fn checks(args: &ChecksArgs, out: &mut impl Write) -> Result<Status> {
    let text = match args.output {
        CatalogueFormat::Table => render::table::catalogue(),
        CatalogueFormat::Json => render::json(&catalogue::entries())?,
        CatalogueFormat::Yaml => render::yaml(&catalogue::entries())?,
    };
    emit(out, &text)?;
    Ok(Status::Passed)
}

/// `meshready crd`: the MeshReadiness CustomResourceDefinition, as committed in `crds/`.
pub fn crd(out: &mut impl Write) -> Result<Status> {
    emit(out, &render::yaml(&crate::api::MeshReadiness::crd())?)?;
    Ok(Status::Passed)
}

/// `meshready version`.
pub fn version(out: &mut impl Write) -> Result<Status> {
    let text = format!("{} {}\n", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));
    emit(out, &text)?;
    Ok(Status::Passed)
}

/// Writes the whole output at once. A reader that stops early (`| head`) is not an error.
fn emit(out: &mut impl Write, text: &str) -> Result<()> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Error::Write(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_yaml_reads_back_as_the_crd() {
        let mut out = Vec::new();
        crd(&mut out).expect("renders");
        let text = String::from_utf8(out).expect("UTF-8");
        let read: serde_json::Value = serde_saphyr::from_str(&text).expect("valid YAML");
        let expected = serde_json::to_value(crate::api::MeshReadiness::crd()).expect("JSON");
        assert_eq!(read, expected);
    }
}
