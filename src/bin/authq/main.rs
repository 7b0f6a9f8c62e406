//! The `authq` binary: a thin shell over the worker (`serve`) and the client library (`call`).
//! `anyhow` lives here and nowhere else; exit statuses are decided here.
//!
//! - `cli`: the command line (every subcommand and flag); `broker_args`: the broker flags the
//!   subcommands share (a leaf: `cli → bench → broker_args`, never back).
//! - `serve`, `call`, `events`, `top`, `bench`, `user`: one module per subcommand (`serve` holds its
//!   flags too); `shutdown`: the SIGINT/SIGTERM future `serve` and `events` wait for.

mod bench;
mod broker_args;
mod call;
mod cli;
mod events;
mod serve;
mod shadow;
mod shutdown;
mod token_args;
mod top;
mod user;

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
        | Command::Shadow(_)
        | Command::User(_)
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
        Command::Shadow(args) => runtime.block_on(shadow::run(args)),
        Command::User(args) => runtime.block_on(user::run(args)),
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
        Command::Serve(args) => match runtime.block_on(serve::run(*args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                let error: &(dyn std::error::Error + 'static) = e.as_ref();
                eprintln!("authq serve: {}", authq::error::report(error));
                ExitCode::FAILURE
            }
        },
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
