//! What happens when the broker is not there, and what a client-only build pulls in.

use authq::Client;
use authq_worker::WorkerHandle;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_a_connect_error_and_the_worker_says_how_to_start_it() {
    let err = Client::connect("amqp://guest:guest@127.0.0.1:1/%2f")
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, authq::ClientError::Connect { .. }), "{err}");
    assert!(err.is_connect() && err.is_retryable() && !err.is_timeout());
    let msg = err.to_string();
    assert!(msg.starts_with("cannot reach the broker at"), "{msg}");
    // A library error lands in a service's logs: no advice about installing a broker.
    assert!(!msg.contains("rabbitmq-server"), "{msg}");
    assert!(
        !msg.contains("guest:guest"),
        "the password is redacted: {msg}"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::harness::test_config(&dir);
    config.amqp_url = "amqp://guest:guest@127.0.0.1:1/%2f".into();
    let err = WorkerHandle::start(config).await.expect_err("no broker");
    let msg = err.to_string();
    assert!(msg.contains("rabbitmq-server -detached"), "{msg}");
    assert!(
        !msg.contains("guest:guest"),
        "the password is redacted: {msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_or_vhost_is_access_refused_not_unreachable() {
    let url = crate::harness::amqp_url();
    let wrong_password = url.replacen(":guest@", ":not-the-password@", 1);
    assert_ne!(wrong_password, url, "the test broker URL has guest:guest");
    for bad in [wrong_password, url.replace("/%2f", "/no-such-vhost")] {
        let err = Client::connect(&bad).await.expect_err("refused");
        assert!(
            matches!(err, authq::ClientError::AccessRefused { .. }),
            "{bad}: {err}"
        );
        assert!(err.is_connect() && !err.is_retryable(), "{err}");
        let msg = err.report();
        assert!(!msg.contains("not-the-password"), "{msg}");
        assert!(!msg.contains("rabbitmq-server"), "{msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_is_bounded_by_the_configured_timeout() {
    // A listener that accepts connections and never speaks AMQP.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
        }
    });
    let err = Client::connect_with(
        &format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        authq::ClientOptions::default().timeout(std::time::Duration::from_millis(300)),
    )
    .await
    .expect_err("no AMQP handshake");
    assert!(matches!(err, authq::ClientError::Connect { .. }), "{err}");
    assert!(err.report().contains("no connection within 300ms"), "{err}");
    held.abort();
}

#[test]
fn the_client_library_alone_compiles_no_worker_argon2_or_sqlite() {
    let tree = cargo_tree("authq", &["--no-default-features"]);
    assert!(tree.contains("lapin"), "{tree}");
    for heavy in [
        "authq-worker",
        "argon2",
        "rusqlite",
        "r2d2",
        "libsqlite3-sys",
        "clap",
        // TLS is the `tls` feature's, on by default.
        "rustls",
    ] {
        assert!(
            !tree.lines().any(|l| l.starts_with(&format!("{heavy} "))),
            "the client-only build pulls in {heavy}"
        );
    }
}

/// `cargo tree` of `package` with `args`, one crate per line.
fn cargo_tree(package: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--package",
            package,
            "--edges",
            "normal",
            "--prefix",
            "none",
        ])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_worker_without_social_login_and_redis_compiles_neither() {
    let has = |tree: &str, krate: &str| tree.lines().any(|l| l.starts_with(&format!("{krate} ")));
    let full = cargo_tree("authq-worker", &[]);
    let lean = cargo_tree("authq-worker", &["--no-default-features"]);
    for krate in ["reqwest", "redis"] {
        assert!(has(&full, krate), "the default worker has {krate}");
        assert!(
            !has(&lean, krate),
            "--no-default-features still pulls in {krate}"
        );
    }
    assert!(has(&lean, "lapin") && has(&lean, "argon2"), "{lean}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_without_a_deployment_is_reported_at_connect() {
    let namespace = crate::harness::unique_namespace();
    let err = Client::connect_with(
        &crate::harness::amqp_url(),
        authq::ClientOptions::default().namespace(namespace.clone()),
    )
    .await
    .expect_err("no worker ever declared this namespace");
    assert!(
        matches!(err, authq::ClientError::NoDeployment { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&namespace));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_pool_shows_up_as_a_timeout() {
    let mut env = crate::harness::TestEnv::start().await;
    env.client.ping().await.unwrap();
    env.stop_worker().await;
    let err = env
        .client
        .call_with_timeout(
            &authq::protocol::ops::PingRequest {},
            std::time::Duration::from_millis(500),
        )
        .await
        .expect_err("nobody consumes the tube");
    assert!(
        matches!(err, authq::ClientError::Timeout(_)),
        "{}",
        err.report()
    );
    assert!(err.is_timeout() && err.is_retryable() && !err.is_connect());
    env.stop().await;
}
