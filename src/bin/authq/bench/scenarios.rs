//! The scenarios: what each one runs, in which order, against which ceiling.

use super::argon2 as argon2_ceiling;
use super::driver::{Op, Outcome, Stop, drive, progress};
use super::echo::{Ceiling, Shape};
use super::raw::RawClient;
use super::report::{ScenarioReport, Stream};
use super::spawn::{Spawned, proc_stats};
use super::{BenchArgs, Scenario};
use anyhow::{Context as _, anyhow, bail};
use authq::{Client, ClientError};
use authq_protocol::{Names, Tube};
use authq_worker::config::TubeConfig;
use futures_util::FutureExt;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The `authq serve` flags naming a spawned pool's store: `--database` as given (with a key
/// file in `dir` for PostgreSQL, which needs one), or a SQLite file in `dir`.
fn store_flags(database: Option<&str>, dir: &std::path::Path) -> Vec<String> {
    let in_dir = |name: &str| dir.join(name).to_string_lossy().into_owned();
    match database {
        Some(db) if db.starts_with("postgres://") || db.starts_with("postgresql://") => vec![
            "--database".into(),
            db.to_owned(),
            "--key-file".into(),
            in_dir("authq.key"),
        ],
        Some(db) => vec!["--database".into(), db.to_owned()],
        None => vec!["--database".into(), in_dir("authq.db")],
    }
}

/// The password every bench user has.
const PASSWORD: &str = "correct horse battery staple";

/// Where a scenario runs: the pool (spawned or not) and a client.
struct Env<'a> {
    args: &'a BenchArgs,
    namespace: String,
    client: Client,
    worker: Option<Spawned>,
    /// The spawned pool's other processes (`--workers`).
    more_workers: Vec<Spawned>,
    /// The `authq serve` flags naming the spawned pool's store.
    database: Option<Vec<String>>,
    dir: Option<tempfile::TempDir>,
    run_id: String,
}

impl<'a> Env<'a> {
    async fn open(args: &'a BenchArgs) -> anyhow::Result<Self> {
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let mut more_workers = Vec::new();
        let (namespace, worker, database, dir) = if args.spawn {
            let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
            let namespace = format!("authq-bench-{run_id}");
            let database = store_flags(args.database.as_deref(), dir.path());
            let worker = Spawned::start(
                &args.broker.amqp_url,
                &namespace,
                &database,
                dir.path(),
                &args.serve_flags(),
                true,
            )
            .await?;
            for _ in 1..args.workers {
                more_workers.push(
                    Spawned::start(
                        &args.broker.amqp_url,
                        &namespace,
                        &database,
                        dir.path(),
                        &args.serve_flags(),
                        true,
                    )
                    .await?,
                );
            }
            if let Some(nice) = args.hash_nice {
                for w in std::iter::once(&worker).chain(&more_workers) {
                    w.renice_hashing_threads(nice)?;
                }
            }
            (namespace, Some(worker), Some(database), Some(dir))
        } else {
            (args.broker.namespace.clone(), None, None, None)
        };
        let client = args.client(&namespace, args.timeout).await?;
        Ok(Self {
            args,
            namespace,
            client,
            worker,
            more_workers,
            database,
            dir,
            run_id,
        })
    }

    fn stop(&self, default: u64) -> Stop {
        match self.args.duration {
            Some(d) => Stop::For(d),
            None => Stop::Count(self.args.requests.unwrap_or(default)),
        }
    }

    fn names(&self) -> anyhow::Result<Names> {
        Names::new(&self.namespace).map_err(|e| anyhow!("{e}"))
    }

    /// Registers, confirms and logs in `users` users; returns their emails and sessions.
    async fn users(&self) -> anyhow::Result<Vec<(String, String)>> {
        let n = self.args.users.max(1);
        let bar = progress("setting up users", Some(n as u64));
        let calls = (0..n).map(|i| {
            let (client, bar) = (self.client.clone(), bar.clone());
            let email = format!("bench-{}-{i}@example.com", self.run_id);
            async move {
                let reg = client.register(&email).await?;
                client
                    .confirm_registration(&email, reg.code.expose(), PASSWORD)
                    .await?;
                let login = client.login(&email, PASSWORD).await?;
                bar.inc(1);
                Ok::<_, ClientError>((email, login.session.expose().to_owned()))
            }
        });
        let users = futures_util::future::try_join_all(calls)
            .await
            .map_err(|e| anyhow!("setting up users: {}", e.report()))?;
        bar.finish_and_clear();
        Ok(users)
    }

    /// Starts the echo ceiling's consumer with the session tube's consumers and prefetch, and
    /// warms its queue up; returns it with the call that reaches it.
    async fn start_echo(&self, in_flight: usize) -> anyhow::Result<(Ceiling, Op)> {
        let session: TubeConfig = authq_worker::Config::default().tube(Tube::Session);
        let shape = Shape {
            consumers: session.consumers,
            prefetch: session.prefetch,
            classic: self.args.classic_echo,
            transient: false,
        };
        let echo = Ceiling::start(
            &self.args.broker.amqp_url,
            &self.names()?,
            shape,
            self.args.echo_in_process,
        )
        .await
        .context("starting the echo consumer")?;
        let key: Arc<str> = echo.routing_key().into();
        // A body the size of a `check` request.
        let body: Arc<[u8]> = format!(r#"{{"session":"{}"}}"#, "A".repeat(43))
            .into_bytes()
            .into();
        let (client, timeout) = (self.client.clone(), self.args.timeout);
        let op: Op = Arc::new(move |_| {
            let (client, key, body) = (client.clone(), Arc::clone(&key), Arc::clone(&body));
            async move { client.call_raw(&key, &body, timeout).await.map(|_| ()) }.boxed()
        });
        // Warm the new queue up (its first calls are slower), uncounted.
        let warm_up = Stop::Count(in_flight.max(32) as u64 * 4);
        drive("echo warm-up", in_flight, warm_up, false, Arc::clone(&op)).await;
        Ok((echo, op))
    }

    /// Starts the raw best-case echo ([`super::raw`]): its consumer (one, prefetch 64, on a
    /// classic transient queue) and a raw lapin client; warms it up. Returns the consumer, the
    /// client (to close) and the call.
    async fn start_raw_echo(
        &self,
        in_flight: usize,
    ) -> anyhow::Result<(Ceiling, Arc<RawClient>, Op)> {
        let shape = Shape {
            consumers: 1,
            prefetch: 64,
            classic: true,
            transient: true,
        };
        let names = self.names()?;
        let url = &self.args.broker.amqp_url;
        let echo = Ceiling::start(url, &names, shape, self.args.echo_in_process)
            .await
            .context("starting the raw echo consumer")?;
        let raw =
            Arc::new(RawClient::connect(url, names.request_exchange(), self.args.timeout).await?);
        let key: Arc<str> = echo.routing_key().into();
        let body: Arc<[u8]> = format!(r#"{{"session":"{}"}}"#, "A".repeat(43))
            .into_bytes()
            .into();
        let client = Arc::clone(&raw);
        let op: Op = Arc::new(move |_| {
            let (client, key, body) = (Arc::clone(&client), Arc::clone(&key), Arc::clone(&body));
            async move { client.call(&key, &body).await }.boxed()
        });
        let warm_up = Stop::Count(in_flight.max(32) as u64 * 4);
        drive("raw warm-up", in_flight, warm_up, false, Arc::clone(&op)).await;
        Ok((echo, raw, op))
    }

    /// Runs the echo ceiling alone.
    async fn echo(&self, stop: Stop) -> anyhow::Result<Outcome> {
        let (echo, op) = self.start_echo(self.args.in_flight).await?;
        let outcome = drive("echo ceiling", self.args.in_flight, stop, true, op).await;
        echo.stop().await;
        Ok(outcome)
    }

    /// Runs the echo ceiling and `op` in [`ROUNDS`] alternating blocks (echo, op, echo, op, …)
    /// that share `stop` between them, so that both sample the machine at the same moments: the
    /// echo ceiling itself drifts by ±15 % over a minute on a shared 2-core machine.
    /// `in_flight` calls are in flight on every side, and the raw best-case echo
    /// ([`super::raw`]) runs as a third block of each round.
    async fn against_echo(
        &self,
        label: &str,
        in_flight: usize,
        stop: Stop,
        op: Op,
    ) -> anyhow::Result<Against> {
        let (echo, echo_op) = self.start_echo(in_flight).await?;
        let (raw_echo, raw_client, raw_op) = self.start_raw_echo(in_flight).await?;
        let mut out = Against::default();
        for round in 0..ROUNDS {
            let block = stop.share(round, ROUNDS);
            let c = drive(
                "echo ceiling",
                in_flight,
                block.clone(),
                true,
                Arc::clone(&echo_op),
            )
            .await;
            out.echo.absorb(c);
            let r = drive(
                "raw echo",
                in_flight,
                block.clone(),
                true,
                Arc::clone(&raw_op),
            )
            .await;
            out.raw.absorb(r);
            let o = drive(label, in_flight, block, true, Arc::clone(&op)).await;
            out.load.absorb(o);
        }
        echo.stop().await;
        raw_client.close().await;
        raw_echo.stop().await;
        Ok(out)
    }

    async fn argon2(&self, runs: u64) -> anyhow::Result<argon2_ceiling::Ceiling> {
        argon2_ceiling::measure(self.args.hash_params(), self.args.hash_threads(), runs).await
    }

    /// argon2 runs for a ceiling: the count of the stream it bounds, or enough for the duration.
    fn argon2_runs(&self, count: u64) -> u64 {
        match self.args.duration {
            Some(d) => (d.as_secs() * 50 * self.args.hash_threads() as u64).max(20),
            None => count.max(10),
        }
    }

    async fn close(self, report: &mut ScenarioReport) -> anyhow::Result<()> {
        let _ = self.client.close().await;
        let names = self.names()?;
        if let Some(worker) = self.worker {
            report.worker = Some(worker.stop().await?);
            for w in self.more_workers {
                w.stop().await?;
            }
            super::spawn::delete_namespace(&self.args.broker.amqp_url, &names).await;
        }
        drop(self.dir);
        Ok(())
    }
}

fn check_op(client: &Client, sessions: Arc<[String]>) -> Op {
    let client = client.clone();
    Arc::new(move |i| {
        let (client, sessions) = (client.clone(), Arc::clone(&sessions));
        async move {
            let session = &sessions[(i as usize) % sessions.len()];
            client.check(session).await.map(|_| ())
        }
        .boxed()
    })
}

fn login_op(client: &Client, emails: Arc<[String]>) -> Op {
    let client = client.clone();
    Arc::new(move |i| {
        let (client, emails) = (client.clone(), Arc::clone(&emails));
        async move {
            let email = &emails[(i as usize) % emails.len()];
            client.login(email, PASSWORD).await.map(|_| ())
        }
        .boxed()
    })
}

/// The streams of a scenario measured against both echoes, and its ratios to the raw one.
fn report_against_raw(report: &mut ScenarioReport, name: &str, a: &Against) {
    let p99 = |o: &Outcome| o.percentile(0.99).as_secs_f64();
    report.streams.push(Stream::load("echo ceiling", &a.echo));
    report
        .streams
        .push(Stream::load("raw echo (best case)", &a.raw));
    report
        .streams
        .push(Stream::load(name, &a.load).against(a.echo.throughput(), "echo"));
    report.figure(
        &format!("{name}_over_raw_echo"),
        a.load.throughput() / a.raw.throughput().max(1e-9),
        "(throughput ÷ the raw best-case echo's: classic transient queue, no confirms, raw lapin)",
    );
    report.figure(
        &format!("{name}_p99_over_raw_echo_p99"),
        p99(&a.load) / p99(&a.raw).max(1e-9),
        "(p99 ÷ the raw best-case echo's p99)",
    );
}

fn ceiling_stream(c: &argon2_ceiling::Ceiling, threads: usize) -> Stream {
    Stream {
        name: format!("argon2 ceiling ×{threads}"),
        requests: c.runs,
        replies: c.runs,
        errors: Default::default(),
        throughput: c.rate(),
        latency: None,
        ratio: None,
    }
}

/// What [`Env::against_echo`] measured.
#[derive(Default)]
struct Against {
    /// authq's own echo (through the authq client, the tubes' queue type, confirms).
    echo: Outcome,
    /// The raw best-case echo.
    raw: Outcome,
    /// The scenario's calls.
    load: Outcome,
}

/// Alternating blocks of the echo ceiling and the scenario it bounds ([`Env::against_echo`]).
const ROUNDS: u64 = 4;

/// Runs one scenario.
pub async fn run(args: &BenchArgs, scenario: Scenario) -> anyhow::Result<ScenarioReport> {
    let mut report = ScenarioReport {
        name: scenario.name().to_owned(),
        ..ScenarioReport::default()
    };
    if scenario == Scenario::Backlog {
        backlog(args, &mut report).await?;
        return Ok(report);
    }
    let env = Env::open(args).await?;
    let inflight = args.in_flight;
    match scenario {
        Scenario::Ping => {
            let client = env.client.clone();
            let op: Op = Arc::new(move |_| {
                let client = client.clone();
                async move { client.ping().await }.boxed()
            });
            let a = env
                .against_echo("ping", inflight, env.stop(20_000), op)
                .await?;
            report_against_raw(&mut report, "ping", &a);
        }
        Scenario::Check => {
            let users = env.users().await?;
            let sessions: Arc<[String]> = users.into_iter().map(|(_, s)| s).collect();
            let op = check_op(&env.client, sessions);
            let a = env
                .against_echo("check", inflight, env.stop(20_000), op)
                .await?;
            report_against_raw(&mut report, "check", &a);
        }
        Scenario::Login => {
            let users = env.users().await?;
            let emails: Arc<[String]> = users.into_iter().map(|(e, _)| e).collect();
            let count = args.requests.unwrap_or(300);
            let ceiling = env.argon2(env.argon2_runs(count)).await?;
            let login = drive(
                "login",
                inflight,
                env.stop(300),
                true,
                login_op(&env.client, emails),
            )
            .await;
            report
                .streams
                .push(ceiling_stream(&ceiling, args.hash_threads()));
            report
                .streams
                .push(Stream::load("login", &login).against(ceiling.rate(), "argon2"));
        }
        Scenario::Mixed => {
            let users = env.users().await?;
            let emails: Arc<[String]> = users.iter().map(|(e, _)| e.clone()).collect();
            let sessions: Arc<[String]> = users.into_iter().map(|(_, s)| s).collect();
            let count = args.requests.unwrap_or(5_000);
            let echo = env.echo(env.stop(5_000)).await?;
            let argon2 = env.argon2(env.argon2_runs(count / 20)).await?;
            let (check, login) = (
                check_op(&env.client, sessions),
                login_op(&env.client, emails),
            );
            let (client, run_id) = (env.client.clone(), env.run_id.clone());
            let op: Op = Arc::new(move |i| match i % 100 {
                0..95 => check(i),
                95..99 => login(i),
                _ => {
                    let client = client.clone();
                    let email = format!("bench-{run_id}-new-{i}@example.com");
                    async move {
                        let reg = client.register(&email).await?;
                        client
                            .confirm_registration(&email, reg.code.expose(), PASSWORD)
                            .await
                            .map(|_| ())
                    }
                    .boxed()
                }
            });
            let mixed = drive("mixed", inflight, env.stop(5_000), true, op).await;
            // Each resource alone bounds the mix: the broker every call, argon2 5 % of them.
            let ceiling = (echo.throughput() / 1.01).min(argon2.rate() / 0.05);
            report.streams.push(Stream::load("echo ceiling", &echo));
            report
                .streams
                .push(ceiling_stream(&argon2, args.hash_threads()));
            report
                .streams
                .push(Stream::load("mixed", &mixed).against(ceiling, "mix"));
            report.figure(
                "mixed_ceiling_per_s",
                ceiling,
                "(min of echo / 1.01 and argon2 / 0.05: each resource alone bounds the mix)",
            );
        }
        Scenario::Flood => {
            let users = env.users().await?;
            let emails: Arc<[String]> = users.iter().map(|(e, _)| e.clone()).collect();
            let sessions: Arc<[String]> = users.into_iter().map(|(_, s)| s).collect();
            let count = args.requests.unwrap_or(10_000);
            let echo = env.echo(env.stop(10_000)).await?;
            let argon2 = env.argon2(env.argon2_runs((count / 100).max(50))).await?;
            let check = check_op(&env.client, sessions);
            let alone = drive(
                "check alone",
                inflight,
                env.stop(10_000),
                true,
                Arc::clone(&check),
            )
            .await;
            let flag = Arc::new(AtomicBool::new(false));
            let flood = tokio::spawn(drive(
                "login flood",
                args.flood_in_flight,
                Stop::Flag(Arc::clone(&flag)),
                false,
                login_op(&env.client, emails),
            ));
            // Let the flood fill the password tube before measuring.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let during = drive(
                "check under flood",
                inflight,
                env.stop(10_000),
                true,
                Arc::clone(&check),
            )
            .await;
            // The same flood under the raw echo: how much of the tail the machine and the
            // broker add by themselves when argon2 runs beside them (no authq code on its path).
            // A trickle of checks (ten a second) keeps the pool's argon2 in the class it had
            // while checks flowed (`--hash-priority auto` follows the session traffic), so the
            // echo meets the same flood as the checks did.
            let trickle_done = Arc::new(AtomicBool::new(false));
            let trickle = {
                let (done, check) = (Arc::clone(&trickle_done), Arc::clone(&check));
                tokio::spawn(async move {
                    let mut i = 0;
                    while !done.load(Ordering::Relaxed) {
                        let _ = check(i).await;
                        i += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                })
            };
            let echo_during = env.echo(env.stop(10_000)).await?;
            trickle_done.store(true, Ordering::Relaxed);
            let _ = trickle.await;
            flag.store(true, Ordering::Relaxed);
            let flood = flood.await.map_err(|e| anyhow!("login flood: {e}"))?;
            let ceiling = echo.throughput();
            let p99 = |o: &Outcome| o.percentile(0.99).as_secs_f64();
            report.streams.push(Stream::load("echo ceiling", &echo));
            report
                .streams
                .push(Stream::load("echo (flood)", &echo_during));
            report
                .streams
                .push(ceiling_stream(&argon2, args.hash_threads()));
            report
                .streams
                .push(Stream::load("check alone", &alone).against(ceiling, "echo"));
            report
                .streams
                .push(Stream::load("check (flood)", &during).against(ceiling, "echo"));
            report
                .streams
                .push(Stream::load("login (flood)", &flood).against(argon2.rate(), "argon2"));
            report.figure(
                "check_p99_flood_over_alone",
                p99(&during) / p99(&alone).max(1e-9),
                "(target ≤ 2)",
            );
            report.figure(
                "echo_p99_flood_over_alone",
                p99(&echo_during) / p99(&echo).max(1e-9),
                "(the raw echo's own ratio under the same flood: the floor for the one above)",
            );
        }
        Scenario::Latency => {
            // What one caller waits: a single call in flight, alternating with the echo. Streams
            // are named `{op} (1)` and `echo ({op}, 1)`: one call in flight.
            let users = env.users().await?;
            let sessions: Arc<[String]> = users.into_iter().map(|(_, s)| s).collect();
            let client = env.client.clone();
            let ping: Op = Arc::new(move |_| {
                let client = client.clone();
                async move { client.ping().await }.boxed()
            });
            let check = check_op(&env.client, sessions);
            for (name, op) in [("ping", ping), ("check", check)] {
                let a = env.against_echo(name, 1, env.stop(2_000), op).await?;
                let p = |o: &Outcome, q| o.percentile(q).as_secs_f64();
                report
                    .streams
                    .push(Stream::load(&format!("echo ({name}, 1)"), &a.echo));
                report
                    .streams
                    .push(Stream::load(&format!("raw echo ({name}, 1)"), &a.raw));
                report.streams.push(
                    Stream::load(&format!("{name} (1)"), &a.load)
                        .against(a.echo.throughput(), "echo"),
                );
                for (q, label) in [(0.5, "p50"), (0.99, "p99")] {
                    report.figure(
                        &format!("{name}_{label}_over_echo_{label}"),
                        p(&a.load, q) / p(&a.echo, q).max(1e-9),
                        format!("(one call in flight; {label} of {name} ÷ {label} of the echo)"),
                    );
                    report.figure(
                        &format!("{name}_{label}_over_raw_echo_{label}"),
                        p(&a.load, q) / p(&a.raw, q).max(1e-9),
                        format!(
                            "(one call in flight; {label} of {name} ÷ {label} of the raw best-case echo)"
                        ),
                    );
                }
            }
        }
        Scenario::Backlog | Scenario::All => unreachable!("handled above"),
    }
    env.close(&mut report).await?;
    Ok(report)
}

/// `backlog`: steady-state checks, then the pool stopped, `--backlog` checks published, the
/// pool started again and the drain measured (and the worker's memory sampled throughout).
async fn backlog(args: &BenchArgs, report: &mut ScenarioReport) -> anyhow::Result<()> {
    if !args.spawn {
        bail!("the backlog scenario stops and starts the pool: it needs --spawn");
    }
    let env = Env::open(args).await?;
    let url = &args.broker.amqp_url;
    if !env.more_workers.is_empty() {
        bail!("backlog restarts one worker: run it with --workers 1");
    }
    let first = env.worker.as_ref().context("a spawned worker")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = first.stats();
    let users = env.users().await?;
    let sessions: Arc<[String]> = users.into_iter().map(|(_, s)| s).collect();
    let steady = drive(
        "steady check",
        args.in_flight,
        env.stop(10_000),
        true,
        check_op(&env.client, Arc::clone(&sessions)),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let warm = first.stats();

    // Stop the pool; publish the backlog with a client whose calls wait long enough.
    let Env {
        client,
        worker,
        database,
        dir,
        namespace,
        ..
    } = env;
    let _ = client.close().await;
    let first_report = worker.context("a spawned worker")?.stop().await?;
    let dir = dir.context("a temporary directory")?;
    let database = database.context("a database")?;
    let patient = args.client(&namespace, Duration::from_secs(1800)).await?;
    let total = args.backlog;
    let done = Arc::new(AtomicU64::new(0));
    let mut calls = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for i in 0..total {
        let (client, sessions, done) = (patient.clone(), Arc::clone(&sessions), Arc::clone(&done));
        calls.push(tokio::spawn(async move {
            let session = &sessions[(i as usize) % sessions.len()];
            let outcome = client.check(session).await.map(|_| ());
            done.fetch_add(1, Ordering::Relaxed);
            (outcome, Instant::now())
        }));
    }
    let names = Names::new(&namespace).map_err(|e| anyhow!("{e}"))?;
    let depth = queue_depth_waiter(url, names.tube(Tube::Session), total).await?;

    // Start the pool again and watch it drain.
    let started = Instant::now();
    let second = Spawned::start(
        url,
        &namespace,
        &database,
        dir.path(),
        &args.serve_flags(),
        false,
    )
    .await?;
    let pid = second.pid();
    let sampling = Arc::new(AtomicBool::new(false));
    let sampler = {
        let sampling = Arc::clone(&sampling);
        tokio::spawn(async move {
            let mut peak = 0;
            while !sampling.load(Ordering::Relaxed) {
                if let Some(s) = proc_stats(pid) {
                    peak = peak.max(s.rss_kib);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };
    let bar = progress("backlog drain", Some(total));
    let ticker = {
        let (bar, done) = (bar.clone(), Arc::clone(&done));
        tokio::spawn(async move {
            loop {
                bar.set_position(done.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut drained = Outcome::default();
    let (mut first_reply, mut last_reply) = (None::<Instant>, None::<Instant>);
    let mut outcomes = Vec::with_capacity(calls.len());
    for call in calls {
        let (outcome, at) = call.await.map_err(|e| anyhow!("a backlog call: {e}"))?;
        first_reply = Some(first_reply.map_or(at, |f: Instant| f.min(at)));
        last_reply = Some(last_reply.map_or(at, |l: Instant| l.max(at)));
        outcomes.push(outcome);
    }
    ticker.abort();
    bar.finish_and_clear();
    sampling.store(true, Ordering::Relaxed);
    let peak_rss = sampler.await.unwrap_or(0);
    let drain_time = match (first_reply, last_reply) {
        (Some(f), Some(l)) => l.duration_since(f),
        _ => Duration::ZERO,
    };
    drained.tally(outcomes);
    drained.elapsed = drain_time;
    let _ = patient.close().await;
    report.worker = Some(second.stop().await?);
    super::spawn::delete_namespace(url, &names).await;
    let _ = first_report;

    let steady_rate = steady.throughput();
    let mut drain_stream = Stream::load("backlog drain", &drained);
    drain_stream.latency = None; // waiting in the broker by design: not a latency
    report.streams.push(Stream::load("steady check", &steady));
    report
        .streams
        .push(drain_stream.against(steady_rate, "steady check"));
    report.figure(
        "backlog_published",
        depth as f64,
        "(messages in the session tube before the pool restarted)",
    );
    report.figure(
        "drain_start_s",
        first_reply.map_or(0.0, |f| f.duration_since(started).as_secs_f64()),
        "(from starting the pool to its first reply: process start-up)",
    );
    let kib = |k: u64| k as f64 / 1024.0;
    report.figure(
        "idle_rss_mib",
        kib(idle.rss_kib),
        "(fresh worker, before any load)",
    );
    report.figure(
        "warm_rss_mib",
        kib(warm.rss_kib),
        "(same worker after the steady-state checks)",
    );
    report.figure(
        "drain_peak_rss_mib",
        kib(peak_rss),
        "(restarted worker, sampled every 20 ms during the drain)",
    );
    report.figure(
        "drain_peak_rss_over_idle",
        peak_rss as f64 / (idle.rss_kib.max(1)) as f64,
        "(target ≤ 1.2)",
    );
    drop(dir);
    Ok(())
}

/// Waits until `queue` holds `expected` messages (the backlog is published); returns the depth.
async fn queue_depth_waiter(url: &str, queue: &str, expected: u64) -> anyhow::Result<u64> {
    let connection = Connection::connect(
        url,
        ConnectionProperties::default().with_connection_name("authq-bench-depth".into()),
    )
    .await?;
    let channel = connection.create_channel().await?;
    let bar = progress("publishing backlog", Some(expected));
    let started = Instant::now();
    let depth = loop {
        let q = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let depth = u64::from(q.message_count());
        bar.set_position(depth);
        if depth >= expected {
            break depth;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("only {depth} of {expected} backlog requests reached {queue} in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    bar.finish_and_clear();
    let _ = connection.close(200, "backlog published".into()).await;
    Ok(depth)
}
