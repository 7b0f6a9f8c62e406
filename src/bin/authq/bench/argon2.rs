//! The argon2 ceiling: argon2id verifications in-process, with the pool's parameters, on as
//! many threads as the pool has. No broker, no store, no authq code. Each thread computes the
//! hash into one memory buffer of its own, reused by every run: argon2's own best case (the
//! pool does the same).

use super::driver::progress;
use anyhow::anyhow;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use authq_worker::config::HashParams;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the ceiling measurement did.
#[derive(Clone, Copy, Debug)]
pub struct Ceiling {
    /// Verifications run.
    pub runs: u64,
    /// Wall time of the whole measurement.
    pub elapsed: Duration,
}

impl Ceiling {
    /// Verifications per second.
    pub fn rate(&self) -> f64 {
        self.runs as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Runs `count` verifications of a correct password on `threads` threads.
pub async fn measure(params: HashParams, threads: usize, count: u64) -> anyhow::Result<Ceiling> {
    let bar = progress("argon2 ceiling", Some(count));
    let shown = bar.clone();
    let outcome = tokio::task::spawn_blocking(move || run(params, threads, count, &shown))
        .await
        .map_err(|e| anyhow!("the argon2 ceiling failed: {e}"))?;
    bar.finish_and_clear();
    outcome
}

fn run(
    params: HashParams,
    threads: usize,
    count: u64,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Ceiling> {
    let p = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        None,
    )
    .map_err(|e| anyhow!("argon2 parameters: {e}"))?;
    let blocks = p.block_count();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, p);
    let password = b"correct horse battery staple";
    let salt = [7u8; 16];
    let mut expected = [0u8; 32];
    argon2
        .hash_password_into(password, &salt, &mut expected)
        .map_err(|e| anyhow!("argon2: {e}"))?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            let (next, argon2) = (Arc::clone(&next), argon2.clone());
            scope.spawn(move || {
                let mut memory = vec![Block::default(); blocks];
                let mut out = [0u8; 32];
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    // A correct password: the outcome is not in question, only the time.
                    let _ = argon2.hash_password_into_with_memory(
                        password,
                        &salt,
                        &mut out,
                        &mut memory[..],
                    );
                    let _ = std::hint::black_box(out == expected);
                    bar.inc(1);
                }
            });
        }
    });
    Ok(Ceiling {
        runs: count,
        elapsed: started.elapsed(),
    })
}
