//! The argon2id pool: password hashing and verification on threads of their own.
//!
//! argon2 is deliberately slow (≈15 ms per verification with OWASP's parameters). Running it on
//! the async executor would stall every other request on that thread, so it runs on a fixed
//! number of dedicated OS threads fed by a queue. The pool is the only place argon2 runs, so
//! its size bounds the CPU a login flood can take: the rest of the flood waits in the broker.
//!
//! Which scheduling class a run gets ([`HashPriority`]): by default (`auto`) the pool has two
//! sets of `threads` threads, one in the normal class ("foreground") and one in Linux's
//! `SCHED_IDLE` ("background"). A job queued while session-tube requests are flowing (one seen
//! within [`QUIET`]) goes to the background threads, so a login flood takes only the CPU the
//! checks leave; any other job goes to the foreground threads, so logins alone run at full
//! speed and a host kept busy by something other than checks cannot starve them. A background
//! job that has waited [`PATIENCE`] without a background thread taking it (they are starved) is
//! taken by a free foreground thread. Either way at most `threads` jobs are taken at a time
//! from each set's queue.

use crate::config::{HashConfig, HashParams, HashPriority};
use crate::metrics::Metrics;
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use authq_protocol::Secret;
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::Span;

type Job = Box<dyn FnOnce(&mut ThreadHasher) + Send>;

/// `auto`: how recently a session-tube request must have been seen for a new job to go to the
/// background (idle-class) threads.
pub const QUIET: Duration = Duration::from_secs(1);

/// `auto`: how long a background job waits for a background thread before a foreground
/// (normal-class) thread takes it: the most a busy host can hold a login back.
pub const PATIENCE: Duration = Duration::from_millis(250);

/// Hashing failed for a reason other than a wrong password.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The configured parameters are rejected by argon2.
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    /// argon2 failed (out of memory, bad salt…).
    #[error("argon2 failed: {0}")]
    Argon2(String),
    /// A stored hash is not a PHC string argon2 can read.
    #[error("stored password hash is unreadable: {0}")]
    StoredHash(String),
    /// The pool's threads are gone (the worker is shutting down).
    #[error("the hashing pool has stopped")]
    PoolStopped,
    /// A pool thread could not be started.
    #[error("cannot start a hashing thread: {0}")]
    Spawn(#[from] std::io::Error),
}

/// A handle to the argon2 pool; cheap to clone. The threads stop when the last clone is gone.
#[derive(Clone, Debug)]
pub struct HashPool {
    queues: Arc<Closer>,
    buffers: Arc<Buffers>,
    dummy_hash: Arc<str>,
    metrics: Arc<Metrics>,
    params: HashParams,
    max_params: HashParams,
}

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
struct Queues {
    mode: HashPriority,
    waiting: Mutex<Waiting>,
    /// Signalled when a job is queued or the pool closes.
    ready: Condvar,
    /// When a session-tube request was last seen, in nanoseconds since `epoch`.
    last_session: AtomicU64,
    epoch: Instant,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues").field("mode", &self.mode).finish()
    }
}

/// Closes the queues when the last [`HashPool`] handle is dropped, which ends the threads.
#[derive(Debug)]
struct Closer(Arc<Queues>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.ready.notify_all();
    }
}

impl Queues {
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

    fn push(&self, job: Job) {
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

/// The outcome of a verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The password matches a real stored hash.
    pub ok: bool,
    /// The stored hash was made with other parameters (or another algorithm or version) than
    /// the pool's current ones: after a successful login it should be replaced.
    pub needs_rehash: bool,
}

impl HashPool {
    /// Starts `config.threads` hashing threads. Also computes the dummy hash that unknown
    /// users are verified against (one argon2 run, on the calling thread, at start-up).
    pub fn start(config: &HashConfig, metrics: Arc<Metrics>) -> Result<Self, HashError> {
        let argon2 = argon2_for(&config.params)?;
        // A hash of a random password nobody knows, with the current parameters: verifying
        // against it costs exactly what verifying a real user's password costs.
        let (random, _) =
            crate::crypto::new_token().map_err(|e| HashError::Argon2(e.to_string()))?;
        // Its buffer is freed at once: a worker that never logs anyone in (a pool serving only
        // checks) holds no argon2 memory.
        let dummy_hash =
            ThreadHasher::new(argon2.clone(), Arc::default()).hash(random.expose().as_bytes())?;
        let buffers = Arc::new(Buffers::default());

        let queues = Arc::new(Queues {
            mode: config.priority,
            waiting: Mutex::new(Waiting::default()),
            ready: Condvar::new(),
            last_session: AtomicU64::new(0),
            epoch: Instant::now(),
            metrics: Arc::clone(&metrics),
        });
        let sets: &[Set] = match config.priority {
            HashPriority::Normal => &[Set::Foreground],
            HashPriority::Idle => &[Set::Background],
            HashPriority::Auto => &[Set::Foreground, Set::Background],
        };
        for &set in sets {
            for i in 0..config.threads {
                let queues = Arc::clone(&queues);
                let hasher = ThreadHasher::new(argon2.clone(), Arc::clone(&buffers));
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
        Ok(Self {
            queues: Arc::new(Closer(queues)),
            buffers,
            dummy_hash: dummy_hash.into(),
            metrics,
            params: config.params,
            max_params: config.max_params,
        })
    }

    /// Hashes a password into a PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    pub async fn hash(&self, password: Secret) -> Result<String, HashError> {
        self.run(move |hasher| hasher.hash(password.expose().as_bytes()))
            .await?
    }

    /// Verifies a password against a stored PHC string, with the parameters the string holds.
    /// With `None` (no such user, or a user without a password) it verifies against the dummy
    /// hash and returns `false`: the same work, so timing does not tell the two cases apart.
    ///
    /// A stored hash whose parameters exceed the configured bound ([`HashConfig::max_params`])
    /// is refused with [`HashError::StoredHash`] before any argon2 run.
    pub async fn verify(
        &self,
        password: Secret,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        Ok(self.verify_for_login(password, stored).await?.ok)
    }

    /// Like [`HashPool::verify`], also saying whether the stored hash should be remade with the
    /// current parameters.
    pub async fn verify_for_login(
        &self,
        password: Secret,
        stored: Option<String>,
    ) -> Result<Verified, HashError> {
        let needs_rehash = match &stored {
            Some(phc) => {
                let found = stored_params(phc)?;
                if found.memory_kib > self.max_params.memory_kib
                    || found.iterations > self.max_params.iterations
                    || found.parallelism > self.max_params.parallelism
                {
                    return Err(HashError::StoredHash(format!(
                        "its parameters (m={}, t={}, p={}) exceed the configured bound",
                        found.memory_kib, found.iterations, found.parallelism
                    )));
                }
                found != self.params
            }
            None => false,
        };
        let dummy = Arc::clone(&self.dummy_hash);
        self.run(move |hasher| {
            let known = stored.is_some();
            let phc = stored.as_deref().unwrap_or(&dummy);
            let matches = hasher.verify(password.expose().as_bytes(), phc)?;
            Ok(Verified {
                ok: known && matches,
                needs_rehash: known && matches && needs_rehash,
            })
        })
        .await?
    }

    /// Notes that a session-tube request (`check` and its kin) is being served at `at`: in
    /// `auto`, jobs queued within [`QUIET`] of it go to the idle-class threads. One relaxed
    /// atomic store.
    pub fn note_session_traffic(&self, at: Instant) {
        let queues = &self.queues.0;
        let nanos = at.saturating_duration_since(queues.epoch).as_nanos();
        // 0 means "never"; a request in the pool's first nanosecond counts as 1.
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX).max(1);
        queues.last_session.store(nanos, Ordering::Relaxed);
    }

    /// The argon2 memory buffers the pool holds: as many as ran at once, at most (19 MiB each
    /// with OWASP's parameters).
    pub fn buffers_held(&self) -> usize {
        self.buffers.lock().len()
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ThreadHasher) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (tx, rx) = oneshot::channel();
        let span = Span::current();
        let metrics = Arc::clone(&self.metrics);
        let queued = std::time::Instant::now();
        metrics.argon2_queue_depth.inc();
        let job: Job = Box::new(move |hasher| {
            let _entered = span.enter();
            metrics.argon2_queue_depth.dec();
            metrics.argon2_wait.observe(queued.elapsed().as_secs_f64());
            metrics.argon2_runs.inc();
            let start = std::time::Instant::now();
            let outcome = f(hasher);
            metrics.stages.hash.since(start);
            // The receiver is gone only if the request was abandoned; nothing to do then.
            let _ = tx.send(outcome);
        });
        self.queues.0.push(job);
        rx.await.map_err(|_| HashError::PoolStopped)
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

/// argon2's memory buffers, shared by the pool's threads: a run leases one and gives it back.
/// argon2id with OWASP's parameters needs 19 MiB per run; allocating it each time cost the
/// kernel a page fault per 4 KiB (a third of the thread's CPU went to system time) and left
/// glibc holding 150–250 MiB after a few logins. One buffer per thread would hold two per slot
/// under `auto` (its normal-class and idle-class threads); leasing holds as many as ran at once,
/// normally `threads`. argon2 overwrites every block it reads, so a buffer needs no clearing
/// between runs.
#[derive(Debug, Default)]
struct Buffers(Mutex<Vec<Vec<Block>>>);

impl Buffers {
    /// A buffer of at least `blocks` blocks (stored hashes are bounded by
    /// [`HashConfig::max_params`] before they get here), returned to the pool when dropped.
    fn lease(&self, blocks: usize) -> Lease<'_> {
        let mut memory = self.lock().pop().unwrap_or_default();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        Lease { pool: self, memory }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Vec<Block>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A leased buffer.
struct Lease<'a> {
    pool: &'a Buffers,
    memory: Vec<Block>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let memory = std::mem::take(&mut self.memory);
        self.pool.lock().push(memory);
    }
}

/// A hashing thread's argon2: the configured instance and the pool's buffers.
struct ThreadHasher {
    argon2: Argon2<'static>,
    buffers: Arc<Buffers>,
}

impl ThreadHasher {
    fn new(argon2: Argon2<'static>, buffers: Arc<Buffers>) -> Self {
        Self { argon2, buffers }
    }

    /// A PHC string of `password` with the configured parameters and a fresh random salt.
    fn hash(&mut self, password: &[u8]) -> Result<String, HashError> {
        let salt = argon2::password_hash::try_generate_salt()
            .map_err(|e| HashError::Argon2(e.to_string()))?;
        let argon2 = self.argon2.clone();
        let params = argon2.params().clone();
        let mut out = vec![0u8; params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)];
        let blocks = params.block_count();
        let mut lease = self.buffers.lease(blocks);
        argon2
            .hash_password_into_with_memory(password, &salt, &mut out, &mut lease.memory[..blocks])
            .map_err(|e| HashError::Argon2(e.to_string()))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params)
                .map_err(|e| HashError::Argon2(e.to_string()))?,
            salt: Some(Salt::new(&salt).map_err(|e| HashError::Argon2(e.to_string()))?),
            hash: Some(Output::new(&out).map_err(|e| HashError::Argon2(e.to_string()))?),
        };
        Ok(phc.to_string())
    }

    /// Whether `password` matches the PHC string, with the algorithm, version and parameters
    /// the string holds; the outputs are compared in constant time.
    fn verify(&mut self, password: &[u8], phc: &str) -> Result<bool, HashError> {
        let unreadable = |e: &dyn std::fmt::Display| HashError::StoredHash(e.to_string());
        let hash = PasswordHash::new(phc).map_err(|e| unreadable(&e))?;
        let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
            return Err(HashError::StoredHash("no salt or no hash".into()));
        };
        let algorithm = Algorithm::try_from(hash.algorithm.as_str()).map_err(|e| unreadable(&e))?;
        let version = match hash.version {
            Some(v) => Version::try_from(v).map_err(|e| unreadable(&e))?,
            None => Version::default(),
        };
        let params = Params::try_from(&hash).map_err(|e| unreadable(&e))?;
        let argon2 = Argon2::new(algorithm, version, params.clone());
        let mut out = vec![0u8; expected.len()];
        let blocks = params.block_count();
        let mut lease = self.buffers.lease(blocks);
        argon2
            .hash_password_into_with_memory(
                password,
                salt.as_ref(),
                &mut out,
                &mut lease.memory[..blocks],
            )
            .map_err(|e| unreadable(&e))?;
        let computed = Output::new(&out).map_err(|e| unreadable(&e))?;
        // `Output`'s equality is constant-time.
        Ok(computed == *expected)
    }
}

/// The argon2id parameters a PHC string was made with. Anything but argon2id version 19 reads
/// as parameters that never equal the current ones (so it is rehashed on the next login).
fn stored_params(phc: &str) -> Result<HashParams, HashError> {
    let hash = argon2::PasswordHash::new(phc).map_err(|e| HashError::StoredHash(e.to_string()))?;
    let params = Params::try_from(&hash).map_err(|e| HashError::StoredHash(e.to_string()))?;
    let current = hash.algorithm.as_str() == "argon2id" && hash.version == Some(0x13);
    Ok(HashParams {
        memory_kib: params.m_cost(),
        iterations: params.t_cost(),
        // p = 0 is impossible for argon2: a marker that never equals the configured parameters.
        parallelism: if current { params.p_cost() } else { 0 },
    })
}

fn argon2_for(p: &HashParams) -> Result<Argon2<'static>, HashError> {
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, None)
        .map_err(|e| HashError::Params(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RIGHT_AND_CURRENT: Verified = Verified {
        ok: true,
        needs_rehash: false,
    };
    const RIGHT_BUT_STALE: Verified = Verified {
        ok: true,
        needs_rehash: true,
    };

    async fn login_verify(pool: &HashPool, password: &str, stored: &str) -> Verified {
        pool.verify_for_login(password.into(), Some(stored.to_owned()))
            .await
            .unwrap()
    }

    fn pool() -> (HashPool, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        let pool =
            HashPool::start(&HashConfig::insecure_fast_for_tests(), Arc::clone(&metrics)).unwrap();
        (pool, metrics)
    }

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_that_verify() {
        let (pool, metrics) = pool();
        let phc = pool.hash("correct horse".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(
            pool.verify("correct horse".into(), Some(phc.clone()))
                .await
                .unwrap()
        );
        assert!(!pool.verify("wrong horse".into(), Some(phc)).await.unwrap());
        assert_eq!(metrics.argon2_runs.get(), 3);
    }

    #[tokio::test]
    async fn hashes_agree_with_the_argon2_crates_own_hasher_and_verifier() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let (pool, _) = pool();
        let config = HashConfig::insecure_fast_for_tests();
        let argon2 = argon2_for(&config.params).unwrap();
        let ours = pool.hash("correct horse".into()).await.unwrap();
        assert!(
            argon2
                .verify_password(b"correct horse", ours.as_str())
                .is_ok()
        );
        assert!(
            argon2
                .verify_password(b"wrong horse", ours.as_str())
                .is_err()
        );
        let theirs = argon2.hash_password(b"correct horse").unwrap().to_string();
        assert!(
            pool.verify("correct horse".into(), Some(theirs.clone()))
                .await
                .unwrap()
        );
        assert!(
            !pool
                .verify("wrong horse".into(), Some(theirs))
                .await
                .unwrap()
        );
        // Another variant and version (argon2i v16), read from the string itself.
        let params = Params::new(64, 1, 1, None).unwrap();
        let old = Argon2::new(Algorithm::Argon2i, Version::V0x10, params)
            .hash_password(b"correct horse")
            .unwrap()
            .to_string();
        assert!(old.starts_with("$argon2i$v=16$"), "{old}");
        assert_eq!(
            login_verify(&pool, "correct horse", &old).await,
            RIGHT_BUT_STALE
        );
        assert!(!pool.verify("wrong horse".into(), Some(old)).await.unwrap());
    }

    #[tokio::test]
    async fn unknown_users_cost_one_run_and_never_verify() {
        let (pool, metrics) = pool();
        assert!(!pool.verify("anything".into(), None).await.unwrap());
        assert_eq!(metrics.argon2_runs.get(), 1);
    }

    #[tokio::test]
    async fn hashes_with_other_parameters_need_a_rehash_and_current_ones_do_not() {
        let (pool, _) = pool();
        let current = pool.hash("correct horse".into()).await.unwrap();
        assert_eq!(
            login_verify(&pool, "correct horse", &current).await,
            RIGHT_AND_CURRENT
        );

        let mut stronger = HashConfig::insecure_fast_for_tests();
        stronger.params.memory_kib = 128;
        let (new_pool, _) = (
            HashPool::start(&stronger, Arc::new(Metrics::default())).unwrap(),
            (),
        );
        let old = pool.hash("correct horse".into()).await.unwrap();
        assert_eq!(
            login_verify(&new_pool, "correct horse", &old).await,
            RIGHT_BUT_STALE
        );
        // A wrong password never asks for a rehash.
        assert_eq!(
            login_verify(&new_pool, "wrong horse", &old).await,
            Verified {
                ok: false,
                needs_rehash: false
            }
        );
        let rehashed = new_pool.hash("correct horse".into()).await.unwrap();
        assert!(
            rehashed.starts_with("$argon2id$v=19$m=128,t=1,p=1$"),
            "{rehashed}"
        );
    }

    #[tokio::test]
    async fn hashes_beyond_the_bound_are_refused_without_running_argon2() {
        let (pool, metrics) = pool();
        let real = pool.hash("correct horse".into()).await.unwrap();
        let before = metrics.argon2_runs.get();
        // The same hash, claiming 4 GiB of memory: verifying it would take a worker down.
        let planted = real.replace("m=64,", "m=4194304,");
        let err = pool
            .verify("correct horse".into(), Some(planted))
            .await
            .unwrap_err();
        assert!(matches!(err, HashError::StoredHash(_)), "{err}");
        assert_eq!(metrics.argon2_runs.get(), before, "no argon2 run");
    }

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

    #[tokio::test]
    async fn garbage_hashes_are_errors_not_matches() {
        let (pool, _) = pool();
        assert!(
            pool.verify("x".into(), Some("not a phc".into()))
                .await
                .is_err()
        );
    }
}
