//! A bounded property-based pass over the request decoder and validator, through the real
//! `handlers::dispatch` (real SQLite store, real argon2 pool with cheap parameters): whatever
//! the bytes, no panic, and every rejection is one of the protocol's documented error codes —
//! never `internal` — whose message does not echo the secret it was given.
//!
//! `fuzz/` holds the same target for `cargo fuzz` (unbounded, nightly).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use authq_protocol::{ErrorCode, Operation};
use authq_worker::config::{Config, HashConfig};
use authq_worker::handlers::{self, Ctx};
use authq_worker::hashing::HashPool;
use authq_worker::keys::ServerKey;
use authq_worker::store::{Store, StoreLocation};
use authq_worker::{ManualClock, Metrics, startup};
use proptest::prelude::*;
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
            admin_callers: vec!["ops".into()],
            ..Config::default()
        };
        let metrics = Arc::new(Metrics::default());
        let store = Store::open(&StoreLocation::Sqlite(dir.path().join("authq.db")), 4).unwrap();
        let hasher = HashPool::start(&config.hashing, Arc::clone(&metrics)).unwrap();
        let ctx = startup::context(
            Arc::new(config),
            store,
            &ServerKey::from_bytes([7; 32]),
            hasher,
            Arc::new(ManualClock::new()),
            metrics,
        )
        .unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        World {
            ctx,
            runtime,
            _dir: dir,
        }
    })
}

/// Runs one request through the real dispatcher; checks the outcome is a documented one.
fn check(op: Operation, body: &[u8], secret: Option<&str>) -> Result<(), TestCaseError> {
    let w = world();
    let outcome = w
        .runtime
        .block_on(async { handlers::dispatch(&w.ctx, op, body, None, None).await });
    if let Err(e) = outcome {
        let code = e.code();
        prop_assert!(
            ErrorCode::ALL.contains(&code) && code != ErrorCode::Internal,
            "{op}: undocumented or internal rejection {code}: {e}"
        );
        if let Some(s) = secret.filter(|s| s.len() >= 4) {
            prop_assert!(
                !e.public_message().contains(s),
                "{op}: the message echoes the secret"
            );
        }
    }
    Ok(())
}

fn operation() -> impl Strategy<Value = Operation> {
    proptest::sample::select(Operation::ALL.to_vec())
}

/// A JSON value of any shape, biased towards what requests hold.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        "[a-z]{1,8}@[a-z]{1,8}\\.[a-z]{2,3}".prop_map(Value::String),
        "\\PC{0,300}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: &[&str] = &[
    "email",
    "password",
    "old_password",
    "new_password",
    "code",
    "token",
    "session",
    "profile",
    "mode",
    "user",
    "user_id",
    "client_ip",
];

/// An object with request-like field names and arbitrary values.
fn request_like() -> impl Strategy<Value = (serde_json::Value, Option<String>)> {
    (
        proptest::collection::btree_map(
            proptest::sample::select(FIELDS.to_vec()),
            json_value(),
            0..6,
        ),
        "[A-Za-z0-9]{6,20}",
    )
        .prop_map(|(fields, secret)| {
            let mut map: serde_json::Map<String, serde_json::Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            // Sometimes a well-typed secret, to check it is never echoed.
            let with_secret = secret.len() % 2 == 0;
            if with_secret {
                map.insert("password".into(), serde_json::Value::String(secret.clone()));
            }
            (
                serde_json::Value::Object(map),
                with_secret.then_some(secret),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic_and_get_a_documented_code(
        op in operation(),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        check(op, &body, None)?;
    }

    #[test]
    fn request_shaped_json_never_panics_and_gets_a_documented_code(
        op in operation(),
        (value, secret) in request_like(),
    ) {
        let body = serde_json::to_vec(&value).unwrap();
        check(op, &body, secret.as_deref())?;
    }
}
