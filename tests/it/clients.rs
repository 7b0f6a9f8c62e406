//! The Python (`clients/python`) and TypeScript (`clients/typescript`) clients' own test suites
//! and the conformance suite, each run as a child process against a worker pool in its own
//! namespace, configured as `protocol/conformance/cases.json` asks. `clients/setup.sh` (run by
//! `scripts/test`) installs what they need.

use crate::conformance::conformance_env;
use crate::harness::amqp_url;
use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `program args` in `dir` with the pool's coordinates in the environment; panics with
/// its output unless it succeeds, prints its output otherwise.
async fn run_suite(what: &str, dir: &Path, needs: &Path, program: &Path, args: &[&str]) {
    assert!(
        needs.exists(),
        "{} is missing: run clients/setup.sh (scripts/test does)",
        needs.display()
    );
    let env = conformance_env().await;
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(dir)
        .env("AUTHQ_TEST_AMQP_URL", amqp_url())
        .env("AUTHQ_TEST_NAMESPACE", &env.config.namespace);
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("{what}:\n{stdout}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_passes_its_tests_and_the_conformance_suite() {
    let dir = repo().join("clients/python");
    run_suite(
        "pytest (clients/python)",
        &dir,
        &dir.join(".venv/bin/python"),
        &dir.join(".venv/bin/python"),
        &["-m", "pytest", "-q", "-p", "no:cacheprovider"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_client_passes_its_tests_and_the_conformance_suite() {
    let dir = repo().join("clients/typescript");
    run_suite(
        "node --test (clients/typescript)",
        &dir,
        &dir.join("dist/test/client.test.js"),
        Path::new("node"),
        &[
            "--test",
            "--test-reporter=spec",
            "dist/test/client.test.js",
            "dist/test/conformance.test.js",
        ],
    )
    .await;
}
