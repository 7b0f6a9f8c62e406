//! The job queues and the threads that take from them: which set of threads (normal class or
//! Linux's idle class) a job is queued for, how long it may wait there ([`QUIET`],
//! [`PATIENCE`]), and the threads' loop. What a thread runs is [`super::hasher`]'s concern.

use super::hasher::ThreadHasher;
use crate::config::HashPriority;
use crate::metrics::Metrics;
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A job for a hashing thread.
pub(super) type Job = Box<dyn FnOnce(&mut ThreadHasher) + Send>;

/// `auto`: how recently a session-tube request must have been seen for a new job to go to the
/// background (idle-class) threads.
pub const QUIET: Duration = Duration::from_secs(1);

/// `auto`: how long a background job waits for a background thread before a foreground
/// (normal-class) thread takes it: the most a busy host can hold a login back.
pub const PATIENCE: Duration = Duration::from_millis(250);

/// The set of threads a job is queued for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Set {
    /// Normal-class threads.
    Foreground,
    /// Idle-class threads.
    Background,
}

/// A job waiting for a thread, with the moment it was queued.
struct Queued {
    job: Job,
    since: Instant,
}

#[derive(Default)]
struct Waiting {
    foreground: VecDeque<Queued>,
    background: VecDeque<Queued>,
    closed: bool,
}

/// What the pool's threads and its handles share.
pub(super) struct Queues {
    mode: HashPriority,
    waiting: Mutex<Waiting>,
    /// Signalled when a job is queued or the pool closes.
    ready: Condvar,
    /// When a session-tube request was last seen, in nanoseconds since `epoch`.
    pub(super) last_session: AtomicU64,
    pub(super) epoch: Instant,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues").field("mode", &self.mode).finish()
    }
}

/// Closes the queues when the last [`HashPool`] handle is dropped, which ends the threads.
#[derive(Debug)]
pub(super) struct Closer(pub(super) Arc<Queues>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.ready.notify_all();
    }
}

impl Queues {
    /// Empty queues for a pool in `mode`.
    pub(super) fn new(mode: HashPriority, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Queues {
            mode,
            waiting: Mutex::new(Waiting::default()),
            ready: Condvar::new(),
            last_session: AtomicU64::new(0),
            epoch: Instant::now(),
            metrics,
        })
    }

    /// Starts `threads` threads per set that `mode` uses, each with the hasher `hasher` makes.
    pub(super) fn spawn_threads(
        self: &Arc<Self>,
        threads: usize,
        hasher: impl Fn() -> ThreadHasher,
    ) -> std::io::Result<()> {
        let sets: &[Set] = match self.mode {
            HashPriority::Normal => &[Set::Foreground],
            HashPriority::Idle => &[Set::Background],
            HashPriority::Auto => &[Set::Foreground, Set::Background],
        };
        for &set in sets {
            for i in 0..threads {
                let queues = Arc::clone(self);
                let hasher = hasher();
                // At most 15 bytes: Linux truncates thread names beyond that.
                let name = match set {
                    Set::Foreground => format!("authq-argon2-f{i}"),
                    Set::Background => format!("authq-argon2-b{i}"),
                };
                std::thread::Builder::new().name(name).spawn(move || {
                    if set == Set::Background {
                        enter_idle_class();
                    }
                    hashing_thread(&queues, set, hasher);
                })?;
            }
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // A job never runs under the lock, so a poisoned lock holds consistent queues.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The set a job queued now goes to.
    fn set_for_new_job(&self, now: Instant) -> Set {
        match self.mode {
            HashPriority::Normal => Set::Foreground,
            HashPriority::Idle => Set::Background,
            HashPriority::Auto => {
                let last = self.last_session.load(Ordering::Relaxed);
                let seen_at = self.epoch + Duration::from_nanos(last);
                if last != 0 && now.saturating_duration_since(seen_at) < QUIET {
                    Set::Background
                } else {
                    Set::Foreground
                }
            }
        }
    }

    /// Queues `job` for the set [`Queues::set_for_new_job`] picks.
    pub(super) fn push(&self, job: Job) {
        let since = Instant::now();
        let set = self.set_for_new_job(since);
        {
            let mut waiting = self.lock();
            let queued = Queued { job, since };
            match set {
                Set::Foreground => waiting.foreground.push_back(queued),
                Set::Background => waiting.background.push_back(queued),
            }
        }
        self.ready.notify_all();
    }

    /// The next job for a thread of `set`; `None` once the pool is closed and nothing waits.
    fn take(&self, set: Set) -> Option<Job> {
        let mut waiting = self.lock();
        loop {
            match set {
                Set::Background => {
                    if let Some(q) = waiting.background.pop_front() {
                        self.metrics.argon2_background_runs.inc();
                        return Some(q.job);
                    }
                }
                Set::Foreground => {
                    if let Some(q) = waiting.foreground.pop_front() {
                        return Some(q.job);
                    }
                    // Background threads that leave a job waiting this long are starved.
                    if self.mode == HashPriority::Auto
                        && let Some(front) = waiting.background.front()
                    {
                        let waited = front.since.elapsed();
                        if waited >= PATIENCE {
                            let q = waiting.background.pop_front()?;
                            self.metrics.argon2_rescued.inc();
                            return Some(q.job);
                        }
                        if !waiting.closed {
                            waiting = self
                                .ready
                                .wait_timeout(waiting, PATIENCE - waited)
                                .unwrap_or_else(|p| p.into_inner())
                                .0;
                            continue;
                        }
                    }
                }
            }
            if waiting.closed {
                return None;
            }
            waiting = self.ready.wait(waiting).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Puts the calling thread in Linux's `SCHED_IDLE` class. A refusal (a sandbox that forbids
/// `sched_setscheduler`) is logged and otherwise harmless: argon2 then runs at the normal
/// priority.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn enter_idle_class() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    let set = set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
    );
    if let Err(e) = set {
        tracing::warn!(error = ?e, "cannot lower the argon2 thread's priority");
    }
}

/// `SCHED_IDLE` is Linux's: elsewhere argon2 runs at the normal priority, and says so.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn enter_idle_class() {
    tracing::warn!(
        "the idle scheduling class exists only on Linux: argon2 runs at the normal priority"
    );
}

fn hashing_thread(queues: &Queues, set: Set, mut hasher: ThreadHasher) {
    while let Some(job) = queues.take(set) {
        // A panicking job loses its own reply only (its caller gets `PoolStopped`), not the
        // thread.
        if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut hasher))).is_err() {
            tracing::error!("an argon2 job panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HashConfig;
    use crate::hashing::{HashError, HashPool};

    /// A pool of one thread per set with the given scheduling choice.
    fn pool_in(priority: HashPriority) -> (HashPool, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        let config = HashConfig {
            threads: 1,
            priority,
            ..HashConfig::insecure_fast_for_tests()
        };
        (
            HashPool::start(&config, Arc::clone(&metrics)).unwrap(),
            metrics,
        )
    }

    /// The name of the thread that runs the next job ("authq-argon2-f0": the normal-class set,
    /// "authq-argon2-b0": the idle-class set).
    async fn thread_of_next_job(pool: &HashPool) -> String {
        pool.run(|_| std::thread::current().name().unwrap_or_default().to_owned())
            .await
            .unwrap()
    }

    /// Occupies the pool's only thread of the set the next job goes to until the returned
    /// sender is dropped; returns it with the held job, which yields its thread's name.
    async fn hold_a_thread(
        pool: &HashPool,
        metrics: &Metrics,
        taken: impl Fn(&Metrics) -> bool,
    ) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<String>) {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let p = pool.clone();
        let job = tokio::spawn(async move {
            p.run(move |_| {
                let _ = held.recv();
                std::thread::current().name().unwrap_or_default().to_owned()
            })
            .await
            .unwrap()
        });
        for _ in 0..500 {
            if taken(metrics) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(taken(metrics), "the holding job started");
        (release, job)
    }

    #[tokio::test]
    async fn auto_hashes_in_the_normal_class_while_no_check_flows() {
        let (pool, metrics) = pool_in(HashPriority::Auto);
        assert_eq!(thread_of_next_job(&pool).await, "authq-argon2-f0");
        assert_eq!(metrics.argon2_background_runs.get(), 0);
    }

    #[tokio::test]
    async fn auto_hashes_in_the_idle_class_while_checks_flow() {
        let (pool, metrics) = pool_in(HashPriority::Auto);
        pool.note_session_traffic(Instant::now());
        assert_eq!(thread_of_next_job(&pool).await, "authq-argon2-b0");
        assert_eq!(metrics.argon2_background_runs.get(), 1);
        assert_eq!(metrics.argon2_rescued.get(), 0);
        // Once the checks have stopped for a while, the normal class again.
        tokio::time::sleep(QUIET * 2).await;
        assert_eq!(thread_of_next_job(&pool).await, "authq-argon2-f0");
    }

    #[tokio::test]
    async fn a_login_the_idle_class_leaves_waiting_is_taken_by_a_normal_thread() {
        let (pool, metrics) = pool_in(HashPriority::Auto);
        // Checks flow, and the only idle-class thread is taken (as a starved one would be).
        pool.note_session_traffic(Instant::now());
        let (release, held) =
            hold_a_thread(&pool, &metrics, |m| m.argon2_background_runs.get() == 1).await;
        pool.note_session_traffic(Instant::now());
        assert_eq!(thread_of_next_job(&pool).await, "authq-argon2-f0");
        assert_eq!(metrics.argon2_rescued.get(), 1);
        drop(release);
        assert_eq!(held.await.unwrap(), "authq-argon2-b0");
    }

    #[tokio::test]
    async fn idle_never_moves_a_job_to_the_normal_class() {
        let (pool, metrics) = pool_in(HashPriority::Idle);
        let (release, held) =
            hold_a_thread(&pool, &metrics, |m| m.argon2_background_runs.get() == 1).await;
        let p = pool.clone();
        let next = tokio::spawn(async move { thread_of_next_job(&p).await });
        tokio::time::sleep(PATIENCE * 2).await;
        assert!(!next.is_finished(), "no other thread takes it");
        drop(release);
        assert_eq!(held.await.unwrap(), "authq-argon2-b0");
        assert_eq!(next.await.unwrap(), "authq-argon2-b0");
        assert_eq!(metrics.argon2_rescued.get(), 0);
    }

    #[tokio::test]
    async fn normal_hashes_in_the_normal_class_even_while_checks_flow() {
        let (pool, metrics) = pool_in(HashPriority::Normal);
        pool.note_session_traffic(Instant::now());
        assert_eq!(thread_of_next_job(&pool).await, "authq-argon2-f0");
        assert_eq!(metrics.argon2_background_runs.get(), 0);
    }

    #[tokio::test]
    async fn both_classes_share_the_buffers() {
        let (pool, _) = pool_in(HashPriority::Auto);
        pool.hash("correct horse".into()).await.unwrap();
        pool.note_session_traffic(Instant::now());
        pool.hash("correct horse".into()).await.unwrap();
        assert_eq!(pool.buffers_held(), 1, "one run at a time, one buffer");
    }

    #[tokio::test]
    async fn a_panicking_job_costs_its_own_reply_not_the_thread() {
        let (pool, _) = pool_in(HashPriority::Normal);
        let lost = pool.run(|_| -> u8 { panic!("injected") }).await;
        assert!(matches!(lost, Err(HashError::PoolStopped)), "{lost:?}");
        assert_eq!(thread_of_next_job(&pool).await, "authq-argon2-f0");
    }
}
