//! The `meshready` binary: parses arguments, dispatches, and maps the outcome to an exit code
//! (0 clean, 1 findings at `--fail-on`, 2 bad input). Logs go to stderr (`RUST_LOG`, or the
//! controller's `--log-level` and `--log-format`).

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use clap::Parser;
use meshready::cli::{self, Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's malloc: the checks allocate many small strings and maps, and
/// with glibc half of a full analysis was the allocator (BENCHMARKS.md, benchmark 1).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Cli::parse();
    match &args.command {
        Command::Controller(controller) => {
            init_tracing(&controller.log.log_level, controller.log.log_format)
        }
        // The CLI's output is its report; logs only say what went wrong.
        _ => init_tracing("warn", LogFormat::Text),
    }
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
    let options = meshready::operator::ServeOptions {
        operator_namespace: args.operator_namespace.clone(),
        debounce: std::time::Duration::from_millis(args.debounce_ms),
        admin_address: Some(args.admin_address),
        leader_elect: args.leader_elect,
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
    };
    match runtime.block_on(meshready::operator::serve(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("meshready: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr. `RUST_LOG`, when set, wins over `default_filter`.
fn init_tracing(default_filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(default_filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.with_ansi(io::stderr().is_terminal()).init(),
    }
}
