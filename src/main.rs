//! The `meshready` binary: parses arguments, dispatches, and maps the outcome to an exit code
//! (0 clean, 1 findings at `--fail-on`, 2 bad input). Logs go to stderr (`RUST_LOG`).

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use clap::Parser;
use meshready::cli::{self, Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = Cli::parse();
    init_tracing();
    let mut stdout = io::stdout().lock();
    let outcome = match &args.command {
        Command::Analyze(analyze) => cli::analyze(analyze, io::stdin().lock(), &mut stdout),
        Command::Checks(checks) => cli::checks(checks, &mut stdout),
        Command::Crd => cli::crd(&mut stdout),
        Command::Version => cli::version(&mut stdout),
        Command::Controller(controller) => return run_controller(controller),
    };
    match outcome {
        Ok(status) => ExitCode::from(status.exit_code()),
        Err(err) => {
            eprintln!("meshready: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

/// `meshready controller`: runs until SIGTERM or Ctrl-C.
fn run_controller(args: &cli::ControllerArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("meshready: starting the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(meshready::operator::serve(
        args.operator_namespace.clone(),
        args.debounce_ms,
        args.admin_address,
        args.leader_elect,
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("meshready: {err}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .init();
}
