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
            "dist/test/types.test.js",
        ],
    )
    .await;
}

/// The fenced block of `lang` that follows `heading` in README.md.
fn readme_block(heading: &str, lang: &str) -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = &readme[readme.find(heading).expect("the README section")..];
    let start = section.find(&format!("```{lang}\n")).expect("the example") + lang.len() + 4;
    let len = section[start..].find("```").unwrap();
    section[start..start + len].to_owned()
}

/// Runs README's Python and TypeScript examples as written, pointed at a pool in its own
/// namespace (the only change: the namespace, and a fresh email so runs do not collide).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_examples_work_as_written() {
    let python = repo().join("clients/python/.venv/bin/python");
    let typescript = repo().join("clients/typescript/dist/src/index.js");
    for needed in [&python, &typescript] {
        assert!(
            needed.exists(),
            "{} is missing: run clients/setup.sh (scripts/test does)",
            needed.display()
        );
    }
    let env = conformance_env().await;
    let ns = env.config.namespace.clone();
    let emails: Vec<String> = (0..2)
        .map(|_| format!("ann-{}@example.com", uuid::Uuid::new_v4().simple()))
        .collect();
    let url = "amqp://guest:guest@127.0.0.1:5672/%2f";
    let test_url = amqp_url();
    let python_code = readme_block("### Python", "python")
        .replace(
            &format!("AuthqClient(\"{url}\")"),
            &format!("AuthqClient(\"{test_url}\", namespace=\"{ns}\")"),
        )
        .replace("ann@example.com", &emails[0]);
    assert!(python_code.contains(&ns), "{python_code}");
    let ts_code = readme_block("### TypeScript", "ts")
        .replace(
            &format!("new AuthqClient(\"{url}\")"),
            &format!("new AuthqClient(\"{test_url}\", {{ namespace: \"{ns}\" }})"),
        )
        .replace("ann@example.com", &emails[1]);
    assert!(ts_code.contains(&ns), "{ts_code}");
    // Inside the package, so that `import … from "authq-client"` resolves to it.
    let script = repo().join(format!("clients/typescript/readme-example-{ns}.mjs"));
    std::fs::write(&script, &ts_code).unwrap();
    let runs = [
        Command::new(&python)
            .args(["-c", &python_code])
            .output()
            .unwrap(),
        Command::new("node").arg(&script).output().unwrap(),
    ];
    let _ = std::fs::remove_file(&script);
    for (out, email) in runs.iter().zip(&emails) {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.trim(), email);
    }
    env.stop().await;
}
