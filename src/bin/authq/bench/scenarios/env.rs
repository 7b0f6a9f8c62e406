//! Where a scenario runs ([`Env`]: the pool, spawned or not, its client and users, the echo
//! and argon2 ceilings beside it), and the operations and report rows the scenarios share.

use crate::bench::BenchArgs;
use crate::bench::argon2 as argon2_ceiling;
use crate::bench::driver::{Op, Outcome, Stop, drive, progress};
use crate::bench::echo::{Ceiling, Shape};
use crate::bench::raw::RawClient;
use crate::bench::report::{ScenarioReport, Stream};
use crate::bench::spawn::Spawned;
use anyhow::{Context as _, anyhow};
use authq::{Client, ClientError};
use authq_protocol::{Names, Tube};
use authq_worker::config::{QueueType, TubeConfig};
use futures_util::FutureExt;
use std::sync::Arc;

/// The `authq serve` flags naming a spawned pool's store: `--database` as given (with a key
/// file in `dir` for PostgreSQL, which needs one), or a SQLite file in `dir`.
pub(super) fn store_flags(database: Option<&str>, dir: &std::path::Path) -> Vec<String> {
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
pub(super) const PASSWORD: &str = "correct horse battery staple";

/// Where a scenario runs: the pool (spawned or not) and a client.
pub(super) struct Env<'a> {
    pub(super) args: &'a BenchArgs,
    pub(super) namespace: String,
    pub(super) client: Client,
    pub(super) worker: Option<Spawned>,
    /// The spawned pool's other processes (`--workers`).
    pub(super) more_workers: Vec<Spawned>,
    /// The `authq serve` flags naming the spawned pool's store.
    pub(super) database: Option<Vec<String>>,
    pub(super) dir: Option<tempfile::TempDir>,
    pub(super) run_id: String,
}

impl<'a> Env<'a> {
    pub(super) async fn open(args: &'a BenchArgs) -> anyhow::Result<Self> {
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

    pub(super) fn stop(&self, default: u64) -> Stop {
        match self.args.duration {
            Some(d) => Stop::For(d),
            None => Stop::Count(self.args.requests.unwrap_or(default)),
        }
    }

    pub(super) fn names(&self) -> anyhow::Result<Names> {
        Names::new(&self.namespace).map_err(|e| anyhow!("{e}"))
    }

    /// Registers, confirms and logs in `users` users; returns their emails and sessions.
    pub(super) async fn users(&self) -> anyhow::Result<Vec<(String, String)>> {
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
    pub(super) async fn start_echo(&self, in_flight: usize) -> anyhow::Result<(Ceiling, Op)> {
        let session: TubeConfig = authq_worker::Config::default().tube(Tube::Session);
        let shape = Shape {
            consumers: session.consumers,
            prefetch: session.prefetch,
            queue: self.args.echo_type,
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

    /// Starts the raw best-case echo ([`crate::bench::raw`]): its consumer (one, prefetch 64, on a
    /// classic transient queue) and a raw lapin client; warms it up. Returns the consumer, the
    /// client (to close) and the call.
    pub(super) async fn start_raw_echo(
        &self,
        in_flight: usize,
    ) -> anyhow::Result<(Ceiling, Arc<RawClient>, Op)> {
        let shape = Shape {
            consumers: 1,
            prefetch: 64,
            queue: QueueType::Transient,
        };
        let names = self.names()?;
        let url = &self.args.broker.amqp_url;
        let echo = Ceiling::start(url, &names, shape, self.args.echo_in_process)
            .await
            .context("starting the raw echo consumer")?;
        let raw = Arc::new(
            RawClient::connect(
                url,
                names.request_exchange(),
                self.args.timeout,
                false,
                false,
            )
            .await?,
        );
        let op = warmed_raw_call(&raw, echo.routing_key(), in_flight).await;
        Ok((echo, raw, op))
    }

    /// A raw lapin client with the authq client's broker features (confirms, `mandatory`)
    /// calling authq's own echo consumer at `key` ([`crate::bench::raw`]); warmed up. Returns
    /// the client (to close) and the call.
    async fn start_raw_client(
        &self,
        key: &str,
        in_flight: usize,
    ) -> anyhow::Result<(Arc<RawClient>, Op)> {
        let names = self.names()?;
        let raw = Arc::new(
            RawClient::connect(
                &self.args.broker.amqp_url,
                names.request_exchange(),
                self.args.timeout,
                !self.args.raw_client_without_confirms,
                self.args.raw_client_with_authq_properties,
            )
            .await?,
        );
        let op = warmed_raw_call(&raw, key, in_flight).await;
        Ok((raw, op))
    }

    /// Runs the echo ceiling alone.
    pub(super) async fn echo(&self, stop: Stop) -> anyhow::Result<Outcome> {
        let (echo, op) = self.start_echo(self.args.in_flight).await?;
        let outcome = drive("echo ceiling", self.args.in_flight, stop, true, op).await;
        echo.stop().await;
        Ok(outcome)
    }

    /// Runs the echo ceiling and `op` in [`ROUNDS`] alternating blocks (echo, op, echo, op, …)
    /// that share `stop` between them, so that both sample the machine at the same moments: the
    /// echo ceiling itself drifts by ±15 % over a minute on a shared 2-core machine.
    /// `in_flight` calls are in flight on every side, and the raw best-case echo
    /// ([`crate::bench::raw`]) and a raw lapin client with confirms against authq's echo run as
    /// a third and fourth block of each round.
    pub(super) async fn against_echo(
        &self,
        label: &str,
        in_flight: usize,
        stop: Stop,
        op: Op,
    ) -> anyhow::Result<Against> {
        let (echo, echo_op) = self.start_echo(in_flight).await?;
        let (raw_echo, raw_client, raw_op) = self.start_raw_echo(in_flight).await?;
        let (lapin_client, lapin_op) = self.start_raw_client(echo.routing_key(), in_flight).await?;
        let mut out = Against {
            raw_client_name: match (
                self.args.raw_client_without_confirms,
                self.args.raw_client_with_authq_properties,
            ) {
                (false, false) => "raw client (confirms)",
                (true, false) => "raw client (no confirms)",
                (false, true) => "raw client (authq properties)",
                (true, true) => "raw client (no confirms, authq properties)",
            },
            ..Against::default()
        };
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
            let l = drive(
                "raw client",
                in_flight,
                block.clone(),
                true,
                Arc::clone(&lapin_op),
            )
            .await;
            out.raw_client.absorb(l);
            let o = drive(label, in_flight, block, true, Arc::clone(&op)).await;
            out.load.absorb(o);
        }
        echo.stop().await;
        raw_client.close().await;
        lapin_client.close().await;
        raw_echo.stop().await;
        Ok(out)
    }

    pub(super) async fn argon2(&self, runs: u64) -> anyhow::Result<argon2_ceiling::Ceiling> {
        argon2_ceiling::measure(self.args.hash_params(), self.args.hash_threads(), runs).await
    }

    /// argon2 runs for a ceiling: the count of the stream it bounds, or enough for the duration.
    pub(super) fn argon2_runs(&self, count: u64) -> u64 {
        match self.args.duration {
            Some(d) => (d.as_secs() * 50 * self.args.hash_threads() as u64).max(20),
            None => count.max(10),
        }
    }

    pub(super) async fn close(self, report: &mut ScenarioReport) -> anyhow::Result<()> {
        let _ = self.client.close().await;
        let names = self.names()?;
        if let Some(worker) = self.worker {
            report.worker = Some(worker.stop().await?);
            for w in self.more_workers {
                w.stop().await?;
            }
            crate::bench::spawn::delete_namespace(&self.args.broker.amqp_url, &names).await;
        }
        drop(self.dir);
        Ok(())
    }
}

pub(super) fn check_op(client: &Client, sessions: Arc<[String]>) -> Op {
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

pub(super) fn login_op(client: &Client, emails: Arc<[String]>) -> Op {
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
pub(super) fn report_against_raw(report: &mut ScenarioReport, name: &str, a: &Against) {
    let p99 = |o: &Outcome| o.percentile(0.99).as_secs_f64();
    report.streams.push(Stream::load("echo ceiling", &a.echo));
    report
        .streams
        .push(Stream::load("raw echo (best case)", &a.raw));
    report
        .streams
        .push(Stream::load(a.raw_client_name, &a.raw_client));
    report
        .streams
        .push(Stream::load(name, &a.load).against(a.echo.throughput(), "echo"));
    report.figure(
        "client_over_raw_client",
        a.echo.throughput() / a.raw_client.throughput().max(1e-9),
        "(the echo through the authq client ÷ through a raw lapin client with confirms and \
         mandatory, same consumer: the client library's cost; target ≥ 0.95)",
    );
    report.figure(
        "client_cpu_over_raw_client_cpu",
        cpu_per_call(&a.echo) / cpu_per_call(&a.raw_client).max(1e-12),
        "(the bench process's CPU per echo call through the authq client ÷ through the raw \
         lapin client: the client library's own work, free of the broker's drift)",
    );
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

pub(super) fn ceiling_stream(c: &argon2_ceiling::Ceiling, threads: usize) -> Stream {
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
pub(super) struct Against {
    /// authq's own echo (through the authq client, the tubes' queue type, confirms).
    pub(super) echo: Outcome,
    /// The raw best-case echo.
    pub(super) raw: Outcome,
    /// A raw lapin client with the authq client's broker features, against authq's echo.
    pub(super) raw_client: Outcome,
    /// That client's stream: whether it waited for confirms (`--raw-client-without-confirms`
    /// not given) and sent the authq client's properties (`--raw-client-with-authq-properties`).
    pub(super) raw_client_name: &'static str,
    /// The scenario's calls.
    pub(super) load: Outcome,
}

/// Alternating blocks of the echo ceilings and the scenario they bound ([`Env::against_echo`]).
pub(super) const ROUNDS: u64 = 4;

/// A call of `raw` to the echo at `key` with a body the size of a `check` request, after an
/// uncounted warm-up (a new queue's first calls are slower).
async fn warmed_raw_call(raw: &Arc<RawClient>, key: &str, in_flight: usize) -> Op {
    let key: Arc<str> = key.into();
    let body: Arc<[u8]> = format!(r#"{{"session":"{}"}}"#, "A".repeat(43))
        .into_bytes()
        .into();
    let client = Arc::clone(raw);
    let op: Op = Arc::new(move |_| {
        let (client, key, body) = (Arc::clone(&client), Arc::clone(&key), Arc::clone(&body));
        async move { client.call(&key, &body).await }.boxed()
    });
    let warm_up = Stop::Count(in_flight.max(32) as u64 * 4);
    drive("raw warm-up", in_flight, warm_up, false, Arc::clone(&op)).await;
    op
}

/// The bench process's CPU seconds per call of a stream.
pub(super) fn cpu_per_call(o: &Outcome) -> f64 {
    o.bench_cpu.as_secs_f64() / o.requests.max(1) as f64
}
