//! What an operator sees: `/metrics` scraped with a real HTTP client and parsed as Prometheus
//! text, `/livez`, and `/readyz` following the broker.

use crate::harness::{TestEnv, assert_code};
use crate::private_broker::PrivateBroker;
use authq::ErrorCode;
use std::collections::HashMap;
use std::time::Duration;

/// One scrape: each sample's value by its name and sorted labels.
struct Scrape(HashMap<(String, Vec<(String, String)>), f64>);

impl Scrape {
    async fn of(http: &reqwest::Client, addr: std::net::SocketAddr) -> Self {
        let text = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .expect("/metrics answers")
            .text()
            .await
            .unwrap();
        let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .expect("the exposition parses");
        let mut samples = HashMap::new();
        for s in parsed.samples {
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(buckets) => {
                    // The `+Inf` bucket: the histogram's count.
                    buckets.last().map_or(0.0, |b| b.count)
                }
                prometheus_parse::Value::Summary(_) => continue,
            };
            for (k, v) in &labels {
                // Bounded label sets: nothing a caller chose.
                assert!(!v.contains('@'), "label {k}={v}");
            }
            samples.insert((s.metric, labels), value);
        }
        Self(samples)
    }

    /// The sample `name{labels}`, 0 if absent.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        self.0
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0.0)
    }
}

/// Scrapes until `done` holds (bounded polling: counters move just after each reply).
async fn scrape_when(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    done: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let mut last = None;
    for _ in 0..300 {
        let scrape = Scrape::of(http, addr).await;
        if done(&scrape) {
            return scrape;
        }
        last = Some(scrape);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut seen: Vec<_> = last.map(|s| s.0.into_iter().collect()).unwrap_or_default();
    seen.sort_by(|a: &(_, f64), b| a.0.cmp(&b.0));
    panic!("the scrape never showed what was expected; the last one: {seen:?}");
}

/// An HTTP client whose requests fail past `timeout`.
fn http(timeout: Duration) -> reqwest::Client {
    // reqwest is built without a default TLS provider (plain HTTP here, but it asks).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(timeout).build().unwrap()
}

fn observed_env_config(c: &mut authq_worker::Config) {
    c.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_each_request_by_operation_and_outcome() {
    let env = TestEnv::start_with(observed_env_config).await;
    let addr = env.worker().metrics_addr().expect("an address");
    let http = http(Duration::from_secs(10));

    let session = env
        .session("ann@example.com", "correct horse battery")
        .await;
    for _ in 0..3 {
        env.client.check(&session).await.unwrap();
    }
    for _ in 0..2 {
        assert_code(
            env.client.check("not-a-session").await,
            ErrorCode::SessionInvalid,
        );
    }
    assert_code(
        env.client
            .login("ann@example.com", "wrong password!!")
            .await,
        ErrorCode::InvalidCredentials,
    );
    // An operation nobody serves (its routing key never becomes a label), and a body that is
    // not JSON.
    for (op, body) in [
        ("frobnicate-ann@example.com", &b"{}"[..]),
        ("check", b"{oops"),
    ] {
        env.client
            .call_raw(op, body, Duration::from_secs(10))
            .await
            .unwrap();
    }

    let check = [("operation", "check")];
    let s = scrape_when(&http, addr, |s| {
        s.get("authq_request_duration_seconds", &check) >= 6.0
            && s.get("authq_ready", &[]) == 1.0
            && s.get("authq_tube_consumers", &[("tube", "session")]) >= 1.0
    })
    .await;
    let requests = |op: &str, outcome: &str| {
        s.get(
            "authq_requests_total",
            &[("operation", op), ("outcome", outcome)],
        )
    };
    assert_eq!(requests("check", "ok"), 3.0);
    assert_eq!(requests("check", "session_invalid"), 2.0);
    assert_eq!(requests("login", "ok"), 1.0);
    assert_eq!(requests("login", "invalid_credentials"), 1.0);
    assert_eq!(requests("register", "ok"), 1.0);
    assert_eq!(requests("confirm_registration", "ok"), 1.0);
    assert_eq!(requests("logout", "ok"), 0.0, "made, never used");
    assert_eq!(requests("unknown", "unknown_operation"), 1.0);
    assert_eq!(requests("check", "bad_request"), 1.0);
    assert_eq!(s.get("authq_request_duration_seconds", &check), 6.0);
    // Three argon2 runs: the confirmation's hash and two logins.
    assert_eq!(s.get("authq_argon2_runs_total", &[]), 3.0);
    assert_eq!(s.get("authq_argon2_wait_seconds", &[]), 3.0);
    assert_eq!(s.get("authq_argon2_queue_depth", &[]), 0.0);
    assert_eq!(s.get("authq_requests_in_flight", &[]), 0.0);
    assert!(s.get("authq_store_call_duration_seconds", &[]) >= 8.0);
    assert_eq!(s.get("authq_store_errors_total", &[]), 0.0);
    for tube in ["session", "password", "account"] {
        assert_eq!(
            s.get("authq_tube_messages", &[("tube", tube)]),
            0.0,
            "{tube}"
        );
        assert!(s.get("authq_tube_consumers", &[("tube", tube)]) >= 1.0);
    }
    // The registration's and the login's events were relayed.
    assert_eq!(s.get("authq_outbox_backlog", &[]), 0.0);
    assert_eq!(
        s.get("authq_stage_runs_total", &[("stage", "total")]),
        env.metrics().stages.total.count as f64
    );

    for path in ["livez", "readyz"] {
        let r = http
            .get(format!("http://{addr}/{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "/{path}");
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_while_the_broker_is_down_and_200_when_it_is_back() {
    let _turn = crate::private_broker::one_at_a_time();
    let broker = PrivateBroker::start();
    let url = broker.amqp_url();
    let env = TestEnv::start_with(|c| {
        observed_env_config(c);
        c.amqp_url = url.clone();
    })
    .await;
    let addr = env.worker().metrics_addr().expect("an address");
    // Each probe must answer promptly even with the broker down: a probe that hangs fails.
    let http = http(Duration::from_secs(2));
    let readyz = async || {
        let r = http
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .expect("/readyz answers promptly");
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let until = async |status: u16| {
        for _ in 0..1200 {
            let (got, body) = readyz().await;
            if got == status {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("/readyz never answered {status}");
    };
    until(200).await;
    broker.stop_app();
    let why = until(503).await;
    assert!(why.contains("broker"), "{why}");
    let live = http
        .get(format!("http://{addr}/livez"))
        .send()
        .await
        .expect("/livez answers promptly");
    assert_eq!(live.status(), 200);
    broker.start_app();
    // The same process, reconnected.
    until(200).await;
    assert!(env.metrics().reconnects >= 1);
    env.client.ping().await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_a_live_pool_in_a_pipe() {
    let env = TestEnv::start_with(observed_env_config).await;
    let addr = env.worker().metrics_addr().expect("an address");
    let session = env
        .session("ann@example.com", "correct horse battery")
        .await;
    let top = tokio::process::Command::new(env!("CARGO_BIN_EXE_authq"))
        .args(["top", "--metrics", &addr.to_string()])
        .args(["--interval", "300ms", "--count", "6"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("authq top starts");
    // Checks flow (and one fails) while top watches.
    let output = {
        let client = env.client.clone();
        let drive = tokio::spawn(async move {
            loop {
                client.check(&session).await.unwrap();
                let _ = client.check("not-a-session").await;
            }
        });
        let output = top.wait_with_output().await.unwrap();
        drive.abort();
        output
    };
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<HashMap<&str, &str>> = text
        .lines()
        .map(|l| l.split(' ').filter_map(|kv| kv.split_once('=')).collect())
        .collect();
    assert_eq!(lines.len(), 6, "one line per interval in a pipe:\n{text}");
    for line in &lines {
        assert_eq!(line["endpoints"], "1/1", "{text}");
        assert!(line["session.consumers"].parse::<f64>().unwrap() >= 1.0);
    }
    // Some interval saw checks answered, and errors among them, with their latency.
    let busy = lines
        .iter()
        .find(|l| {
            l.get("check.rate")
                .is_some_and(|r| r.parse::<f64>().unwrap() > 0.0)
        })
        .unwrap_or_else(|| panic!("no interval saw checks:\n{text}"));
    assert!(busy["check.errors"].parse::<f64>().unwrap() > 0.0, "{text}");
    assert!(busy["check.p99_ms"].parse::<f64>().unwrap() > 0.0, "{text}");
    assert!(busy["session.rate"].parse::<f64>().unwrap() > 0.0, "{text}");
    env.stop().await;
}
