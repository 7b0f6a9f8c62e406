//! Several hosts, one user base: three "hosts" as network namespaces on a bridge (created and
//! removed by the test, addresses only inside them), a broker node and a PostgreSQL server
//! reachable on the bridge, and one `authq serve` in each namespace.
//!
//! Callers on one host see what callers on another did (a suspension through the third host
//! ends the sessions the other two check), and `kill -9` of one host's worker in the middle of
//! a flood of confirmed calls loses none and doubles none.

use crate::flood::{collect, flood, setup, wait_until};
use crate::harness::{delete_namespace, leak, run_on, unique_namespace};
use crate::private_broker::{PrivateBroker, free_port};
use authq::{Client, ClientOptions};
use authq_worker::store::StoreLocation;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

const AUTHQ: &str = env!("CARGO_BIN_EXE_authq");
const PW: &str = "correct horse battery";
/// The bridge's subnet: link-local, so nothing outside this machine is ever addressed.
const SUBNET: &str = "169.254.213";

/// Runs a command that must succeed (root: `ip`, `runuser`).
#[track_caller]
fn sh(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A bridge and three namespaces on it, each with a veth pair; all removed on drop.
struct Network {
    bridge: String,
    hosts: Vec<String>,
}

impl Network {
    fn new(id: &str, n: usize) -> Self {
        let bridge = format!("aqbr{id}");
        let net = Self {
            bridge: bridge.clone(),
            hosts: (1..=n).map(|i| format!("authq-{id}-h{i}")).collect(),
        };
        sh("ip", &["link", "add", &bridge, "type", "bridge"]);
        sh(
            "ip",
            &["addr", "add", &format!("{SUBNET}.1/24"), "dev", &bridge],
        );
        sh("ip", &["link", "set", &bridge, "up"]);
        for (i, host) in net.hosts.iter().enumerate() {
            let (outside, inside) = (format!("aqv{id}{i}"), format!("aqp{id}{i}"));
            sh("ip", &["netns", "add", host]);
            sh(
                "ip",
                &[
                    "link", "add", &outside, "type", "veth", "peer", "name", &inside,
                ],
            );
            sh("ip", &["link", "set", &inside, "netns", host]);
            sh("ip", &["link", "set", &outside, "master", &bridge]);
            sh("ip", &["link", "set", &outside, "up"]);
            let address = format!("{SUBNET}.{}/24", 11 + i);
            sh("ip", &["-n", host, "addr", "add", &address, "dev", &inside]);
            sh("ip", &["-n", host, "link", "set", &inside, "up"]);
            sh("ip", &["-n", host, "link", "set", "lo", "up"]);
        }
        net
    }

    /// `program args…` run inside host `i`'s namespace.
    fn command(&self, i: usize, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.hosts[i], program]);
        cmd
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for host in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", host]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

/// A PostgreSQL server of the test's own (the machine's installed binaries, run as the
/// `postgres` user), listening on the bridge and on loopback; stopped on drop.
struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PrivatePostgres {
    fn start(listen: &str) -> Self {
        let version = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (deploy/ensure-postgres.sh)")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .max()
            .expect("a PostgreSQL version under /usr/lib/postgresql");
        let bin = PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"));
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        sh("chmod", &["755", &dir.path().to_string_lossy()]);
        std::fs::create_dir(&data).unwrap();
        sh("chown", &["postgres:postgres", &data.to_string_lossy()]);
        let as_postgres = |args: &[&str]| {
            let mut all = vec!["-u", "postgres", "--"];
            all.extend_from_slice(args);
            sh("runuser", &all)
        };
        let data_s = data.to_string_lossy().into_owned();
        let initdb = bin.join("initdb").to_string_lossy().into_owned();
        as_postgres(&[&initdb, "-D", &data_s, "-A", "trust", "-U", "postgres"]);
        let hba = data.join("pg_hba.conf");
        let mut conf = std::fs::read_to_string(&hba).unwrap();
        conf.push_str(&format!("host all all {SUBNET}.0/24 trust\n"));
        std::fs::write(&hba, conf).unwrap();
        let port = free_port();
        let options = format!(
            "-c listen_addresses={listen},127.0.0.1 -p {port} -c unix_socket_directories={data_s} \
             -c fsync=off -c max_connections=200"
        );
        let pg_ctl = bin.join("pg_ctl").to_string_lossy().into_owned();
        // `-l`: the server writes there, not to this process's pipes (which `output()` would
        // wait on for as long as the server runs).
        let log = data.join("server.log").to_string_lossy().into_owned();
        as_postgres(&[
            &pg_ctl, "-D", &data_s, "-l", &log, "-o", &options, "-w", "start",
        ]);
        let pg = Self {
            bin,
            data,
            port,
            _dir: dir,
        };
        let admin = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        c.batch_execute("CREATE DATABASE authq").unwrap();
        pg
    }

    /// The authq database's URL at `host`.
    fn url(&self, host: &str) -> String {
        format!("postgres://postgres@{host}:{}/authq", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl").to_string_lossy().into_owned();
        let data = self.data.to_string_lossy().into_owned();
        let _ = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                &pg_ctl,
                "-D",
                &data,
                "-m",
                "immediate",
                "stop",
            ])
            .output();
    }
}

/// `authq serve` inside a host's namespace.
struct Worker {
    child: Child,
}

impl Worker {
    fn start(net: &Network, host: usize, ns: &str, amqp: &str, db: &str, key: &Path) -> Self {
        let child = net
            .command(host, AUTHQ)
            .args(["serve", "--namespace", ns, "--queue-expires", "10m"])
            .args(["--hash-threads", "1", "--admin-caller", "guest"])
            .args(["--amqp-url", amqp, "--database", db, "--key-file"])
            .arg(key)
            .env("AUTHQ_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("authq serve starts in its namespace");
        Self { child }
    }

    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `authq call` from inside host `host`: the reply's JSON.
fn call(net: &Network, host: usize, amqp: &str, ns: &str, op: &str, json: &str) -> Value {
    let out = net
        .command(host, AUTHQ)
        .args([
            "call",
            "--namespace",
            ns,
            "--timeout",
            "30s",
            "--amqp-url",
            amqp,
            op,
            json,
        ])
        .output()
        .expect("authq call runs");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "authq call {op} on host {host}: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Waits until host `host`'s worker answers `ping`.
fn wait_ready(net: &Network, host: usize, amqp: &str, ns: &str) {
    for _ in 0..240 {
        let out = net
            .command(host, AUTHQ)
            .args([
                "call",
                "--namespace",
                ns,
                "--timeout",
                "1s",
                "--amqp-url",
                amqp,
                "ping",
                "{}",
            ])
            .output()
            .unwrap();
        if out.status.success() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("no worker answered on host {host}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_share_one_user_base_and_a_killed_host_loses_nothing() {
    let _turn = crate::private_broker::one_at_a_time();
    let id = uuid::Uuid::new_v4().simple().to_string()[..6].to_owned();
    let net = Network::new(&id, 3);
    let bridge_ip = format!("{SUBNET}.1");
    let (broker, amqp_port) = tokio::task::block_in_place(|| {
        let port = free_port();
        let broker =
            PrivateBroker::start_with_conf(&format!("listeners.tcp.2 = {bridge_ip}:{port}"));
        (broker, port)
    });
    let pg = tokio::task::block_in_place(|| PrivatePostgres::start(&bridge_ip));
    let ns = unique_namespace();
    let amqp = format!("amqp://guest:guest@{bridge_ip}:{amqp_port}/%2f");
    let db = pg.url(&bridge_ip);
    let key_dir = tempfile::tempdir().unwrap();
    let key = key_dir.path().join("authq.key");

    // One worker per host; the first creates the schema (the others wait on its lock).
    let mut workers: Vec<Option<Worker>> = (0..3)
        .map(|h| Some(Worker::start(&net, h, &ns, &amqp, &db, &key)))
        .collect();
    tokio::task::block_in_place(|| (0..3).for_each(|h| wait_ready(&net, h, &amqp, &ns)));

    // Register and log in through host 1, check through host 2, suspend through host 3.
    let reg = call(
        &net,
        0,
        &amqp,
        &ns,
        "register",
        r#"{"email":"ann@example.com"}"#,
    );
    let code = reg["data"]["code"].as_str().expect("a code").to_owned();
    let confirm = format!(r#"{{"email":"ann@example.com","code":"{code}","password":"{PW}"}}"#);
    call(&net, 0, &amqp, &ns, "confirm_registration", &confirm);
    let login = call(
        &net,
        0,
        &amqp,
        &ns,
        "login",
        &format!(r#"{{"email":"ann@example.com","password":"{PW}"}}"#),
    );
    let session = login["data"]["session"]
        .as_str()
        .expect("a session")
        .to_owned();
    let check = format!(r#"{{"session":"{session}"}}"#);
    let seen = call(&net, 1, &amqp, &ns, "check", &check);
    assert_eq!(seen["data"]["user"]["email"], "ann@example.com", "{seen}");
    let suspended = call(
        &net,
        2,
        &amqp,
        &ns,
        "suspend",
        r#"{"email":"ann@example.com"}"#,
    );
    assert_eq!(suspended["status"], "ok", "{suspended}");
    for host in [0, 1] {
        let after = call(&net, host, &amqp, &ns, "check", &check);
        assert_eq!(after["status"], "error", "host {host}: {after}");
    }

    // kill -9 of host 2's worker in the middle of a flood of confirmed calls.
    let client = Client::connect_with(
        &broker.amqp_url(),
        ClientOptions::default()
            .namespace(ns.clone())
            .timeout(Duration::from_secs(180)),
    )
    .await
    .unwrap();
    const USERS: usize = 10;
    let session = setup(&client, USERS).await;
    let (checks, logins, registers) = (3000, 300, 100);
    let done = Arc::new(AtomicUsize::new(0));
    let calls = flood(&client, &session, (checks, logins, registers, USERS), &done);
    wait_until(&done, (checks + logins + registers) / 2).await;
    workers[1].take().expect("host 2's worker").kill_9();
    workers[1] = Some(Worker::start(&net, 1, &ns, &amqp, &db, &key));
    let tally = collect(calls).await;

    let store = StoreLocation::Postgres(pg.url("127.0.0.1"));
    let count = |from_where: &str| {
        let sql = leak(format!("SELECT count(*) FROM {from_where}"));
        run_on(&store, |tx| tx.query_value::<i64>(sql, &[])).expect("a count")
    };
    let (users, sessions) = (count("users"), count("sessions"));
    // Ann (suspended, her sessions ended), the flood's users, and its registrations.
    let (want_users, want_sessions) = ((1 + USERS + registers) as i64, (1 + logins) as i64);
    let duplicated = (users - want_users).max(0) + (sessions - want_sessions).max(0);
    println!(
        "three hosts, kill -9 of one mid-flood: attempted {} / replied {} / lost {} / \
         duplicated {duplicated}",
        tally.attempted,
        tally.replied,
        tally.attempted - tally.replied,
    );
    assert!(
        tally.failed.is_empty(),
        "{:?}",
        &tally.failed[..tally.failed.len().min(5)]
    );
    assert_eq!(
        (users, sessions),
        (want_users, want_sessions),
        "one effect per call"
    );
    drop(workers);
    delete_namespace(&broker.amqp_url(), &ns).await;
    drop((pg, broker, net));
}
