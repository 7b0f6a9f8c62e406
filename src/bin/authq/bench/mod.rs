//! `authq bench`: drives a pool through the client library and compares it with ceilings
//! measured in the same run (a raw lapin echo consumer for the broker, in-process argon2id for
//! the password tube). `BENCHMARKS.md` records the figures and how they were made.
//!
//! - [`driver`]: N calls in flight until a count, a duration or a flag; latencies, outcomes.
//! - [`echo`]: the broker ceiling; [`raw`]: the raw best-case echo. [`argon2`]: the argon2
//!   ceiling.
//! - [`spawn`]: `--spawn`, the worker as a child process (CPU, memory, per-stage timings).
//! - [`scenarios`]: `ping`, `check`, `login`, `mixed`, `flood`, `latency`, `backlog`, `verify`,
//!   `client-secret`.
//! - [`report`]: the table and the JSON.

mod argon2;
mod driver;
mod echo;
mod raw;
mod report;
mod scenarios;
mod spawn;

use crate::broker_args::BrokerArgs;
use anyhow::Context as _;
use authq::{Client, ClientOptions};
use authq_protocol::Tube;
use authq_worker::config::{HashParams, QueuePolicy, QueueType};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// `authq bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// What to measure (`all` runs every scenario in turn).
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Start the pool as a child process (`authq serve`, a namespace of its own, a temporary
    /// SQLite file) instead of driving the running one at `--namespace`; adds its CPU time,
    /// peak memory and per-stage timings to the report. `backlog` needs it.
    #[arg(long)]
    pub spawn: bool,
    /// With `--spawn`: the store of the spawned pool, as `authq serve --database` takes it
    /// (`postgres://…` to measure PostgreSQL; a key file is made in the run's temporary
    /// directory) [default: a temporary SQLite file].
    #[arg(long, requires = "spawn")]
    pub database: Option<String>,
    /// With `--spawn`: how many `authq serve` processes to start on the one namespace and
    /// store (they share the tubes, as workers on several hosts would). CPU time, memory and
    /// stage timings are the first one's.
    #[arg(long, default_value_t = 1, requires = "spawn", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 128)]
    pub in_flight: usize,
    /// Calls per measured stream [default: per scenario: ping, check 20000; login 300; mixed
    /// 5000; flood 10000 checks per phase; latency 2000 per stream; backlog 10000 steady-state
    /// checks].
    #[arg(long, conflicts_with = "duration")]
    pub requests: Option<u64>,
    /// Measure each stream for this long instead of a count (e.g. `20s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// `backlog`: requests published while the pool is stopped.
    #[arg(long, default_value_t = 100_000)]
    pub backlog: u64,
    /// `flood`: login calls in flight during the flood (they keep the password tube full).
    #[arg(long, default_value_t = 64)]
    pub flood_in_flight: usize,
    /// Users registered for the run (sessions for `check`, passwords for `login`).
    #[arg(long, default_value_t = 16)]
    pub users: usize,
    /// How long a call waits for its reply.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Write the figures as JSON to this file too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// argon2 threads of the pool: passed to a spawned `authq serve`, and the thread count of
    /// the argon2 ceiling [default: the pool's default, cores − 1, at least 1].
    #[arg(long)]
    pub hash_threads: Option<usize>,
    /// Prefetch of the password tube, passed to a spawned `authq serve` [default: its default].
    #[arg(long)]
    pub password_prefetch: Option<u16>,
    /// argon2id memory in KiB: the pool's (passed to a spawned `authq serve`) and the ceiling's.
    #[arg(long, default_value_t = HashParams::default().memory_kib)]
    pub argon2_memory_kib: u32,
    /// argon2id passes: the pool's and the ceiling's.
    #[arg(long, default_value_t = HashParams::default().iterations)]
    pub argon2_iterations: u32,
    /// argon2id lanes: the pool's and the ceiling's.
    #[arg(long, default_value_t = HashParams::default().parallelism)]
    pub argon2_parallelism: u32,
    /// With `--spawn`: run the worker's argon2 threads at this OS niceness (`renice` on their
    /// thread ids after start-up), to measure whether a login flood then disturbs checks less.
    #[arg(long, requires = "spawn", allow_negative_numbers = true)]
    pub hash_nice: Option<i32>,
    /// The echo ceiling's queue type: match the pool's session tube (`quorum` for a pool
    /// started with `--tube-type session=quorum`).
    #[arg(long, default_value = QueuePolicy::default_type(Tube::Session).name(), value_parser = parse_queue_type)]
    pub echo_type: QueueType,
    /// The raw client (against authq's echo) without publisher confirms: what confirms cost
    /// (its stream is then `raw client (no confirms)`).
    #[arg(long)]
    pub raw_client_without_confirms: bool,
    /// The raw client (against authq's echo) sends every property the authq client sends
    /// (`message_id`, `expiration`, `delivery_mode`, `content_type`, `user_id`, the deadline and
    /// protocol headers): the echo through the authq client ÷ through it is then the library's
    /// cost alone, the protocol's properties on both sides (its stream is then `raw client
    /// (authq properties)`).
    #[arg(long)]
    pub raw_client_with_authq_properties: bool,
    /// Run the echo ceiling inside the bench process instead of as a process of its own (the
    /// pool is one; BENCHMARKS.md, "The bench's own method").
    #[arg(long)]
    pub echo_in_process: bool,
    /// Any other `authq serve` flag for a spawned pool, e.g. `--serve-arg=--session-prefetch=32`.
    /// Repeatable.
    #[arg(long = "serve-arg", value_name = "FLAG", allow_hyphen_values = true)]
    pub serve_args: Vec<String>,
}

/// `authq bench-echo` (hidden): the bench's echo consumer, until its stdin closes.
#[derive(Debug, Args)]
pub struct BenchEchoArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// The routing key its queue is bound with on the deployment's request exchange.
    #[arg(long)]
    pub routing_key: String,
    /// Consumers, each on its own channel.
    #[arg(long)]
    pub consumers: u16,
    /// Prefetch per consumer.
    #[arg(long)]
    pub prefetch: u16,
    /// The queue's type: `quorum`, `classic` or `transient`.
    #[arg(long, value_parser = parse_queue_type)]
    pub queue_type: QueueType,
}

fn parse_queue_type(s: &str) -> Result<QueueType, String> {
    QueueType::parse(s)
        .ok_or_else(|| format!("unknown queue type {s:?} (quorum, classic or transient)"))
}

/// The scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// authq's own no-op against the raw echo: the cost of authq's path.
    Ping,
    /// `check` with valid sessions, against the echo ceiling.
    Check,
    /// `login` with correct passwords, against in-process argon2id on the same threads.
    Login,
    /// 95 % check, 4 % login, 1 % register + confirm.
    Mixed,
    /// `check` latency alone, then under a login flood that keeps the password tube full.
    Flood,
    /// One call in flight: p50 and p99 of `ping` and `check` against the echo's, alternating.
    Latency,
    /// 100,000 requests published with the pool stopped, then the drain (needs `--spawn`).
    Backlog,
    /// `check` through the broker beside local access token verification (a spawned pool gets
    /// `--access-tokens`; a running one needs it). Not part of `all`.
    Verify,
    /// argon2id against HMAC-SHA256 for service client secrets, one thread each, in-process.
    /// Not part of `all`.
    ClientSecret,
    /// Every scenario in turn.
    All,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Check => "check",
            Self::Login => "login",
            Self::Mixed => "mixed",
            Self::Flood => "flood",
            Self::Latency => "latency",
            Self::Backlog => "backlog",
            Self::Verify => "verify",
            Self::ClientSecret => "client-secret",
            Self::All => "all",
        }
    }
}

impl BenchArgs {
    fn hash_params(&self) -> HashParams {
        HashParams {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
        }
    }

    fn hash_threads(&self) -> usize {
        self.hash_threads
            .unwrap_or_else(|| authq_worker::config::HashConfig::default().threads)
    }

    /// The flags a spawned `authq serve` gets from the bench's own.
    fn serve_flags(&self) -> Vec<String> {
        let mut flags = vec![
            format!("--argon2-memory-kib={}", self.argon2_memory_kib),
            format!("--argon2-iterations={}", self.argon2_iterations),
            format!("--argon2-parallelism={}", self.argon2_parallelism),
        ];
        if let Some(t) = self.hash_threads {
            flags.push(format!("--hash-threads={t}"));
        }
        if let Some(p) = self.password_prefetch {
            flags.push(format!("--password-prefetch={p}"));
        }
        if self.scenario == Scenario::Verify {
            flags.push("--access-tokens".into());
        }
        flags.extend(self.serve_args.iter().cloned());
        flags
    }

    async fn client(&self, namespace: &str, timeout: Duration) -> anyhow::Result<Client> {
        let options = ClientOptions::default()
            .namespace(namespace.to_owned())
            .timeout(timeout)
            .connection_name("authq-bench");
        Client::connect_with(&self.broker.amqp_url, options)
            .await
            .map_err(|e| anyhow::anyhow!(e.report()))
            .with_context(|| format!("cannot reach the authq deployment {namespace:?}"))
    }
}

/// Runs `authq bench-echo`: the echo ceiling as a process of its own.
pub async fn echo_serve(args: BenchEchoArgs) -> anyhow::Result<()> {
    let names =
        authq_protocol::Names::new(&args.broker.namespace).map_err(|e| anyhow::anyhow!("{e}"))?;
    let shape = echo::Shape {
        consumers: args.consumers,
        prefetch: args.prefetch,
        queue: args.queue_type,
    };
    echo::serve(&args.broker.amqp_url, &names, &args.routing_key, shape).await
}

/// Runs `authq bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let scenarios = match args.scenario {
        Scenario::All => vec![
            Scenario::Ping,
            Scenario::Check,
            Scenario::Login,
            Scenario::Mixed,
            Scenario::Flood,
            Scenario::Latency,
            Scenario::Backlog,
        ],
        s => vec![s],
    };
    if scenarios.contains(&Scenario::Backlog) && !args.spawn {
        anyhow::bail!("the backlog scenario stops and starts the pool: it needs --spawn");
    }
    let machine_before = report::machine();
    println!(
        "authq bench: {} calls in flight (latency: 1), {} cores, load average {}",
        args.in_flight,
        machine_before["cores"],
        machine_before["loadavg"].as_str().unwrap_or("?")
    );
    let mut reports = Vec::new();
    for scenario in scenarios {
        let report = scenarios::run(&args, scenario)
            .await
            .with_context(|| format!("scenario {}", scenario.name()))?;
        print!("{}", report.render());
        println!();
        reports.push(report);
    }
    let machine_after = report::machine();
    println!(
        "load average at the end: {}",
        machine_after["loadavg"].as_str().unwrap_or("?")
    );
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "in_flight": args.in_flight,
            "machine": machine_before,
            "loadavg_after": machine_after["loadavg"],
            "scenarios": reports.iter().map(report::ScenarioReport::to_json).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
