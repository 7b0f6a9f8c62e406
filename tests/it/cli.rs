//! The built `authq` binary: `authq serve` as a child process, the README's walk-through with
//! `authq call`, exit statuses, and a clean exit on SIGTERM.

use crate::harness::{TestStore, amqp_url, unique_namespace};
use serde_json::Value;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const AUTHQ: &str = env!("CARGO_BIN_EXE_authq");

struct Serve {
    child: Child,
    namespace: String,
    _store: TestStore,
    _dir: tempfile::TempDir,
}

impl Serve {
    fn start() -> Self {
        Self::start_with(|_| {})
    }

    fn start_with(adjust: impl FnOnce(&mut Command)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let namespace = unique_namespace();
        let mut command = Command::new(AUTHQ);
        let store = TestStore::new(dir.path());
        command
            .args(["serve", "--namespace", &namespace, "--queue-expires", "10m"])
            .args(&store.args)
            .env("AUTHQ_AMQP_URL", amqp_url());
        adjust(&mut command);
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("authq serve starts");
        let serve = Self {
            child,
            namespace,
            _store: store,
            _dir: dir,
        };
        // Bounded generously: a debug build starting beside a loaded CI run (migrations, the
        // argon2 pool's dummy hash) has taken more than 15 s.
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while std::time::Instant::now() < deadline {
            if serve.call("ping", "{}", "1s").status.code() == Some(0) {
                return serve;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("authq serve did not answer ping within 90 s");
    }

    fn call(&self, op: &str, json: &str, timeout: &str) -> Output {
        Command::new(AUTHQ)
            .args([
                "call",
                "--namespace",
                &self.namespace,
                "--timeout",
                timeout,
                op,
                json,
            ])
            .env("AUTHQ_AMQP_URL", amqp_url())
            .output()
            .expect("authq call runs")
    }

    /// Runs `authq call`, checks its exit status, returns the reply's JSON.
    #[track_caller]
    fn expect(&self, op: &str, json: &str, status: i32) -> Value {
        let out = self.call(op, json, "20s");
        assert_eq!(
            out.status.code(),
            Some(status),
            "authq call {op} {json}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("stdout is the reply JSON")
    }

    fn terminate(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let out = self.child.wait_with_output_bounded();
        (out.0, out.1)
    }
}

trait WaitBounded {
    fn wait_with_output_bounded(&mut self) -> (Option<i32>, String);
}

impl WaitBounded for Child {
    fn wait_with_output_bounded(&mut self) -> (Option<i32>, String) {
        for _ in 0..120 {
            if let Some(status) = self.try_wait().unwrap() {
                let mut stderr = String::new();
                if let Some(mut e) = self.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut stderr);
                }
                return (status.code(), stderr);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let _ = self.kill();
        panic!("authq serve did not exit within 30 s of SIGTERM");
    }
}

#[test]
fn the_readme_walk_through_works_with_the_binary() {
    let serve = Serve::start();

    let reg = serve.expect("register", r#"{"email":"ann@example.com"}"#, 0);
    assert_eq!(reg["status"], "ok");
    let code = reg["data"]["code"].as_str().unwrap().to_owned();

    let confirmed = serve.expect(
        "confirm_registration",
        &format!(
            r#"{{"email":"ann@example.com","code":"{code}","password":"correct horse battery"}}"#
        ),
        0,
    );
    assert_eq!(confirmed["data"]["user"]["state"], "active");

    let login = serve.expect(
        "login",
        r#"{"email":"ann@example.com","password":"correct horse battery"}"#,
        0,
    );
    let session = login["data"]["session"].as_str().unwrap().to_owned();

    let check = serve.expect("check", &format!(r#"{{"session":"{session}"}}"#), 0);
    assert_eq!(check["data"]["user"]["email"], "ann@example.com");

    let bye = serve.expect("logout", &format!(r#"{{"session":"{session}"}}"#), 0);
    assert_eq!(bye, serde_json::json!({"status": "ok", "data": {}}));

    let after = serve.expect("check", &format!(r#"{{"session":"{session}"}}"#), 1);
    assert_eq!(after["error"]["code"], "session_invalid");

    let wrong = serve.expect(
        "login",
        r#"{"email":"ann@example.com","password":"not the password"}"#,
        1,
    );
    assert_eq!(wrong["error"]["code"], "invalid_credentials");

    let unknown = serve.expect("frobnicate", "{}", 1);
    assert_eq!(unknown["error"]["code"], "unknown_operation");

    let malformed = serve.expect("login", "{not json", 1);
    assert_eq!(malformed["error"]["code"], "bad_request");

    let namespace = serve.namespace.clone();
    let (status, stderr) = serve.terminate();
    assert_eq!(status, Some(0), "authq serve exits 0 on SIGTERM: {stderr}");
    assert!(stderr.contains("worker stopped"), "{stderr}");

    // No worker any more: no reply in time → exit 2, reason on stderr.
    let out = Command::new(AUTHQ)
        .args([
            "call",
            "--namespace",
            &namespace,
            "--timeout",
            "500ms",
            "ping",
        ])
        .env("AUTHQ_AMQP_URL", amqp_url())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no reply within"));

    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(crate::harness::delete_namespace(&amqp_url(), &namespace));
}

#[test]
fn call_exits_2_with_the_reason_when_the_broker_is_unreachable() {
    let out = Command::new(AUTHQ)
        .args(["call", "--amqp-url", "amqp://127.0.0.1:1/%2f", "ping"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rabbitmq-server -detached"), "{stderr}");
}

#[test]
fn every_subcommand_explains_every_flag() {
    for sub in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["call", "--help"],
    ] {
        let out = Command::new(AUTHQ).args(&sub).output().unwrap();
        assert!(out.status.success(), "{sub:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Usage:"), "{help}");
    }
    let serve = String::from_utf8_lossy(
        &Command::new(AUTHQ)
            .args(["serve", "--help"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    for flag in [
        "--amqp-url",
        "--namespace",
        "--database",
        "--session-prefetch",
        "--hash-threads",
    ] {
        assert!(serve.contains(flag), "serve --help lacks {flag}");
    }
    assert!(
        !serve.contains("guest:guest"),
        "serve --help must not print the default password"
    );
}

#[test]
fn serve_reads_social_providers_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    // A provider with a plain-http URL off loopback is refused at start-up, without echoing
    // the secret.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        r#"[social.providers.corp]
           authorization_url = "http://sso.corp.example/authorize"
           token_url = "https://sso.corp.example/token"
           userinfo_url = "https://sso.corp.example/userinfo"
           client_id = "c"
           client_secret = "s3cr3t-value"
           redirect_uri = "https://app.example/cb""#,
    )
    .unwrap();
    let out = Command::new(AUTHQ)
        .args(["serve", "--namespace", &unique_namespace(), "--config"])
        .arg(&bad)
        .arg("--database")
        .arg(dir.path().join("never.db"))
        .env("AUTHQ_AMQP_URL", amqp_url())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("authorization_url"), "{stderr}");
    assert!(!stderr.contains("s3cr3t-value"), "{stderr}");

    // A good one through AUTHQ_CONFIG, its secrets from a file and the environment.
    let key = dir.path().join("social.key");
    std::fs::write(&key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
    let good = dir.path().join("authq.toml");
    std::fs::write(
        &good,
        format!(
            r#"[social]
               key_file = "{}"
               [social.providers.corp]
               authorization_url = "https://sso.corp.example/authorize"
               token_url = "https://sso.corp.example/token"
               userinfo_url = "https://sso.corp.example/userinfo"
               client_id = "authq"
               client_secret_env = "CORP_SECRET"
               redirect_uri = "https://app.example/cb""#,
            key.display()
        ),
    )
    .unwrap();
    let serve = Serve::start_with(|c| {
        c.env("AUTHQ_CONFIG", &good).env("CORP_SECRET", "from-env");
    });
    let reply = serve.expect("social_url", r#"{"provider":"corp"}"#, 0);
    let url = reply["data"]["url"].as_str().unwrap();
    assert!(
        url.starts_with("https://sso.corp.example/authorize?"),
        "{url}"
    );
    assert!(url.contains("state="), "{url}");
    let unknown = serve.expect("social_url", r#"{"provider":"nope"}"#, 1);
    assert_eq!(unknown["error"]["code"], "unknown_provider");
    let namespace = serve.namespace.clone();
    let (status, stderr) = serve.terminate();
    assert_eq!(status, Some(0), "{stderr}");
    assert!(
        !stderr.contains("from-env"),
        "the client secret is never logged"
    );
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(crate::harness::delete_namespace(&amqp_url(), &namespace));
}

#[test]
fn authq_events_prints_events_as_they_happen() {
    let serve = Serve::start();
    let mut events = Command::new(AUTHQ)
        .args(["events", "--namespace", &serve.namespace, "--count", "3"])
        .env("AUTHQ_AMQP_URL", amqp_url())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("authq events starts");
    // Wait until it has bound its queue.
    let mut stderr = std::io::BufReader::new(events.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    assert!(line.contains("listening on"), "{line}");

    let reg = serve.expect("register", r#"{"email":"eve@example.com"}"#, 0);
    let code = reg["data"]["code"].as_str().unwrap().to_owned();
    serve.expect(
        "confirm_registration",
        &format!(
            r#"{{"email":"eve@example.com","code":"{code}","password":"correct horse battery"}}"#
        ),
        0,
    );
    serve.expect(
        "login",
        r#"{"email":"eve@example.com","password":"wrong one!"}"#,
        1,
    );
    serve.expect(
        "login",
        r#"{"email":"eve@example.com","password":"correct horse battery"}"#,
        0,
    );
    let out = events.wait_with_output_bounded_stdout();
    let types: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    // The secret-bearing user.registered is not bound by default.
    assert_eq!(
        types,
        [
            "user.confirmed",
            "auth.login.failed",
            "auth.login.succeeded"
        ]
    );
    serve.terminate();
}

trait WaitStdout {
    fn wait_with_output_bounded_stdout(self) -> Vec<u8>;
}

impl WaitStdout for Child {
    fn wait_with_output_bounded_stdout(mut self) -> Vec<u8> {
        for _ in 0..120 {
            if self.try_wait().unwrap().is_some() {
                return self.wait_with_output().unwrap().stdout;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let _ = self.kill();
        panic!("authq events did not exit within 30 s");
    }
}

/// The scheduling policy (`/proc/<pid>/task/<tid>/stat`, field 41) of every argon2 thread of a
/// running `authq serve`, by thread name.
fn argon2_thread_policies(pid: u32) -> Vec<(String, u32)> {
    let mut policies = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if !comm.starts_with("authq-argon2") {
            continue;
        }
        let stat = std::fs::read_to_string(task.join("stat")).unwrap();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        policies.push((comm.trim().to_owned(), fields[41 - 3].parse().unwrap()));
    }
    policies.sort();
    policies
}

#[test]
fn argon2_threads_run_in_both_classes_by_default_or_in_the_one_asked_for() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_IDLE: u32 = 5;
    let threads = |names: &[(&str, u32)]| -> Vec<(String, u32)> {
        names.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect()
    };
    // auto: a normal-class ("foreground") and an idle-class ("background") thread per slot.
    let serve = Serve::start_with(|c| {
        c.args(["--hash-threads", "2"]);
    });
    assert_eq!(
        argon2_thread_policies(serve.child.id()),
        threads(&[
            ("authq-argon2-b0", SCHED_IDLE),
            ("authq-argon2-b1", SCHED_IDLE),
            ("authq-argon2-f0", SCHED_OTHER),
            ("authq-argon2-f1", SCHED_OTHER),
        ])
    );
    let (status, stderr) = serve.terminate();
    assert_eq!(status, Some(0), "{stderr}");
    assert!(!stderr.contains("cannot lower"), "{stderr}");

    let serve = Serve::start_with(|c| {
        c.args(["--hash-threads", "2", "--hash-priority", "idle"]);
    });
    assert_eq!(
        argon2_thread_policies(serve.child.id()),
        threads(&[
            ("authq-argon2-b0", SCHED_IDLE),
            ("authq-argon2-b1", SCHED_IDLE)
        ])
    );
    assert_eq!(serve.terminate().0, Some(0));

    let serve = Serve::start_with(|c| {
        c.args(["--hash-threads", "2", "--hash-priority", "normal"]);
    });
    assert_eq!(
        argon2_thread_policies(serve.child.id()),
        threads(&[
            ("authq-argon2-f0", SCHED_OTHER),
            ("authq-argon2-f1", SCHED_OTHER)
        ])
    );
    assert_eq!(serve.terminate().0, Some(0));
}

#[test]
fn sigterm_the_moment_the_worker_answers_is_a_graceful_exit() {
    // The signal handlers are installed before the pool starts consuming, so there is no
    // moment when the worker answers requests but a SIGTERM would kill it outright.
    for _ in 0..3 {
        let serve = Serve::start();
        let (status, stderr) = serve.terminate();
        assert_eq!(status, Some(0), "{stderr}");
        assert!(stderr.contains("shutdown requested"), "{stderr}");
    }
}
