//! What happens when the broker is not there, and what a client-only build pulls in.

use authq::Client;
use authq_worker::WorkerHandle;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_reported_with_how_to_start_it() {
    let err = Client::connect("amqp://guest:guest@127.0.0.1:1/%2f")
        .await
        .expect_err("nothing listens on port 1");
    let msg = err.to_string();
    assert!(msg.contains("rabbitmq-server -detached"), "{msg}");
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

#[test]
fn the_client_library_alone_compiles_no_worker_argon2_or_sqlite() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--package",
            "authq",
            "--no-default-features",
            "--edges",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.contains("lapin"), "{tree}");
    for heavy in [
        "authq-worker",
        "argon2",
        "rusqlite",
        "r2d2",
        "libsqlite3-sys",
        "clap",
    ] {
        assert!(
            !tree.lines().any(|l| l.starts_with(&format!("{heavy} "))),
            "the client-only build pulls in {heavy}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_without_a_deployment_is_reported_at_connect() {
    let namespace = crate::harness::unique_namespace();
    let err = Client::connect_with(
        &crate::harness::amqp_url(),
        authq::ClientOptions {
            namespace: namespace.clone(),
            ..authq::ClientOptions::default()
        },
    )
    .await
    .expect_err("no worker ever declared this namespace");
    assert!(
        matches!(err, authq::ClientError::NoDeployment { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&namespace));
}
