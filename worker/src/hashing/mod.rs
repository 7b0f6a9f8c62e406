//! The argon2id pool: password hashing and verification on threads of their own.
//!
//! argon2 is deliberately slow (≈15 ms per verification with OWASP's parameters). Running it on
//! the async executor would stall every other request on that thread, so it runs on a fixed
//! number of dedicated OS threads fed by a queue. The pool is the only place argon2 runs, so
//! its size bounds the CPU a login flood can take: the rest of the flood waits in the broker.
//!
//! Which scheduling class a run gets ([`crate::config::HashPriority`]): by default (`auto`) the pool has two
//! sets of `threads` threads, one in the normal class ("foreground") and one in Linux's
//! `SCHED_IDLE` ("background"). A job queued while session-tube requests are flowing (one seen
//! within [`QUIET`]) goes to the background threads, so a login flood takes only the CPU the
//! checks leave; any other job goes to the foreground threads, so logins alone run at full
//! speed and a host kept busy by something other than checks cannot starve them. A background
//! job that has waited [`PATIENCE`] without a background thread taking it (they are starved) is
//! taken by a free foreground thread. Either way at most `threads` jobs are taken at a time
//! from each set's queue. The consumer loop of the session tube (`crate::pool`) notes each
//! check with one relaxed atomic store ([`HashPool::note_session_traffic`]).
//!
//! # Decisions, with the figures that made them (BENCHMARKS.md)
//! - **`auto` rather than always `SCHED_IDLE`.** All-idle threads cut `check`'s p99 under a login
//!   flood to 2.2–2.4× its p99 alone (from 3.8–3.9×), but cost a login-only load 6–10 points of
//!   the argon2 ceiling (Linux places other wakeups on a CPU that runs only idle-class work) and
//!   starved logins completely while anything else saturated the host (the kill-mid-flood tests
//!   timed out 104–243 logins beside two busy loops). `auto` keeps the flood figure and gives the
//!   login-only figure back. Its price: a login flood with no session traffic competes for the
//!   CPU like any other service.
//! - **Default size: cores − 1, at least 1.** On the 2-core machine two argon2 threads leave
//!   nothing for the broker (same host) and the checks; `authq bench flood` measured two threads
//!   and prefetch 1 or 8, and none beat this default consistently. The password tube's default
//!   prefetch is twice the pool: each thread busy, one request waiting behind it, the rest of
//!   the flood in the broker.
//! - **Memory buffers reused** (`hasher`): a run leases one of the pool's 19 MiB buffers and
//!   gives it back, so the pool holds as many as ran at once. One allocation per run cost a page
//!   fault per 4 KiB (a third of a hashing thread's CPU in system time) and left glibc holding
//!   150–280 MiB; with reuse a worker stays near 57 MiB and logs in ~15 % more users per second.
//! - **One verification per `login`, known user or not**: a dummy hash made at start-up with the
//!   same parameters stands in for an unknown email, so timing tells nothing.

mod hasher;
pub mod legacy;
mod queue;

pub use queue::{PATIENCE, QUIET};

use crate::config::{HashConfig, HashParams};
use crate::metrics::Metrics;
use authq_protocol::Secret;
use hasher::{Buffers, ThreadHasher, argon2_for, stored_params};
use queue::{Closer, Job, Queues};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::sync::oneshot;
use tracing::Span;

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

        let queues = Queues::new(config.priority, Arc::clone(&metrics));
        queues.spawn_threads(config.threads, || {
            ThreadHasher::new(argon2.clone(), Arc::clone(&buffers))
        })?;
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
        if let Some(legacy) = stored.as_deref().map(legacy::parse).transpose()?.flatten() {
            return self.verify_legacy(password, legacy).await;
        }
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

    /// Verifies a password against an imported hash ([`legacy`]): a match always needs a
    /// rehash. An authman hash also costs one argon2 run against the dummy hash, so its timing
    /// matches an argon2 user's.
    async fn verify_legacy(
        &self,
        password: Secret,
        legacy: legacy::Legacy,
    ) -> Result<Verified, HashError> {
        let dummy = Arc::clone(&self.dummy_hash);
        self.run(move |hasher| {
            let pw = password.expose().as_bytes();
            if matches!(legacy, legacy::Legacy::Authman { .. }) {
                hasher.verify(pw, &dummy)?;
            }
            let ok = legacy::verify(&legacy, pw)?;
            Ok(Verified {
                ok,
                needs_rehash: ok,
            })
        })
        .await?
    }

    /// The form an imported hash is stored in ([`legacy::importable`]), checked against the
    /// configured argon2 bound.
    pub fn importable(
        &self,
        scheme: authq_protocol::ops::PasswordScheme,
        hash: &str,
        user_id: &str,
    ) -> Result<String, legacy::Refusal> {
        legacy::importable(scheme, hash, user_id, &self.max_params)
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

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{Algorithm, Argon2, Params, Version};

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

    #[tokio::test]
    async fn imported_legacy_hashes_verify_on_the_pool_and_a_match_needs_a_rehash() {
        use authq_protocol::ops::PasswordScheme;
        use sha2::Digest as _;
        let (pool, _) = pool();
        let hex: String = sha2::Sha256::digest(b"u1correct horse")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let authman = pool
            .importable(PasswordScheme::AuthmanSha256, &hex, "u1")
            .unwrap();
        let bcrypt = bcrypt::hash_with_salt("correct horse", 4, [1; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoB);
        for stored in [authman, bcrypt] {
            assert_eq!(
                login_verify(&pool, "correct horse", &stored).await,
                RIGHT_BUT_STALE,
                "{stored}"
            );
            assert_eq!(
                login_verify(&pool, "wrong horse", &stored).await,
                Verified {
                    ok: false,
                    needs_rehash: false
                }
            );
        }
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
