//! The command line: every subcommand, flag and `AUTHQ_*` environment variable.
//!
//! Flags override environment variables, which override the defaults shown in `--help`.

use crate::bench::{BenchArgs, BenchEchoArgs};
use crate::broker_args::BrokerArgs;
use crate::serve::ServeArgs;
use crate::shadow::ShadowArgs;
use crate::user::UserArgs;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::time::Duration;

/// authq: authentication over RabbitMQ.
///
/// Services publish auth requests (register, login, check, …) to RabbitMQ; `authq serve` runs
/// the worker pool that answers them. `authq call` sends one request by hand.
#[derive(Debug, Parser)]
#[command(name = "authq", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr. Filter with AUTHQ_LOG (e.g. `info`, `authq_worker=debug`).
    #[arg(long, global = true, env = "AUTHQ_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the worker pool: consume auth requests and answer them until SIGINT or SIGTERM.
    Serve(Box<ServeArgs>),
    /// Publish one request and print the reply body (JSON) on stdout.
    ///
    /// Exit status: 0 for an ok reply, 1 for an error reply, 2 when no reply came in time or
    /// the broker could not be reached (the reason goes to stderr).
    Call(CallArgs),
    /// Measure the pool: drive it with many calls in flight and compare its throughput with
    /// the broker's and argon2's ceilings measured in the same run (see BENCHMARKS.md).
    Bench(Box<BenchArgs>),
    /// Print auth events as they happen, one JSON object per line (binds a temporary queue to
    /// the deployment's events exchange; secret-bearing events only with `--bind 'secret.#'`).
    Events(EventsArgs),
    /// Watch a running deployment: per tube its depth, consumers and rate, per operation its
    /// rate, errors and p50/p99, refreshed every interval, from workers' `--metrics-addr`
    /// endpoints. In a pipe, one line of `key=value` fields per interval.
    Top(TopArgs),
    /// Try a deployment on real traffic: copy a running deployment's read-only requests (a
    /// queue of its own bound to their exchange), send each to both deployments, and report
    /// the replies that differ, answering no one. Exit status 1 when some differed.
    Shadow(ShadowArgs),
    /// Administer users (list, show, create, suspend, unsuspend, delete, end sessions, import)
    /// as a caller the workers list in `--admin-caller`. Tables by default, `--json` for
    /// scripts; exit status 1 for an error reply, 2 when no reply came.
    User(UserArgs),
    /// The echo ceiling `authq bench` starts as a process of its own (not for direct use).
    #[command(hide = true)]
    BenchEcho(BenchEchoArgs),
}

/// `authq top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// A worker's metrics endpoint (`HOST:PORT` as given to `serve --metrics-addr`, or a URL).
    /// Repeat, or separate with commas, for several workers: their figures are added up.
    #[arg(
        long,
        env = "AUTHQ_TOP_METRICS",
        value_delimiter = ',',
        required = true,
        value_name = "HOST:PORT"
    )]
    pub metrics: Vec<String>,
    /// Time between two refreshes.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Exit after this many refreshes.
    #[arg(long)]
    pub count: Option<u64>,
}

/// `authq events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// A routing-key pattern to bind (repeatable), e.g. `auth.login.*` or `user.#` [default:
    /// `auth.#`, `user.#`, `password.#`, `session.#`, `mfa.#`: every event but the
    /// secret-bearing ones].
    #[arg(long, value_name = "PATTERN")]
    pub bind: Vec<String>,
    /// Exit after this many events.
    #[arg(long)]
    pub count: Option<u64>,
}

/// `authq call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// The operation (routing key), e.g. `login`. Unknown names are sent too (and answered
    /// `unknown_operation`).
    pub operation: String,
    /// The request body: JSON, sent as given. `-` reads it from stdin.
    #[arg(default_value = "{}")]
    pub json: String,
    /// How long to wait for the reply (also the request's expiration), e.g. `5s`, `500ms`.
    #[arg(long, env = "AUTHQ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Publish the request this many times at most, with the same `message_id`, when no reply
    /// comes (the timeout is shared among the attempts).
    #[arg(long, default_value_t = 1)]
    pub attempts: u32,
    /// The request's `message_id` (default: a fresh UUID). Sending a mutating request again
    /// with the same id and body gets its first outcome instead of doing it twice.
    #[arg(long)]
    pub message_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use authq_worker::config::Config;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_help() {
        let cli = Cli::command();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                assert!(
                    arg.get_help().is_some(),
                    "authq {} --{} has no help",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }

    #[test]
    fn serve_defaults_match_the_worker_defaults() {
        let cli = Cli::try_parse_from(["authq", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        let config = args.into_config();
        // Every field: a flag whose default drifted from the worker's would show here (and so
        // would a field `into_config` sets from something else than its flag).
        assert_eq!(config, Config::default());
        config.validate().unwrap();
    }

    #[test]
    fn caller_roles_come_from_their_flags() {
        let cli = Cli::try_parse_from([
            "authq",
            "serve",
            "--admin-caller",
            "ops",
            "--reset-caller",
            "web",
            "--reset-caller",
            "shop",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        let config = args.into_config();
        assert_eq!(config.admin_callers, ["ops"]);
        assert_eq!(config.reset_callers, ["web", "shop"]);
    }
}
