//! Integration tests: a real RabbitMQ, a real SQLite file, the real worker, driven through the
//! client library (and, in `cli`, through the built `authq` binary).
//!
//! One test binary (faster to build and link than one per file). Each test gets its own
//! namespace and database, so tests run in parallel on one broker. Set `TEST_LOG=1` to see the
//! worker's logs. A missing broker fails every test with the command that starts it.

// Tests assert by panicking; the lint wall is for library code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;
mod idempotency;
mod observe;
mod private_broker;

mod account;
mod admin_cli;
mod backpressure;
mod bench;
mod broker;
mod callers;
mod cli;
mod clients;
mod cluster;
mod concurrency;
mod conformance;
mod crashes;
mod events;
mod faults;
mod flood;
mod hosts;
mod import;
mod lifecycle;
mod mfa;
mod permissions;
mod poison;
mod policy;
mod provider;
mod refresh;
mod schemas;
mod security;
mod service_clients;
mod session_list;
mod sessions;
mod shadow;
mod shutdown;
mod social;
mod tls;
mod tokens;
mod topology;
