//! A private RabbitMQ node for the tests that must stop, restart or reconfigure a broker
//! (broker restarts, resource alarms, TLS listeners) without disturbing the shared one that
//! every other test uses.
//!
//! It runs the broker installed on the machine (`deploy/ensure-rabbitmq.sh` installs it) as a
//! second Erlang node with its own name, ports, data and log directories under a temporary
//! directory, and stops it when dropped. The `/usr/lib/rabbitmq/bin` scripts are used directly:
//! the `/usr/sbin` wrappers switch to the `rabbitmq` user, whose Erlang cookie differs from the
//! one the node started by root uses.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

const BIN: &str = "/usr/lib/rabbitmq/bin";

/// Tests that start private broker nodes (or, in `hosts`, a private PostgreSQL) take turns:
/// each node is a whole Erlang VM, and several starting, stopping and recovering their quorum
/// queues at once on two cores, beside the rest of the suite, made a restart slow enough for
/// calls to time out. The first thing such a test does is take its turn; a test that failed
/// while holding it does not block the others.
pub fn one_at_a_time() -> Turn {
    let mut busy = TURN_TAKEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    while *busy {
        busy = TURN_FREED
            .wait(busy)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
    *busy = true;
    Turn
}

static TURN_TAKEN: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
static TURN_FREED: std::sync::Condvar = std::sync::Condvar::new();

/// A test's turn with private nodes ([`one_at_a_time`]), given back when dropped (a failing
/// test's too, while it unwinds).
pub struct Turn;

impl Drop for Turn {
    fn drop(&mut self) {
        *TURN_TAKEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = false;
        TURN_FREED.notify_one();
    }
}

/// A running private broker node.
pub struct PrivateBroker {
    node: String,
    port: u16,
    dist_port: u16,
    dir: TempDir,
}

/// A free TCP port on loopback (the OS picks it; it is free again once the probe is dropped).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

impl PrivateBroker {
    /// Starts a node with the default configuration (AMQP on a free loopback port).
    pub fn start() -> Self {
        Self::start_with_conf("")
    }

    /// Starts a node whose `rabbitmq.conf` also holds `extra_conf` (e.g. an SSL listener).
    /// Panics, saying what to run, if the broker is not installed or does not start.
    pub fn start_with_conf(extra_conf: &str) -> Self {
        assert!(
            Path::new(BIN).join("rabbitmq-server").exists(),
            "RabbitMQ is not installed ({BIN}/rabbitmq-server missing): run deploy/ensure-rabbitmq.sh"
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let node = format!("authq-test-{}@localhost", uuid::Uuid::new_v4().simple());
        let conf =
            format!("listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users = none\n{extra_conf}\n");
        std::fs::write(dir.path().join("rabbitmq.conf"), conf).expect("writing rabbitmq.conf");
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").expect("writing plugins");
        let broker = Self {
            node,
            port,
            dist_port: free_port(),
            dir,
        };
        let out = run(broker.command("rabbitmq-server").arg("-detached"))
            .expect("running rabbitmq-server");
        assert!(out.status.success(), "rabbitmq-server: {}", show(&out));
        broker.wait_running();
        broker
    }

    /// The AMQP URL of the node (guest/guest, default vhost).
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The node's AMQP port.
    #[allow(dead_code)] // for tests that configure more listeners
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The node's own directory (certificates and other files a test writes for it).
    #[allow(dead_code)] // for tests that configure TLS
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `rabbitmqctl` against the node; panics if it fails.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = run(self
            .command("rabbitmqctl")
            .arg("-n")
            .arg(&self.node)
            .args(args))
        .expect("running rabbitmqctl");
        assert!(out.status.success(), "rabbitmqctl {args:?}: {}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the RabbitMQ application (connections drop, durable queues and their persistent
    /// messages stay), as `rabbitmqctl stop_app` does.
    pub fn stop_app(&self) {
        self.ctl(&["stop_app"]);
    }

    /// Starts the application again and waits until it accepts connections.
    pub fn start_app(&self) {
        self.ctl(&["start_app"]);
        self.wait_running();
    }

    fn wait_running(&self) {
        self.ctl(&[
            "wait",
            &self.pid_file().to_string_lossy(),
            "--timeout",
            "60",
        ]);
        self.ctl(&["await_startup", "--timeout", "60"]);
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("pid")
    }

    fn command(&self, program: &str) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new(Path::new(BIN).join(program));
        cmd.env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq"))
            .env("RABBITMQ_PID_FILE", self.pid_file());
        cmd
    }
}

/// A RabbitMQ cluster of private nodes on loopback (distinct node names and ports).
pub struct PrivateCluster {
    /// The nodes; the first is the one the others joined.
    pub nodes: Vec<PrivateBroker>,
}

impl PrivateCluster {
    /// Starts `n` nodes (at once, each on its own thread) and joins the others to the first.
    pub fn start(n: usize) -> Self {
        let nodes: Vec<PrivateBroker> = std::thread::scope(|s| {
            let starting: Vec<_> = (0..n).map(|_| s.spawn(PrivateBroker::start)).collect();
            starting
                .into_iter()
                .map(|t| t.join().expect("a node starts"))
                .collect()
        });
        let first = nodes[0].node.clone();
        for node in &nodes[1..] {
            node.ctl(&["stop_app"]);
            node.ctl(&["join_cluster", &first]);
            node.start_app();
        }
        Self { nodes }
    }

    /// Every node's AMQP URL, comma-separated (the form `--amqp-url` and the client take).
    pub fn amqp_urls(&self) -> String {
        self.nodes
            .iter()
            .map(PrivateBroker::amqp_url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl PrivateBroker {
    /// The Erlang node name (`authq-test-…@localhost`).
    pub fn node_name(&self) -> &str {
        &self.node
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = run(self
            .command("rabbitmqctl")
            .arg("-n")
            .arg(&self.node)
            .arg("stop"));
    }
}

/// Runs a broker command to its end. The tests are async: the command's seconds (an Erlang VM
/// starting) must not stall the executor thread that the worker and clients of the same test
/// also run on, so the wait is moved off it.
fn run(cmd: &mut Command) -> std::io::Result<Output> {
    let on_multi_thread_runtime = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if on_multi_thread_runtime {
        tokio::task::block_in_place(|| cmd.output())
    } else {
        cmd.output()
    }
}

fn show(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
