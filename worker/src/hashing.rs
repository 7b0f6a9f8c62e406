//! The argon2id pool: password hashing and verification on threads of their own.
//!
//! argon2 is deliberately slow (≈15 ms per verification with OWASP's parameters). Running it on
//! the async executor would stall every other request on that thread, so it runs on a fixed
//! number of dedicated OS threads fed by a queue. The pool is the only place argon2 runs, so
//! its size bounds the CPU a login flood can take: the rest of the flood waits in the broker.

use crate::config::{HashConfig, HashParams};
use crate::metrics::Metrics;
use argon2::password_hash::PasswordHasher;
use argon2::password_hash::PasswordVerifier;
use argon2::{Algorithm, Argon2, Params, Version};
use authq_protocol::Secret;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tracing::Span;

type Job = Box<dyn FnOnce(&Argon2<'static>) + Send>;

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

/// A handle to the argon2 pool; cheap to clone.
#[derive(Clone, Debug)]
pub struct HashPool {
    jobs: mpsc::Sender<Job>,
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
        let dummy_hash = argon2
            .hash_password(random.expose().as_bytes())
            .map_err(|e| HashError::Argon2(e.to_string()))?
            .to_string();

        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..config.threads {
            let rx = Arc::clone(&rx);
            let argon2 = argon2.clone();
            std::thread::Builder::new()
                .name(format!("authq-argon2-{i}"))
                .spawn(move || hashing_thread(&rx, &argon2))?;
        }
        Ok(Self {
            jobs: tx,
            dummy_hash: dummy_hash.into(),
            metrics,
            params: config.params,
            max_params: config.max_params,
        })
    }

    /// Hashes a password into a PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    pub async fn hash(&self, password: Secret) -> Result<String, HashError> {
        self.run(move |argon2| {
            argon2
                .hash_password(password.expose().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| HashError::Argon2(e.to_string()))
        })
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
        self.run(move |argon2| {
            let known = stored.is_some();
            let phc = stored.as_deref().unwrap_or(&dummy);
            match argon2.verify_password(password.expose().as_bytes(), phc) {
                Ok(()) => Ok(Verified {
                    ok: known,
                    needs_rehash: known && needs_rehash,
                }),
                Err(argon2::password_hash::Error::PasswordInvalid) => Ok(Verified {
                    ok: false,
                    needs_rehash: false,
                }),
                Err(e) => Err(HashError::StoredHash(e.to_string())),
            }
        })
        .await?
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (tx, rx) = oneshot::channel();
        let span = Span::current();
        let metrics = Arc::clone(&self.metrics);
        let job: Job = Box::new(move |argon2| {
            let _entered = span.enter();
            metrics.argon2_runs.inc();
            let start = std::time::Instant::now();
            let outcome = f(argon2);
            metrics.stages.hash.since(start);
            // The receiver is gone only if the request was abandoned; nothing to do then.
            let _ = tx.send(outcome);
        });
        self.jobs.send(job).map_err(|_| HashError::PoolStopped)?;
        rx.await.map_err(|_| HashError::PoolStopped)
    }
}

fn hashing_thread(rx: &Mutex<mpsc::Receiver<Job>>, argon2: &Argon2<'static>) {
    loop {
        // Hold the lock only to take one job; a poisoned lock means another hashing thread
        // panicked while taking a job, which cannot corrupt the receiver itself.
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match job {
            Ok(job) => job(argon2),
            Err(_) => return, // every sender is gone: the worker is shutting down
        }
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
    async fn unknown_users_cost_one_run_and_never_verify() {
        let (pool, metrics) = pool();
        assert!(!pool.verify("anything".into(), None).await.unwrap());
        assert_eq!(metrics.argon2_runs.get(), 1);
    }

    #[tokio::test]
    async fn hashes_with_other_parameters_need_a_rehash_and_current_ones_do_not() {
        let (pool, _) = pool();
        let current = pool.hash("correct horse".into()).await.unwrap();
        let v = pool
            .verify_for_login("correct horse".into(), Some(current))
            .await
            .unwrap();
        assert_eq!(
            v,
            Verified {
                ok: true,
                needs_rehash: false
            }
        );

        let mut stronger = HashConfig::insecure_fast_for_tests();
        stronger.params.memory_kib = 128;
        let (new_pool, _) = (
            HashPool::start(&stronger, Arc::new(Metrics::default())).unwrap(),
            (),
        );
        let old = pool.hash("correct horse".into()).await.unwrap();
        let v = new_pool
            .verify_for_login("correct horse".into(), Some(old.clone()))
            .await
            .unwrap();
        assert_eq!(
            v,
            Verified {
                ok: true,
                needs_rehash: true
            }
        );
        // A wrong password never asks for a rehash.
        let v = new_pool
            .verify_for_login("wrong horse".into(), Some(old))
            .await
            .unwrap();
        assert_eq!(
            v,
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
    async fn garbage_hashes_are_errors_not_matches() {
        let (pool, _) = pool();
        assert!(
            pool.verify("x".into(), Some("not a phc".into()))
                .await
                .is_err()
        );
    }
}
