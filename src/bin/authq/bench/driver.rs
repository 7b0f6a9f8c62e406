//! The load driver: a fixed number of calls in flight through the client library, until a
//! count, a duration or a stop flag; latency of every call and the outcome of every call.

use authq::ClientError;
use futures_util::future::BoxFuture;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One call of a load: given its sequence number, make it and say how it went.
pub type Op = Arc<dyn Fn(u64) -> BoxFuture<'static, Result<(), ClientError>> + Send + Sync>;

/// When a load stops taking new calls.
#[derive(Clone, Debug)]
pub enum Stop {
    /// After this many calls.
    Count(u64),
    /// After this long.
    For(Duration),
    /// When the flag is raised.
    Flag(Arc<AtomicBool>),
}

/// What a load did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Calls made.
    pub requests: u64,
    /// Calls that got a reply (ok or error).
    pub replies: u64,
    /// Calls that got an ok reply.
    pub ok: u64,
    /// Calls that did not get an ok reply, by error code (`timeout`, `connection_lost`,
    /// `client_error` when no reply came).
    pub errors: BTreeMap<String, u64>,
    /// From the first call to the last reply.
    pub elapsed: Duration,
    /// Every call's latency in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// CPU time the bench process spent meanwhile (all its threads: the calls' client, the
    /// driver, and an echo consumer run in-process), from `/proc/self/stat`.
    pub bench_cpu: Duration,
}

impl Outcome {
    /// Calls per second.
    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }

    /// The latency below which `q` (0..=1) of the calls completed.
    pub fn percentile(&self, q: f64) -> Duration {
        if self.latencies_us.is_empty() {
            return Duration::ZERO;
        }
        let last = self.latencies_us.len() - 1;
        let i = ((last as f64) * q).round() as usize;
        Duration::from_micros(u64::from(self.latencies_us[i.min(last)]))
    }

    /// Counts the outcomes of calls made outside [`drive`].
    pub fn tally(&mut self, outcomes: impl IntoIterator<Item = Result<(), ClientError>>) {
        for outcome in outcomes {
            self.record(outcome);
        }
    }

    fn record(&mut self, outcome: Result<(), ClientError>) {
        self.requests += 1;
        match outcome {
            Ok(()) => {
                self.replies += 1;
                self.ok += 1;
            }
            Err(e) => {
                let key = match &e {
                    ClientError::Server { code, .. } => {
                        self.replies += 1;
                        code.as_str().to_owned()
                    }
                    ClientError::Timeout(_) => "timeout".to_owned(),
                    ClientError::ConnectionLost => "connection_lost".to_owned(),
                    _ => "client_error".to_owned(),
                };
                *self.errors.entry(key).or_default() += 1;
            }
        }
    }

    /// Adds a later block of the same load: its calls, latencies and time.
    pub fn absorb(&mut self, other: Self) {
        self.elapsed += other.elapsed;
        self.bench_cpu += other.bench_cpu;
        self.merge(other);
        self.latencies_us.sort_unstable();
    }

    fn merge(&mut self, other: Self) {
        self.requests += other.requests;
        self.replies += other.replies;
        self.ok += other.ok;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.latencies_us.extend(other.latencies_us);
    }
}

/// A progress bar on stderr (drawn only on a terminal).
pub fn progress(label: &str, len: Option<u64>) -> ProgressBar {
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    let template = if len.is_some() {
        "{prefix:>22} [{bar:30}] {pos}/{len} {per_sec} eta {eta}"
    } else {
        "{prefix:>22} {spinner} {pos} calls, {per_sec}, {elapsed}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_owned());
    bar
}

impl Stop {
    /// Block `i` of `n` that share this stop: a count split as evenly as it goes (the blocks
    /// add up to the count), a duration in equal parts. A flag stays a flag.
    pub fn share(&self, i: u64, n: u64) -> Self {
        let n = n.max(1);
        match self {
            Self::Count(c) => Self::Count(c / n + u64::from(i < c % n)),
            Self::For(d) => Self::For(*d / u32::try_from(n).unwrap_or(u32::MAX)),
            Self::Flag(f) => Self::Flag(Arc::clone(f)),
        }
    }
}

/// Runs `op` with `in_flight` calls at a time until `stop`.
pub async fn drive(label: &str, in_flight: usize, stop: Stop, show: bool, op: Op) -> Outcome {
    let (limit, deadline, flag) = match &stop {
        Stop::Count(n) => (*n, None, None),
        Stop::For(d) => (u64::MAX, Some(Instant::now() + *d), None),
        Stop::Flag(f) => (u64::MAX, None, Some(Arc::clone(f))),
    };
    let bar = if show {
        progress(label, matches!(stop, Stop::Count(_)).then_some(limit))
    } else {
        ProgressBar::hidden()
    };
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let cpu_before = own_cpu();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(in_flight);
    for _ in 0..in_flight.max(1) {
        let (next, done, op, flag) = (
            Arc::clone(&next),
            Arc::clone(&done),
            Arc::clone(&op),
            flag.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut outcome = Outcome::default();
            loop {
                if flag.as_ref().is_some_and(|f| f.load(Ordering::Relaxed))
                    || deadline.is_some_and(|d| Instant::now() >= d)
                {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= limit {
                    break;
                }
                let t = Instant::now();
                let result = op(i).await;
                let us = u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX);
                outcome.latencies_us.push(us);
                outcome.record(result);
                done.fetch_add(1, Ordering::Relaxed);
            }
            outcome
        }));
    }
    let ticker = {
        let (bar, done) = (bar.clone(), Arc::clone(&done));
        tokio::spawn(async move {
            loop {
                bar.set_position(done.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut total = Outcome::default();
    for task in tasks {
        if let Ok(outcome) = task.await {
            total.merge(outcome);
        }
    }
    total.elapsed = started.elapsed();
    total.bench_cpu = own_cpu().saturating_sub(cpu_before);
    ticker.abort();
    bar.finish_and_clear();
    total.latencies_us.sort_unstable();
    total
}

/// The bench process's CPU time so far (zero where `/proc` is missing).
fn own_cpu() -> Duration {
    crate::bench::spawn::proc_stats(std::process::id())
        .map(|s| s.cpu)
        .unwrap_or_default()
}
