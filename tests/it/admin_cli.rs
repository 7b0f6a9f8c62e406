//! `authq user`, the admin CLI, driven as the built binary against a worker that lists the
//! test's RabbitMQ user in `--admin-caller`: list (pages, prefix, `--all`), show, create,
//! suspend, unsuspend, end-sessions, mfa-reset, delete, import; tables by default, `--json` for
//! scripts; exit statuses; refused to a caller that is not an admin.

use crate::events::{next_event, subscribe};
use crate::harness::{TestEnv, amqp_url, assert_code};
use crate::import::stored_hash;
use authq::ErrorCode;
use authq::types::UserRef;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

const AUTHQ: &str = env!("CARGO_BIN_EXE_authq");
const PW: &str = "Correct-horse-9";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `authq user ARGS --namespace …` (stdin from `input`), bounded by its `--timeout`.
async fn user(env: &TestEnv, args: &[&str], input: Option<&str>) -> Run {
    let mut child = tokio::process::Command::new(AUTHQ)
        .arg("user")
        .args(args)
        .args(["--namespace", &env.config.namespace, "--timeout", "20s"])
        .env("AUTHQ_AMQP_URL", amqp_url())
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("authq user runs");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `authq user ARGS`, checks its exit status, returns stdout.
async fn ok(env: &TestEnv, args: &[&str], input: Option<&str>) -> String {
    let run = user(env, args, input).await;
    assert_eq!(
        run.code, 0,
        "authq user {args:?}: stdout {} stderr {}",
        run.stdout, run.stderr
    );
    run.stdout
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cli_creates_lists_shows_and_administers_users() {
    let env = TestEnv::start().await;

    // create: an active user with a password read from stdin.
    let created = ok(
        &env,
        &["create", "ann@example.com", "--password-stdin"],
        Some(&format!("{PW}\n")),
    )
    .await;
    assert!(created.starts_with("created "), "{created}");
    let ann = created.split_whitespace().nth(1).unwrap().to_owned();
    env.client.login("ann@example.com", PW).await.unwrap();
    // create again: the user exists, exit status 1.
    let again = user(&env, &["create", "ann@example.com"], None).await;
    assert_eq!(again.code, 1, "{}", again.stdout);
    assert!(again.stdout.contains("exists"), "{}", again.stdout);
    let pw = format!("{PW}\n");
    for email in ["bob@example.com", "bea@example.com"] {
        let out = ok(
            &env,
            &["create", email, "--json", "--password-stdin"],
            Some(&pw),
        )
        .await;
        assert_eq!(json(&out)["status"], "imported");
    }
    // Without a password: pending, an invitation `register` completes.
    ok(&env, &["create", "carl@example.com"], None).await;
    let carl = env
        .client
        .get_user(UserRef::email("carl@example.com"))
        .await
        .unwrap();
    assert_eq!(carl.user.state, authq::types::UserState::Pending);

    // list: a table, a page at a time, in email order.
    let page = ok(&env, &["list", "--limit", "2"], None).await;
    let lines: Vec<&str> = page.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("EMAIL") && lines[0].contains("STATE"),
        "{page}"
    );
    assert!(
        lines[1].contains("ann@example.com") && lines[1].contains("active"),
        "{page}"
    );
    assert!(lines[2].contains("bea@example.com"), "{page}");
    assert_eq!(lines[3], "more: --cursor 'bea@example.com'", "{page}");
    let next = ok(
        &env,
        &["list", "--limit", "2", "--cursor", "bea@example.com"],
        None,
    )
    .await;
    assert!(
        next.contains("bob@example.com") && next.contains("carl@example.com"),
        "{next}"
    );
    assert!(!next.contains("more:"), "the last page: {next}");
    // --all --json: every page, one object.
    let all = json(&ok(&env, &["list", "--limit", "1", "--all", "--json"], None).await);
    let emails: Vec<&str> = all["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        emails,
        [
            "ann@example.com",
            "bea@example.com",
            "bob@example.com",
            "carl@example.com"
        ]
    );
    assert!(all.get("next_cursor").is_none());
    // --prefix: by the start of the email, case-insensitively.
    let b = json(&ok(&env, &["list", "--prefix", "B", "--json"], None).await);
    let emails: Vec<&str> = b["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["bea@example.com", "bob@example.com"]);

    // show: by email or by id; sessions counted.
    let shown = json(&ok(&env, &["show", "ann@example.com", "--json"], None).await);
    assert_eq!(shown["user"]["id"], ann.as_str());
    assert_eq!(shown["sessions"], 1);
    assert_eq!(shown["password_scheme"], "argon2id");
    assert_eq!(shown["mfa"], false);
    let table = ok(&env, &["show", &ann], None).await;
    assert!(
        table.contains("ann@example.com")
            && table.contains("argon2id")
            && table
                .lines()
                .any(|l| l.split_whitespace().eq(["mfa", "off"])),
        "{table}"
    );

    // end-sessions: the session stops working.
    let session = env
        .client
        .login("ann@example.com", PW)
        .await
        .unwrap()
        .session;
    let ended = ok(&env, &["end-sessions", "ann@example.com"], None).await;
    assert_eq!(ended.trim(), format!("{ann}: 2 sessions ended"));
    assert!(env.client.check(session.expose()).await.is_err());

    // suspend, unsuspend.
    let out = ok(&env, &["suspend", "bob@example.com", "--json"], None).await;
    assert_eq!(json(&out)["user"]["state"], "suspended");
    let bob = env
        .client
        .get_user(UserRef::email("bob@example.com"))
        .await
        .unwrap();
    assert_eq!(bob.user.state, authq::types::UserState::Suspended);
    let out = ok(&env, &["unsuspend", &bob.user.id], None).await;
    assert!(out.contains("active"), "{out}");

    // delete; then show is an error reply (exit 1, the code on stderr).
    ok(&env, &["delete", "carl@example.com"], None).await;
    let gone = user(&env, &["show", "carl@example.com"], None).await;
    assert_eq!(gone.code, 1);
    assert!(gone.stderr.contains("not_found"), "{}", gone.stderr);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cli_imports_a_file_and_reports_each_entry_not_imported() {
    let env = TestEnv::start().await;
    let id = "3c9f1e2d-4b5a-4c6d-8e7f-9a0b1c2d3e4f";
    // As authman stores it: sha256(user_id .. password), here as the hex the export writes.
    let digest: String = Sha256::digest(format!("{id}{PW}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let bcrypt = bcrypt::hash_with_salt(PW, 4, [9; 16])
        .unwrap()
        .format_for_version(bcrypt::Version::TwoB);
    let lines = [
        serde_json::json!({"email": "ann@example.com", "user_id": id, "profile": {"first_name": "Ann"},
            "password_hash": {"scheme": "authman_sha256", "hash": digest}}),
        serde_json::json!({"email": "bob@example.com", "password_hash": {"scheme": "bcrypt", "hash": bcrypt}}),
        serde_json::json!({"email": "broken", "state": "active"}),
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.jsonl");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let path = file.to_str().unwrap();

    // One entry is invalid: exit status 1, a table of it, and the summary.
    let run = user(&env, &["import", path, "--batch", "2"], None).await;
    assert_eq!(run.code, 1, "{} {}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("broken") && run.stdout.contains("invalid"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .ends_with("imported 2, already there 0, invalid 1\n"),
        "{}",
        run.stdout
    );

    // Both legacy users log in with the old password and are rehashed.
    for email in ["ann@example.com", "bob@example.com"] {
        let login = env.client.login(email, PW).await.unwrap();
        let hash = stored_hash(&env, &login.user.id).unwrap();
        assert!(hash.starts_with("$argon2id$"), "{email}: {hash}");
    }
    let ann = env.client.get_user(UserRef::id(id)).await.unwrap();
    assert_eq!(ann.user.profile.as_json(), r#"{"first_name":"Ann"}"#);

    // The same file again, as JSON: one result per line, the two users already there.
    let run = user(&env, &["import", path, "--json"], None).await;
    assert_eq!(run.code, 1);
    let statuses: Vec<String> = run
        .stdout
        .lines()
        .map(|l| json(l)["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(statuses, ["exists", "exists", "invalid"]);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cli_is_refused_to_a_caller_that_is_not_an_admin() {
    let env = TestEnv::start_with(|c| c.admin_callers = vec!["ops-team".into()]).await;
    for args in [
        &["list"][..],
        &["create", "ann@example.com"],
        &["show", "ann@example.com"],
        &["mfa-reset", "ann@example.com"],
    ] {
        let run = user(&env, args, None).await;
        assert_eq!(run.code, 1, "{args:?}: {}", run.stdout);
        assert!(run.stderr.contains("forbidden"), "{args:?}: {}", run.stderr);
    }
    assert_eq!(env.count("users"), 0);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cli_turns_off_the_second_factor_of_a_user_who_lost_it() {
    let env = TestEnv::start().await;
    let queue = format!("{}.test-mfa-reset", env.config.namespace);
    let mut events = subscribe(&env, &queue, &["mfa.changed"]).await;
    let ann = crate::mfa::enrolled(&env, "ann@example.com").await;
    let c = &env.client;
    assert_code(
        c.login("ann@example.com", crate::mfa::PW).await,
        ErrorCode::MfaRequired,
    );

    let out = ok(&env, &["mfa-reset", "ann@example.com"], None).await;
    assert!(out.contains("second factor off"), "{out}");
    // The password alone logs in again, and nothing of the factor is left.
    c.login("ann@example.com", crate::mfa::PW).await.unwrap();
    assert_eq!(env.count("mfa_totp"), 0);
    assert_eq!(env.count("mfa_recovery_codes"), 0);
    let again = user(&env, &["mfa-reset", "ann@example.com"], None).await;
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("mfa_not_enabled"), "{}", again.stderr);

    for change in ["enrollment_started", "enabled", "reset"] {
        let (_, seen) = next_event(&mut events).await;
        assert_eq!(seen.data.change.as_deref(), Some(change));
        assert_eq!(seen.data.user_id.as_deref(), Some(ann.user_id.as_str()));
    }
    env.stop().await;
}
