//! `authq bench` smoke test: every scenario runs briefly against a spawned pool, and the counts
//! add up (every request answered, no error, the backlog fully drained). No duration is
//! asserted: speed is the benchmark's business, not the test suite's.

use crate::harness::amqp_url;
use serde_json::Value;
use std::process::Command;

const AUTHQ: &str = env!("CARGO_BIN_EXE_authq");

/// Runs `authq bench SCENARIO --spawn` with tiny counts and returns its JSON report.
fn bench(scenario: &str, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = Command::new(AUTHQ)
        .args(["bench", scenario, "--spawn", "--requests", "40"])
        .args(["--in-flight", "8", "--users", "2", "--flood-in-flight", "4"])
        .args(["--timeout", "30s"])
        .arg("--json")
        .arg(&json)
        .args(extra)
        .env("AUTHQ_AMQP_URL", amqp_url())
        .output()
        .expect("authq bench runs");
    assert!(
        out.status.success(),
        "authq bench {scenario}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let scenarios = report["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 1);
    assert_eq!(scenarios[0]["scenario"], scenario);
    scenarios[0].clone()
}

/// Every stream: each request answered, without an error reply.
fn assert_counts_add_up(scenario: &Value) -> Vec<(String, u64)> {
    let streams = scenario["streams"].as_array().unwrap();
    assert!(!streams.is_empty());
    let mut seen = Vec::new();
    for s in streams {
        let name = s["name"].as_str().unwrap().to_owned();
        let requests = s["requests"].as_u64().unwrap();
        assert!(requests > 0, "{name}: no request made");
        assert_eq!(s["replies"].as_u64(), Some(requests), "{name}: {s}");
        assert_eq!(s["unanswered"].as_u64(), Some(0), "{name}: {s}");
        assert_eq!(s["errors"], serde_json::json!({}), "{name}: {s}");
        seen.push((name, requests));
    }
    // The spawned worker reported its CPU time, memory and per-stage timings.
    let worker = &scenario["worker"];
    assert!(worker["peak_rss_kib"].as_u64().unwrap() > 0, "{worker}");
    assert!(
        worker["metrics"]["stages"]["total"]["count"]
            .as_u64()
            .unwrap()
            > 0
    );
    seen
}

fn count_of(seen: &[(String, u64)], name: &str) -> u64 {
    seen.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no stream {name} in {seen:?}"))
        .1
}

#[test]
fn ping_runs_against_the_echo_ceiling() {
    let report = bench("ping", &[]);
    let seen = assert_counts_add_up(&report);
    assert_eq!(count_of(&seen, "echo ceiling"), 40);
    assert_eq!(count_of(&seen, "raw client (confirms)"), 40);
    assert_eq!(count_of(&seen, "ping"), 40);
    assert!(
        report["figures"]["client_over_raw_client"]["value"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    // CPU is read in 10 ms ticks: 40 calls may well show none, so only its presence is checked.
    assert!(report["figures"]["client_cpu_over_raw_client_cpu"]["value"].is_number());
    // Every ping reached the worker and was answered by it.
    let metrics = &report["worker"]["metrics"];
    assert!(metrics["replied_ok"].as_u64().unwrap() >= 40, "{metrics}");
}

#[test]
fn the_raw_client_runs_without_confirms_on_request() {
    let seen = assert_counts_add_up(&bench("ping", &["--raw-client-without-confirms"]));
    assert_eq!(count_of(&seen, "raw client (no confirms)"), 40);
}

#[test]
fn the_raw_client_sends_the_authq_client_s_properties_on_request() {
    let report = bench("ping", &["--raw-client-with-authq-properties"]);
    let seen = assert_counts_add_up(&report);
    // The echo answered every one: the broker took its user_id, deadline and expiration.
    assert_eq!(count_of(&seen, "raw client (authq properties)"), 40);
    assert!(report["figures"]["client_over_raw_client"]["value"].is_number());
}

#[test]
fn ping_also_runs_against_an_echo_inside_the_bench() {
    // The default echo is a process of its own, like the pool; this is the other placement.
    let report = bench("ping", &["--echo-in-process"]);
    let seen = assert_counts_add_up(&report);
    assert_eq!(count_of(&seen, "echo ceiling"), 40);
    assert_eq!(count_of(&seen, "ping"), 40);
}

#[test]
fn check_runs_against_the_echo_ceiling_and_the_raw_best_case_echo() {
    let report = bench("check", &[]);
    let seen = assert_counts_add_up(&report);
    assert_eq!(count_of(&seen, "check"), 40);
    assert_eq!(count_of(&seen, "echo ceiling"), 40);
    assert_eq!(count_of(&seen, "raw echo (best case)"), 40);
    for figure in ["check_over_raw_echo", "check_p99_over_raw_echo_p99"] {
        assert!(
            report["figures"][figure]["value"].as_f64().unwrap() > 0.0,
            "{figure}"
        );
    }
}

#[test]
fn login_runs_against_the_argon2_ceiling() {
    let report = bench("login", &[]);
    let seen = assert_counts_add_up(&report);
    assert_eq!(count_of(&seen, "login"), 40);
    // 2 users: 2 hashes and 2 logins of set-up, then 40 logins; each one argon2 run.
    let metrics = &report["worker"]["metrics"];
    assert_eq!(
        metrics["argon2_runs"].as_u64(),
        Some(2 + 2 + 40),
        "{metrics}"
    );
}

#[test]
fn mixed_runs() {
    let seen = assert_counts_add_up(&bench("mixed", &[]));
    assert_eq!(count_of(&seen, "mixed"), 40);
}

#[test]
fn flood_measures_checks_alone_and_under_a_login_flood() {
    let report = bench("flood", &[]);
    let seen = assert_counts_add_up(&report);
    assert_eq!(count_of(&seen, "check alone"), 40);
    assert_eq!(count_of(&seen, "check (flood)"), 40);
    assert_eq!(count_of(&seen, "echo (flood)"), 40);
    assert!(count_of(&seen, "login (flood)") > 0);
    assert!(report["figures"]["check_p99_flood_over_alone"]["value"].is_number());
    assert!(report["figures"]["echo_p99_flood_over_alone"]["value"].is_number());
}

#[test]
fn latency_measures_one_call_in_flight_against_the_echo() {
    let report = bench("latency", &[]);
    let seen = assert_counts_add_up(&report);
    assert_eq!(count_of(&seen, "ping (1)"), 40);
    assert_eq!(count_of(&seen, "check (1)"), 40);
    assert_eq!(count_of(&seen, "echo (check, 1)"), 40);
    assert_eq!(count_of(&seen, "raw echo (check, 1)"), 40);
    assert_eq!(count_of(&seen, "raw client (check, 1)"), 40);
    for figure in [
        "client_p50_over_raw_client_p50_ping_round",
        "ping_p50_over_echo_p50",
        "ping_p99_over_echo_p99",
        "check_p50_over_echo_p50",
        "check_p99_over_echo_p99",
        "check_p50_over_raw_echo_p50",
        "check_p99_over_raw_echo_p99",
    ] {
        assert!(
            report["figures"][figure]["value"].as_f64().unwrap() > 0.0,
            "{figure}"
        );
    }
}

#[test]
fn backlog_is_drained_completely() {
    let report = bench("backlog", &["--backlog", "500"]);
    let seen = assert_counts_add_up(&report);
    assert_eq!(count_of(&seen, "steady check"), 40);
    assert_eq!(count_of(&seen, "backlog drain"), 500);
    assert_eq!(
        report["figures"]["backlog_published"]["value"].as_f64(),
        Some(500.0)
    );
    // The restarted worker answered every one of them.
    let metrics = &report["worker"]["metrics"];
    assert_eq!(metrics["replied_ok"].as_u64(), Some(500), "{metrics}");
}

#[test]
fn backlog_without_spawn_is_refused() {
    let out = Command::new(AUTHQ)
        .args(["bench", "backlog", "--namespace", "authq-test-nobody"])
        .env("AUTHQ_AMQP_URL", amqp_url())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--spawn"));
}

#[test]
fn verify_runs_check_beside_local_token_verification() {
    // The spawned pool gets --access-tokens for this scenario.
    let report = bench("verify", &[]);
    let seen = assert_counts_add_up(&report);
    assert_eq!(count_of(&seen, "check (broker)"), 40);
    assert_eq!(count_of(&seen, "verify (local, 1 thread)"), 40);
    for figure in ["verify_per_s_one_thread", "verify_over_check"] {
        assert!(
            report["figures"][figure]["value"].as_f64().unwrap() > 0.0,
            "{figure}"
        );
    }
}

#[test]
fn client_secret_compares_argon2_with_the_keyed_digest() {
    let report = bench("client-secret", &[]);
    for figure in [
        "argon2_per_s_one_thread",
        "hmac_per_s_one_thread",
        "hmac_over_argon2",
    ] {
        assert!(
            report["figures"][figure]["value"].as_f64().unwrap() > 0.0,
            "{figure}"
        );
    }
}
