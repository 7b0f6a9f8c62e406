//! The scenarios: what each one runs, in which order, against which ceiling.
//!
//! - `env`: where a scenario runs ([`env::Env`]) and what the scenarios share.
//! - `backlog`: the one scenario that stops and restarts the pool.

mod backlog;
mod env;
mod verify;

use crate::bench::driver::{Op, Outcome, Stop, drive};
use crate::bench::report::{ScenarioReport, Stream};
use crate::bench::{BenchArgs, Scenario};
use anyhow::anyhow;
use backlog::backlog;
use env::{Env, PASSWORD, ceiling_stream, check_op, login_op, report_against_raw};
use futures_util::FutureExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
                report.streams.push(Stream::load(
                    &format!("raw client ({name}, 1)"),
                    &a.raw_client,
                ));
                report.figure(
                    &format!("client_p50_over_raw_client_p50_{name}_round"),
                    p(&a.echo, 0.5) / p(&a.raw_client, 0.5).max(1e-9),
                    "(one call in flight; the echo's p50 through the authq client ÷ through a raw \
                     lapin client with confirms and mandatory, same consumer)",
                );
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
        Scenario::Verify => verify::verify(&env, &mut report).await?,
        Scenario::ClientSecret => verify::client_secret(&env, &mut report).await?,
        Scenario::Backlog | Scenario::All => unreachable!("handled above"),
    }
    env.close(&mut report).await?;
    Ok(report)
}
