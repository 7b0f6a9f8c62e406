//! `--spawn`: the pool as a child process (`authq serve`, its own namespace and SQLite file),
//! so its CPU time and memory can be read from `/proc/<pid>`, and its per-stage timings from
//! the metrics file it writes on exit (`authq serve --metrics-file`).

use anyhow::{Context as _, anyhow, bail};
use authq::{Client, ClientOptions};
use authq_protocol::{Names, Tube};
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A worker started by the bench.
#[derive(Debug)]
pub struct Spawned {
    child: Child,
    metrics_file: PathBuf,
    log_file: PathBuf,
}

/// CPU and memory of a process, from `/proc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcStats {
    /// User + system CPU time.
    pub cpu: Duration,
    /// Resident memory now, KiB.
    pub rss_kib: u64,
    /// Peak resident memory (VmHWM), KiB.
    pub peak_rss_kib: u64,
}

/// What a spawned worker reported when it stopped.
#[derive(Clone, Debug)]
pub struct WorkerReport {
    /// CPU and memory just before it was asked to stop.
    pub stats: ProcStats,
    /// Its metrics file: counters and per-stage timings.
    pub metrics: Option<serde_json::Value>,
}

impl Spawned {
    /// Starts `authq serve` (this very binary) on `namespace` with the store named by the
    /// `store` flags (`--database …`), and, with `wait_for_ping`, waits until it answers `ping`.
    pub async fn start(
        url: &str,
        namespace: &str,
        store: &[String],
        dir: &Path,
        extra: &[String],
        wait_for_ping: bool,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the authq binary")?;
        let n = std::fs::read_dir(dir).map_or(0, Iterator::count);
        let metrics_file = dir.join(format!("metrics-{n}.json"));
        let log_file = dir.join(format!("serve-{n}.log"));
        let log = std::fs::File::create(&log_file)?;
        let child = Command::new(exe)
            .arg("serve")
            .args(["--namespace", namespace, "--queue-expires", "10m"])
            .args(["--shutdown-grace", "10s"])
            .args(store)
            .arg("--metrics-file")
            .arg(&metrics_file)
            .args(extra)
            .env("AUTHQ_AMQP_URL", url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start authq serve")?;
        let mut spawned = Self {
            child,
            metrics_file,
            log_file,
        };
        if wait_for_ping {
            spawned.wait_ready(url, namespace).await?;
        }
        Ok(spawned)
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_ready(&mut self, url: &str, namespace: &str) -> anyhow::Result<()> {
        let started = Instant::now();
        let options = ClientOptions::default()
            .namespace(namespace.to_owned())
            .timeout(Duration::from_secs(2))
            .connection_name("authq-bench-probe");
        while started.elapsed() < Duration::from_secs(60) {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "authq serve exited ({status}) before answering: {}",
                    self.log_tail()
                );
            }
            if let Ok(client) = Client::connect_with(url, options.clone()).await {
                let pinged = client.ping().await;
                let _ = client.close().await;
                if pinged.is_ok() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!(
            "authq serve did not answer ping within 60 s: {}",
            self.log_tail()
        )
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// Lowers the OS priority of the worker's argon2 threads (`authq-argon2-*`) to `nice`, with
    /// `renice` on each thread id; returns how many threads it reniced.
    pub fn renice_hashing_threads(&self, nice: i32) -> anyhow::Result<usize> {
        let mut done = 0;
        for task in std::fs::read_dir(format!("/proc/{}/task", self.pid()))? {
            let task = task?;
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.starts_with("authq-argon2") {
                let tid = task.file_name().to_string_lossy().into_owned();
                let ok = Command::new("renice")
                    .args(["-n", &nice.to_string(), "-p", &tid])
                    .stdout(Stdio::null())
                    .status()?
                    .success();
                if !ok {
                    bail!("renice of thread {tid} failed");
                }
                done += 1;
            }
        }
        Ok(done)
    }

    /// CPU and memory now.
    pub fn stats(&self) -> ProcStats {
        proc_stats(self.pid()).unwrap_or_default()
    }

    /// Reads its figures, stops it with SIGTERM and waits for it (and its metrics file).
    pub async fn stop(mut self) -> anyhow::Result<WorkerReport> {
        let stats = self.stats();
        let pid = self.pid().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status()?;
        if !killed.success() {
            bail!("cannot send SIGTERM to authq serve ({pid})");
        }
        let status = tokio::task::spawn_blocking(move || self.child.wait().map(|s| (s, self)))
            .await
            .map_err(|e| anyhow!("waiting for authq serve: {e}"))??;
        let (status, this) = status;
        if !status.success() {
            bail!("authq serve exited with {status}: {}", this.log_tail());
        }
        let metrics = std::fs::read(&this.metrics_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        Ok(WorkerReport { stats, metrics })
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // A bench that failed half-way does not leave a worker behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Deletes a spawned pool's queues and exchanges once the bench is done with them (best effort:
/// they would expire after 10 minutes anyway). Each idle quorum queue keeps a Raft member ticking
/// in the broker, so consecutive runs would otherwise measure a broker carrying the previous
/// runs' queues.
pub async fn delete_namespace(url: &str, names: &Names) {
    let Ok(connection) = Connection::connect(url, ConnectionProperties::default()).await else {
        return;
    };
    let Ok(channel) = connection.create_channel().await else {
        return;
    };
    let queues = Tube::ALL.into_iter().map(|t| names.tube(t)).chain([
        names.unrouted(),
        names.dead_letter(),
        names.quarantine(),
    ]);
    for queue in queues {
        let _ = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
    }
    let exchanges = [
        names.request_exchange(),
        names.unrouted(),
        names.dead_letter(),
        names.quarantine(),
        names.events_exchange(),
    ];
    for exchange in exchanges {
        let _ = channel
            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = connection.close(200, "bench done".into()).await;
}

/// CPU time and memory of process `pid`, from `/proc/<pid>/stat` and `/proc/<pid>/status`.
pub fn proc_stats(pid: u32) -> Option<ProcStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = clock_ticks();
    let cpu = Duration::from_secs_f64((utime + stime) as f64 / ticks as f64);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(ProcStats {
        cpu,
        rss_kib: kib("VmRSS:"),
        peak_rss_kib: kib("VmHWM:"),
    })
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(read_clock_ticks)
}

fn read_clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}
