//! Fuzzes the request decoder and validator through the real dispatcher: the first byte picks
//! the operation, the rest is the body. A panic, or a rejection that is not a documented error
//! code (or is `internal`), is a finding.
#![no_main]

use authq_protocol::{ErrorCode, Operation};
use authq_worker::config::{Config, HashConfig};
use authq_worker::handlers::{self, Ctx};
use authq_worker::hashing::HashPool;
use authq_worker::keys::ServerKey;
use authq_worker::store::{Store, StoreLocation};
use authq_worker::{ManualClock, Metrics, startup};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

struct World {
    ctx: Ctx,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            hashing: HashConfig::insecure_fast_for_tests(),
            ..Config::default()
        };
        let metrics = Arc::new(Metrics::default());
        let store = Store::open(&StoreLocation::Sqlite(dir.path().join("authq.db")), 2).unwrap();
        let hasher = HashPool::start(&config.hashing, Arc::clone(&metrics)).unwrap();
        World {
            ctx: startup::context(
                Arc::new(config),
                store,
                &ServerKey::from_bytes([7; 32]),
                hasher,
                Arc::new(ManualClock::new()),
                metrics,
            )
            .unwrap(),
            // As the proptest pass: one worker thread, so the store's blocking calls run beside.
            runtime: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap(),
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let op = Operation::ALL[usize::from(pick) % Operation::ALL.len()];
    let w = world();
    if let Err(e) = w.runtime.block_on(handlers::dispatch(&w.ctx, op, body, None, None)) {
        let code = e.code();
        assert!(ErrorCode::ALL.contains(&code) && code != ErrorCode::Internal, "{op}: {e}");
    }
});
