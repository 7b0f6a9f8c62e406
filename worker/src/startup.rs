//! The composition root: the one place a worker's parts are opened and the handlers' context
//! ([`Ctx`]) is assembled. The pool, the proptest pass and the fuzz target all build their
//! context with [`context`], so none of them wires a field by hand.

use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::crypto::CodeKey;
use crate::error::WorkerError;
use crate::events::EventSink;
use crate::handlers::Ctx;
use crate::hashing::HashPool;
use crate::idempotency::Sealing;
use crate::keys::ServerKey;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::social::Social;
use crate::store::{Renewal, Store};
use std::sync::Arc;

/// What a worker opens before it can serve: the store, the server key and the argon2 pool.
#[derive(Debug)]
pub struct Opened {
    /// The user store, migrated.
    pub store: Store,
    /// The server key every sealing and code key is derived from.
    pub server_key: ServerKey,
    /// The argon2 pool, started.
    pub hasher: HashPool,
}

/// Opens the store, loads (or creates) the server key and starts the argon2 pool, each on the
/// blocking pool (they touch files and spawn threads).
pub async fn open(config: &Config, metrics: &Arc<Metrics>) -> Result<Opened, WorkerError> {
    let (location, size) = (config.database.clone(), config.store_pool_size);
    let busy = config.store_busy_timeout;
    let store = blocking(move || Store::open_with(&location, size, busy)).await??;
    // `Config::validate` refused a configuration without a key path.
    let path = config.key_path().unwrap_or_default();
    let server_key = blocking(move || ServerKey::load_or_create(&path)).await??;
    let (hashing, metrics) = (config.hashing.clone(), Arc::clone(metrics));
    let hasher = blocking(move || HashPool::start(&hashing, metrics)).await??;
    Ok(Opened {
        store,
        server_key,
        hasher,
    })
}

/// The handlers' context: every key derived from `server_key`, the policies and social login
/// built from `config`, store calls bounded by the store's pool size.
pub fn context(
    config: Arc<Config>,
    store: Store,
    server_key: &ServerKey,
    hasher: HashPool,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
) -> Result<Ctx, ConfigError> {
    Ok(Ctx {
        store: Arc::new(store),
        hasher,
        clock,
        metrics,
        renewal: Renewal::from_policy(&config.sessions),
        store_permits: Arc::new(tokio::sync::Semaphore::new(config.store_pool_size as usize)),
        sealing: Arc::new(Sealing::new(server_key)),
        events: Arc::new(EventSink::new(server_key)),
        policy: Arc::new(Policy::new(config.policy.clone())),
        code_key: CodeKey::from_server_key(server_key),
        mfa_sealer: crate::handlers::mfa::sealer(server_key),
        social: Arc::new(Social::new(config.social.clone(), server_key)?),
        tokens: Arc::new(crate::tokens::Tokens::new(
            config.tokens.clone(),
            server_key,
        )),
        config,
    })
}

/// Runs `f` on the blocking pool; a task that died is [`WorkerError::Join`].
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, WorkerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| WorkerError::Join(e.to_string()))
}
