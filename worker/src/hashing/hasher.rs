//! The argon2id hasher itself: what one pool thread runs — hashing into PHC strings, verifying
//! against them with the parameters they hold — and the memory buffers the threads share.
//! Which thread runs a job, and when, is [`super::queue`]'s concern.

use super::HashError;
use crate::config::HashParams;
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::{Arc, Mutex, MutexGuard};

/// argon2's memory buffers, shared by the pool's threads: a run leases one and gives it back.
/// argon2id with OWASP's parameters needs 19 MiB per run; allocating it each time cost the
/// kernel a page fault per 4 KiB (a third of the thread's CPU went to system time) and left
/// glibc holding 150–250 MiB after a few logins. One buffer per thread would hold two per slot
/// under `auto` (its normal-class and idle-class threads); leasing holds as many as ran at once,
/// normally `threads`. argon2 overwrites every block it reads, so a buffer needs no clearing
/// between runs.
#[derive(Debug, Default)]
pub(super) struct Buffers(Mutex<Vec<Vec<Block>>>);

impl Buffers {
    /// A buffer of at least `blocks` blocks (stored hashes are bounded by
    /// [`HashConfig::max_params`](crate::config::HashConfig::max_params) before they get
    /// here), returned to the pool when dropped.
    pub(super) fn lease(&self, blocks: usize) -> Lease<'_> {
        let mut memory = self.lock().pop().unwrap_or_default();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        Lease { pool: self, memory }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Vec<Vec<Block>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A leased buffer.
pub(super) struct Lease<'a> {
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
pub(super) struct ThreadHasher {
    argon2: Argon2<'static>,
    buffers: Arc<Buffers>,
}

impl ThreadHasher {
    pub(super) fn new(argon2: Argon2<'static>, buffers: Arc<Buffers>) -> Self {
        Self { argon2, buffers }
    }

    /// A PHC string of `password` with the configured parameters and a fresh random salt.
    pub(super) fn hash(&mut self, password: &[u8]) -> Result<String, HashError> {
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
    pub(super) fn verify(&mut self, password: &[u8], phc: &str) -> Result<bool, HashError> {
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
pub(super) fn stored_params(phc: &str) -> Result<HashParams, HashError> {
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

pub(super) fn argon2_for(p: &HashParams) -> Result<Argon2<'static>, HashError> {
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, None)
        .map_err(|e| HashError::Params(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}
