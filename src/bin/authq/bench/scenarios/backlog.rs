//! `backlog`: the pool stopped while requests pile up in its tube, then the drain.

use super::env::{Env, check_op};
use crate::bench::BenchArgs;
use crate::bench::driver::{Outcome, drive, progress};
use crate::bench::report::{ScenarioReport, Stream};
use crate::bench::spawn::{Spawned, proc_stats};
use anyhow::{Context as _, anyhow, bail};
use authq_protocol::{Names, Tube};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `backlog`: steady-state checks, then the pool stopped, `--backlog` checks published, the
/// pool started again and the drain measured (and the worker's memory sampled throughout).
pub(super) async fn backlog(args: &BenchArgs, report: &mut ScenarioReport) -> anyhow::Result<()> {
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
    crate::bench::spawn::delete_namespace(url, &names).await;
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
