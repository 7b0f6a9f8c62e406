//! `amqps://` (TLS) in the worker and in the client library: a private RabbitMQ node with an SSL
//! listener on loopback, certificates from a self-signed CA made by `openssl` at test time,
//! `authq serve` and `authq call` (the client library) trusting that CA through
//! `SSL_CERT_FILE`, and refusing the same broker when they do not trust it.

use crate::harness::unique_namespace;
use crate::private_broker::{PrivateBroker, free_port};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const AUTHQ: &str = env!("CARGO_BIN_EXE_authq");

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for `localhost` / 127.0.0.1 signed by it.
fn make_certs(dir: &Path) {
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=authq test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
}

fn call(url: &str, namespace: &str, ca: Option<&Path>) -> Output {
    let mut cmd = Command::new(AUTHQ);
    cmd.args([
        "call",
        "--namespace",
        namespace,
        "--timeout",
        "5s",
        "ping",
        "{}",
    ])
    .env("AUTHQ_AMQP_URL", url)
    .env_remove("SSL_CERT_FILE");
    if let Some(ca) = ca {
        cmd.env("SSL_CERT_FILE", ca);
    }
    cmd.output().expect("authq call runs")
}

#[test]
fn amqps_works_in_the_worker_and_the_client_with_a_private_ca_and_only_with_it() {
    let _turn = crate::private_broker::one_at_a_time();
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let tls_port = free_port();
    let p = |f: &str| certs.path().join(f).display().to_string();
    let broker = PrivateBroker::start_with_conf(&format!(
        "listeners.ssl.1 = 127.0.0.1:{tls_port}\n\
         ssl_options.cacertfile = {}\n\
         ssl_options.certfile = {}\n\
         ssl_options.keyfile = {}\n\
         ssl_options.verify = verify_none\n\
         ssl_options.fail_if_no_peer_cert = false\n",
        p("ca.pem"),
        p("server.pem"),
        p("server.key"),
    ));
    let url = format!("amqps://guest:guest@localhost:{tls_port}/%2f");
    let ca = certs.path().join("ca.pem");
    let namespace = unique_namespace();
    let db = tempfile::tempdir().unwrap();
    let store = crate::harness::TestStore::new(db.path());
    let mut serve = Command::new(AUTHQ)
        .args(["serve", "--namespace", &namespace])
        .args(&store.args)
        .env("AUTHQ_AMQP_URL", &url)
        .env("SSL_CERT_FILE", &ca)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("authq serve starts");
    let mut answered = None;
    for _ in 0..60 {
        let out = call(&url, &namespace, Some(&ca));
        if out.status.success() {
            answered = Some(out);
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let Some(answered) = answered else {
        let _ = serve.kill();
        let out = serve.wait_with_output().unwrap();
        panic!(
            "no ping answered over amqps within 15 s; serve said: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    };
    assert_eq!(
        String::from_utf8_lossy(&answered.stdout).trim(),
        r#"{"status":"ok","data":{}}"#
    );
    // The same broker is refused by a client that does not trust the CA: the certificate is
    // verified, not merely used for encryption.
    let untrusted = call(&url, &namespace, None);
    assert_eq!(untrusted.status.code(), Some(2), "{untrusted:?}");
    // And the plain listener of this node still works, so nothing else was at fault.
    assert!(broker.amqp_url().starts_with("amqp://"));

    // SIGTERM: a clean exit.
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let status = serve.wait().unwrap();
    assert!(status.success(), "authq serve exits 0 on SIGTERM");
    drop(broker);
}
