//! The `authq` binary: a thin shell over the worker (`serve`) and the client library (`call`).
//! `anyhow` lives here and nowhere else; exit statuses are decided here.
//!
//! - `cli`: the command line (every subcommand and flag); `broker_args`: the broker flags the
//!   subcommands share (a leaf: `cli → bench → broker_args`, never back).
//! - `call`, `events`, `top`, `bench`: one module per subcommand.

mod bench;
mod broker_args;
mod call;
mod cli;
mod events;
mod top;

use anyhow::Context as _;
use clap::Parser;
use cli::{Cli, Command, LogFormat};
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        // `call` reports its own failures on stderr; lapin's logs would repeat them.
        Command::Call(_)
        | Command::Bench(_)
        | Command::Events(_)
        | Command::Top(_)
        | Command::BenchEcho(_) => "warn,lapin=off",
    };
    init_logging(cli.log_format, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("authq-rt")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("authq: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Call(args) => runtime.block_on(call::run(args)),
        Command::Bench(args) => match runtime.block_on(bench::run(*args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("authq bench: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Events(args) => runtime.block_on(events::run(args)),
        Command::Top(args) => match runtime.block_on(top::run(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("authq top: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::BenchEcho(args) => match runtime.block_on(bench::echo_serve(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("authq bench-echo: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Serve(args) => match runtime.block_on(serve(*args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                let error: &(dyn std::error::Error + 'static) = e.as_ref();
                eprintln!("authq serve: {}", authq::error::report(error));
                ExitCode::FAILURE
            }
        },
    }
}

async fn serve(args: cli::ServeArgs) -> anyhow::Result<()> {
    let metrics_file = args.metrics_file.clone();
    let file = args.config.clone();
    let mut config = args.into_config();
    if let Some(path) = file {
        config.social = authq_worker::social::config::load_file(&path)
            .with_context(|| format!("reading the configuration file {}", path.display()))?;
    }
    tracing::debug!(?config, "configuration");
    let shutdown = shutdown_signal();
    let worker = authq_worker::WorkerHandle::start(config)
        .await
        .context("the worker could not start")?;
    let metrics = std::sync::Arc::clone(worker.metrics());
    let outcome = worker
        .run_until(shutdown)
        .await
        .context("the worker stopped with an error");
    if let Some(path) = metrics_file {
        let json = serde_json::to_vec_pretty(&metrics.snapshot())?;
        std::fs::write(&path, json)
            .with_context(|| format!("cannot write the metrics to {}", path.display()))?;
    }
    outcome
}

/// Listens for SIGINT (Ctrl-C) and SIGTERM from this call on; the future completes on the
/// first. Call it before the worker starts: a signal that arrives between the moment the pool
/// answers requests and the first poll of a lazily installed handler would kill the process
/// with the default action, skipping the graceful shutdown (seen once in the bench smoke test
/// under CPU load).
pub(crate) fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let (mut term, mut int) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            if term.is_none() && int.is_none() {
                let _ = tokio::signal::ctrl_c().await;
            } else {
                tokio::select! {
                    () = next(&mut term) => {}
                    () = next(&mut int) => {}
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown requested");
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_env("AUTHQ_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
