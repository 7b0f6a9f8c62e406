//! Which PostgreSQL driver for `check`? Measures the session look-up alone (no broker), 128 at
//! a time, four ways, in alternating rounds:
//!
//! - `sqlite`: the store's SQLite path as the worker runs it (inline reader on the executor,
//!   else the blocking pool);
//! - `postgres (sync, r2d2)`: the synchronous driver alone (a store permit, `spawn_blocking`, a
//!   pooled connection), the path every PostgreSQL write takes;
//! - `postgres (store)`: the store's PostgreSQL path as the worker runs `check`
//!   (`Store::check_session_now`, the async driver through `store::pg_reads`);
//! - `tokio-postgres (async)`: the same prepared query straight through the async driver, one
//!   connection per core, requests pipelined on each: the ceiling of the store's path.
//!
//! `cargo run --release --example store_drivers [postgres-admin-url]` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`; a database `authq_driver_bench` is made anew).

use authq_worker::store::{NewSession, Renewal, Store, StoreLocation};
use std::sync::Arc;
use std::time::{Duration, Instant};

const USERS: usize = 1000;
const IN_FLIGHT: usize = 128;
const CALLS: usize = 40_000;
const POOL: u32 = 8;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let admin = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let pg_url = {
        let admin = admin.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
            let mut c = postgres::Client::connect(&admin, postgres::NoTls)?;
            c.batch_execute("DROP DATABASE IF EXISTS authq_driver_bench WITH (FORCE)")?;
            c.batch_execute("CREATE DATABASE authq_driver_bench")?;
            let mut url = url::Url::parse(&admin)?;
            url.set_path("authq_driver_bench");
            Ok(url.to_string())
        })
        .await??
    };
    let dir = tempfile::tempdir()?;
    let sqlite = open(StoreLocation::Sqlite(dir.path().join("bench.db"))).await?;
    let pg = open(StoreLocation::Postgres(pg_url.clone())).await?;

    let (client, connection) = tokio_postgres::connect(&pg_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let mut async_clients = vec![Arc::new(client)];
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for _ in 1..cores {
        let (c, conn) = tokio_postgres::connect(&pg_url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        async_clients.push(Arc::new(c));
    }
    let mut statements = Vec::new();
    for c in &async_clients {
        statements.push(
            c.prepare(
                "SELECT u.id, u.email, u.state, u.profile, s.expires_at, s.absolute_expires_at,
                        u.session_epoch
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_digest = $1 AND s.expires_at > $2 AND s.absolute_expires_at > $2",
            )
            .await?,
        );
    }

    println!(
        "session look-ups, {IN_FLIGHT} in flight, {CALLS} per round, {cores} cores, pool {POOL}"
    );
    for round in 1..=3 {
        for (name, result) in [
            ("sqlite", run_store(&sqlite, true).await),
            ("postgres (sync, r2d2)", run_store(&pg, false).await),
            ("postgres (store)", run_store(&pg, true).await),
            (
                "tokio-postgres (async)",
                run_async(&async_clients, &statements).await,
            ),
        ] {
            let (per_s, p50, p99) = result?;
            println!(
                "round {round}  {name:<24} {per_s:>9.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
                ms(p50),
                ms(p99)
            );
        }
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn digest(i: usize) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[..8].copy_from_slice(&(i as u64).to_be_bytes());
    d
}

/// Opens a store with `USERS` users, each with one live session.
async fn open(location: StoreLocation) -> anyhow::Result<Arc<Store>> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<Arc<Store>> {
        let store = Store::open(&location, POOL)?;
        store.write(|tx| {
            for i in 0..USERS {
                let id = format!("user-{i}");
                tx.execute(
                    "INSERT INTO users (id, email, email_key, state, created_at, updated_at)
                     VALUES (?1, ?2, ?2, 'active', 0, 0)",
                    &[
                        id.as_str().into(),
                        format!("u{i}@example.com").as_str().into(),
                    ],
                )?;
                tx.create_session(&NewSession {
                    user_id: &id,
                    digest: &digest(i),
                    now: 0,
                    expires_at: i64::MAX / 2,
                    absolute_expires_at: i64::MAX / 2,
                    session_id: &uuid::Uuid::new_v4().simple().to_string(),
                    user_agent: None,
                    client_ip: None,
                    limited: false,
                })?;
            }
            Ok(())
        })?;
        Ok(Arc::new(store))
    })
    .await?
}

/// Runs `CALLS` look-ups, `IN_FLIGHT` at a time, each made by `one(i)`; returns per second,
/// p50 and p99.
async fn measure<F, Fut>(one: F) -> anyhow::Result<(f64, Duration, Duration)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let one = Arc::new(one);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..IN_FLIGHT {
        let one = Arc::clone(&one);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for i in (t..CALLS).step_by(IN_FLIGHT) {
                let start = Instant::now();
                one(i).await?;
                latencies.push(start.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::with_capacity(CALLS);
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed();
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Ok((CALLS as f64 / elapsed.as_secs_f64(), at(0.5), at(0.99)))
}

/// The worker's path: the executor look-up (when `now`) if it answers, else a permit and the
/// blocking pool.
async fn run_store(store: &Arc<Store>, now: bool) -> anyhow::Result<(f64, Duration, Duration)> {
    let permits = Arc::new(tokio::sync::Semaphore::new(POOL as usize));
    let store = Arc::clone(store);
    let renewal = Renewal {
        renew_window_ms: 0,
        idle_timeout_ms: 0,
    };
    measure(move |i| {
        let (store, permits) = (Arc::clone(&store), Arc::clone(&permits));
        async move {
            let d = digest(i % USERS);
            if now && let Some(found) = store.check_session_now(&d, 1, renewal).await {
                anyhow::ensure!(found?.is_some(), "a live session");
                return Ok(());
            }
            let _permit = permits.acquire().await?;
            let found = tokio::task::spawn_blocking(move || {
                store.read(|tx| tx.check_session(&d, 1, renewal))
            })
            .await??;
            anyhow::ensure!(found.is_some(), "a live session");
            Ok(())
        }
    })
    .await
}

/// The async driver on the executor, pipelined on one connection per core.
async fn run_async(
    clients: &[Arc<tokio_postgres::Client>],
    statements: &[tokio_postgres::Statement],
) -> anyhow::Result<(f64, Duration, Duration)> {
    let pairs: Arc<Vec<_>> = Arc::new(
        clients
            .iter()
            .cloned()
            .zip(statements.iter().cloned())
            .collect(),
    );
    measure(move |i| {
        let pairs = Arc::clone(&pairs);
        async move {
            let (client, stmt) = &pairs[i % pairs.len()];
            let d = digest(i % USERS);
            let row = client.query_opt(stmt, &[&&d[..], &1i64]).await?;
            anyhow::ensure!(row.is_some(), "a live session");
            Ok(())
        }
    })
    .await
}
