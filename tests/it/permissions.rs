//! The broker's own access control: `deploy/definitions.json` loaded into the local broker
//! (under a unique vhost and unique user names, removed afterwards), then the permission matrix
//! checked with real connections — what each user may do, and what the broker refuses.

use crate::harness::test_config;
use authq::{Client, ClientOptions};
use authq_worker::WorkerHandle;
use base64::Engine;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::process::{Command, Stdio};
use std::time::Duration;

const USERS: [&str; 4] = ["worker", "web", "billing", "admin"];

/// The role of a user named like the web user with `.svc` appended (`X.svc` next to `X`).
const DOTTED: &str = "web.svc";

/// The definitions file with its user names and vhost made unique to this run.
struct Loaded {
    tag: String,
    vhost: String,
    password: String,
}

impl Loaded {
    fn load() -> Self {
        let tag = format!("aq{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let vhost = format!("{tag}-vhost");
        let password = uuid::Uuid::new_v4().simple().to_string();
        let mut text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/definitions.json"),
        )
        .expect("deploy/definitions.json");
        for user in USERS {
            text = text.replace(&format!("authq-{user}"), &format!("{tag}-{user}"));
        }
        let mut defs: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        defs["vhosts"][0]["name"] = vhost.clone().into();
        for p in defs["permissions"].as_array_mut().unwrap() {
            p["vhost"] = vhost.clone().into();
        }
        // RabbitMQ's password hash: base64(salt ++ sha256(salt ++ password)), 4-byte salt.
        let salt = "s4lt";
        let digest = authq_worker::crypto::digest(&format!("{salt}{password}"));
        let mut raw = salt.as_bytes().to_vec();
        raw.extend_from_slice(&digest);
        let hash = base64::engine::general_purpose::STANDARD.encode(raw);
        // User `X.svc` next to `X` (= the web user), with the web user's pattern applied to
        // its own name (the dot escaped), to check that a name has one owner.
        let web = format!("{tag}-web");
        let dotted = format!("{tag}-{DOTTED}");
        let mut user = defs["users"][1].clone();
        user["name"] = dotted.clone().into();
        defs["users"].as_array_mut().unwrap().push(user);
        let mut perm = defs["permissions"][1].clone();
        assert_eq!(perm["user"], web.as_str());
        perm["user"] = dotted.clone().into();
        for key in ["configure", "read"] {
            let pattern = perm[key]
                .as_str()
                .unwrap()
                .replace(&format!("{web}\\."), &format!("{web}\\.svc\\."));
            perm[key] = pattern.into();
        }
        defs["permissions"].as_array_mut().unwrap().push(perm);
        for u in defs["users"].as_array_mut().unwrap() {
            u["password_hash"] = hash.clone().into();
        }
        let loaded = Self {
            tag,
            vhost,
            password,
        };
        let mut child = Command::new("rabbitmqctl")
            .args(["import_definitions"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rabbitmqctl runs (deploy/ensure-rabbitmq.sh installs it)");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(defs.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "import_definitions: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        loaded
    }

    fn user(&self, role: &str) -> String {
        format!("{}-{role}", self.tag)
    }

    fn url(&self, role: &str) -> String {
        format!(
            "amqp://{}:{}@127.0.0.1:5672/{}",
            self.user(role),
            self.password,
            self.vhost
        )
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.vhost])
            .output();
        for role in USERS.into_iter().chain([DOTTED]) {
            let _ = Command::new("rabbitmqctl")
                .args(["delete_user", &self.user(role)])
                .output();
        }
    }
}

/// Whether an operation was refused by the broker's access control.
fn refused<T: std::fmt::Debug>(r: Result<T, lapin::Error>) -> bool {
    match r {
        Ok(v) => panic!("expected ACCESS_REFUSED, got {v:?}"),
        Err(e) => {
            let s = format!("{e:?} {e}");
            assert!(s.contains("ACCESS_REFUSED") || s.contains("403"), "{s}");
            true
        }
    }
}

async fn connect(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_definitions_give_each_user_only_what_it_needs() {
    let defs = Loaded::load();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir);
    config.amqp_url = defs.url("worker");
    config.namespace = "authq".into();
    config.admin_callers = vec![defs.user("admin")];
    // The worker user declares the whole topology and consumes the tubes.
    let worker = WorkerHandle::start(config)
        .await
        .unwrap_or_else(|e| panic!("the worker starts with its least-privilege user: {e}"));

    // A service user calls authq through the client library (server-named reply queue).
    let web = Client::connect_with(
        &defs.url("web"),
        ClientOptions::default()
            .namespace("authq")
            .timeout(Duration::from_secs(20)),
    )
    .await
    .unwrap_or_else(|e| panic!("the service connects: {e}"));
    web.ping().await.unwrap();
    // …and may name reply queues under its own user, but not under another's.
    let conn = connect(&defs.url("web")).await;
    let own = format!("authq.reply.{}.1", defs.user("web"));
    let ch = conn.create_channel().await.unwrap();
    let opts = QueueDeclareOptions {
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(own.as_str().into(), opts, FieldTable::default())
        .await
        .unwrap();
    let theirs = format!("authq.reply.{}.1", defs.user("billing"));
    assert!(refused(
        ch.queue_declare(theirs.as_str().into(), opts, FieldTable::default())
            .await
    ));

    // A service cannot consume a tube (requests carry other services' users' passwords)…
    for queue in [
        "authq.password",
        "authq.session",
        "authq.account",
        "authq.dead-letter",
    ] {
        let ch = conn.create_channel().await.unwrap();
        assert!(
            refused(
                ch.basic_consume(
                    queue.into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default()
                )
                .await
            ),
            "{queue}"
        );
    }
    // It binds its own queues to the notices exchange (the client library does, at connect)…
    let ch = conn.create_channel().await.unwrap();
    ch.queue_bind(
        own.as_str().into(),
        "authq.notices".into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    // …but cannot bind a queue of its own to the request exchange to receive copies of
    // requests…
    let ch = conn.create_channel().await.unwrap();
    assert!(refused(
        ch.queue_bind(
            own.as_str().into(),
            "authq".into(),
            "login".into(),
            QueueBindOptions::default(),
            FieldTable::default()
        )
        .await
    ));
    // …nor publish anywhere but the request exchange (e.g. fake dead letters or replies).
    for exchange in ["authq.dead-letter", ""] {
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .unwrap();
        // A refused publish closes the channel; the publish's confirmation carries why.
        let sent = match ch
            .basic_publish(
                exchange.into(),
                own.as_str().into(),
                BasicPublishOptions::default(),
                b"{}",
                BasicProperties::default(),
            )
            .await
        {
            Err(e) => Err(e),
            Ok(confirm) => confirm.await.map(|_| ()),
        };
        assert!(refused(sent), "publish to {exchange:?}");
    }

    // Another service cannot read the first one's reply queue.
    let billing = connect(&defs.url("billing")).await;
    let ch = billing.create_channel().await.unwrap();
    assert!(refused(
        ch.basic_consume(
            own.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default()
        )
        .await
    ));

    // The admin user may inspect the dead-letter queue.
    let admin = connect(&defs.url("admin")).await;
    let ch = admin.create_channel().await.unwrap();
    ch.basic_consume(
        "authq.dead-letter".into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();

    // The worker user cannot touch anything outside its namespace in the vhost.
    let wconn = connect(&defs.url("worker")).await;
    let ch = wconn.create_channel().await.unwrap();
    assert!(refused(
        ch.queue_declare("billing.jobs".into(), opts, FieldTable::default())
            .await
    ));

    for c in [conn, billing, admin, wconn] {
        let _ = c.close(200, "done".into()).await;
    }
    let _ = web.close().await;
    worker.shutdown().await.unwrap();
    drop(defs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_x_and_x_dot_svc_each_own_only_their_reply_queues() {
    let defs = Loaded::load();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir);
    config.amqp_url = defs.url("worker");
    config.namespace = "authq".into();
    config.admin_callers = vec![defs.user("admin")];
    let worker = WorkerHandle::start(config)
        .await
        .unwrap_or_else(|e| panic!("the worker starts with its least-privilege user: {e}"));
    let (x, x_svc) = (defs.user("web"), defs.user(DOTTED));
    let inbox = format!("authq.reply.{x_svc}.inbox");
    let opts = QueueDeclareOptions {
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    let consume = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    let ping = |user: &str| {
        BasicProperties::default()
            .with_reply_to(inbox.as_str().into())
            .with_correlation_id("1".into())
            .with_user_id(user.into())
    };

    // `X.svc` declares its queue, reads it, and is answered there.
    let owner = connect(&defs.url(DOTTED)).await;
    let och = owner.create_channel().await.unwrap();
    och.queue_declare(inbox.as_str().into(), opts, FieldTable::default())
        .await
        .unwrap();
    let mut replies = och
        .basic_consume(
            inbox.as_str().into(),
            "".into(),
            consume,
            FieldTable::default(),
        )
        .await
        .unwrap();
    och.basic_publish(
        "authq".into(),
        "ping".into(),
        BasicPublishOptions::default(),
        b"{}",
        ping(&x_svc),
    )
    .await
    .unwrap();
    let r = crate::harness::Raw::next(&mut replies).await;
    assert_eq!(r.data, br#"{"status":"ok","data":{}}"#);

    // `X` can neither declare nor read it (the broker)…
    let conn = connect(&defs.url("web")).await;
    let ch = conn.create_channel().await.unwrap();
    assert!(refused(
        ch.queue_declare(inbox.as_str().into(), opts, FieldTable::default())
            .await
    ));
    let ch = conn.create_channel().await.unwrap();
    assert!(refused(
        ch.basic_consume(
            inbox.as_str().into(),
            "".into(),
            consume,
            FieldTable::default()
        )
        .await
    ));
    // …nor have the worker answer there: dead-lettered as `forbidden_reply_to`, never processed.
    let admin = connect(&defs.url("admin")).await;
    let ach = admin.create_channel().await.unwrap();
    let mut dead = ach
        .basic_consume(
            "authq.dead-letter".into(),
            "".into(),
            consume,
            FieldTable::default(),
        )
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.basic_publish(
        "authq".into(),
        "ping".into(),
        BasicPublishOptions::default(),
        b"{}",
        ping(&x),
    )
    .await
    .unwrap();
    let d = crate::harness::Raw::next(&mut dead).await;
    let h = d.properties.headers().clone().expect("headers");
    assert_eq!(
        h.inner()
            .get(authq_protocol::names::headers::DEAD_LETTER_REASON)
            .cloned(),
        Some(lapin::types::AMQPValue::LongString(
            "forbidden_reply_to".into()
        )),
        "{h:?} {:?}",
        String::from_utf8_lossy(&d.data)
    );
    let m = worker.metrics().snapshot();
    assert_eq!(m.replied_ok, 1, "only X.svc's own request was answered");

    for c in [owner, conn, admin] {
        let _ = c.close(200, "done".into()).await;
    }
    worker.shutdown().await.unwrap();
    drop(defs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_caller_role_is_granted_its_operations_and_refused_the_others() {
    use crate::harness::assert_code;
    use authq::ErrorCode;
    use authq::protocol::ops::UserRef;
    let defs = Loaded::load();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir);
    config.amqp_url = defs.url("worker");
    config.namespace = "authq".into();
    // As deploy/authq.env.example: the admin user is admin, the web service has the reset role,
    // billing is a plain service.
    config.admin_callers = vec![defs.user("admin")];
    config.reset_callers = vec![defs.user("web")];
    let worker = WorkerHandle::start(config)
        .await
        .unwrap_or_else(|e| panic!("the worker starts: {e}"));
    let client = |role: &'static str| {
        let url = defs.url(role);
        async move {
            Client::connect_with(
                &url,
                ClientOptions::default()
                    .namespace("authq")
                    .timeout(Duration::from_secs(20)),
            )
            .await
            .unwrap_or_else(|e| panic!("{role} connects: {e}"))
        }
    };
    let (web, billing, admin) = (
        client("web").await,
        client("billing").await,
        client("admin").await,
    );
    let ann = || UserRef {
        user_id: None,
        email: Some("ann@example.com".into()),
    };

    // Service role (billing): the user-facing operations, nothing administrative.
    let reg = billing.register("ann@example.com").await.unwrap();
    billing
        .confirm_registration(
            "ann@example.com",
            reg.code.expose(),
            "correct horse battery",
        )
        .await
        .unwrap();
    billing
        .login("ann@example.com", "correct horse battery")
        .await
        .unwrap();
    assert_code(
        billing.start_reset("ann@example.com").await,
        ErrorCode::Forbidden,
    );
    assert_code(billing.suspend(ann()).await, ErrorCode::Forbidden);
    assert_code(billing.unsuspend(ann()).await, ErrorCode::Forbidden);
    assert_code(billing.delete_user(ann()).await, ErrorCode::Forbidden);

    // Reset role (web): the user-facing operations and start_reset, nothing more admin-like.
    web.login("ann@example.com", "correct horse battery")
        .await
        .unwrap();
    web.start_reset("ann@example.com").await.unwrap();
    assert_code(web.suspend(ann()).await, ErrorCode::Forbidden);
    assert_code(web.unsuspend(ann()).await, ErrorCode::Forbidden);
    assert_code(web.delete_user(ann()).await, ErrorCode::Forbidden);

    // Admin role: everything.
    admin.start_reset("ann@example.com").await.unwrap();
    admin.suspend(ann()).await.unwrap();
    admin.unsuspend(ann()).await.unwrap();
    admin.delete_user(ann()).await.unwrap();

    for c in [web, billing, admin] {
        let _ = c.close().await;
    }
    worker.shutdown().await.unwrap();
    drop(defs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_user_asks_a_policy_hook_through_its_server_named_reply_queue() {
    let defs = Loaded::load();
    // The hook: a service on the admin user's connection (any user that may declare and read
    // the hook's queue), allowing every login but `bad@example.com`.
    let hook = "authq-policy-hook";
    let served = connect(&defs.url("admin")).await;
    let hch = served.create_channel().await.unwrap();
    hch.queue_declare(
        hook.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let questions = hch
        .basic_consume(
            hook.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let asked = crate::policy::answer_hook(hch, questions);

    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir);
    config.amqp_url = defs.url("worker");
    config.namespace = "authq".into();
    config.admin_callers = vec![defs.user("admin")];
    config.policy.hook_queue = Some(hook.into());
    config.policy.hook_timeout = Duration::from_secs(5);
    let worker = WorkerHandle::start(config)
        .await
        .unwrap_or_else(|e| panic!("the worker starts with a policy hook as the worker user: {e}"));
    let web = Client::connect_with(
        &defs.url("web"),
        ClientOptions::default()
            .namespace("authq")
            .timeout(Duration::from_secs(20)),
    )
    .await
    .unwrap_or_else(|e| panic!("the service connects: {e}"));
    const PW: &str = "correct horse battery";
    for email in ["good@example.com", "bad@example.com"] {
        let reg = web.register(email).await.unwrap();
        web.confirm_registration(email, reg.code.expose(), PW)
            .await
            .unwrap();
    }
    // Allowed by the hook's answer (fail-closed: an unanswered question would deny)…
    web.login("good@example.com", PW).await.unwrap();
    // …and denied with the hook's own reason.
    let err = web.login("bad@example.com", PW).await.unwrap_err();
    assert_eq!(err.code(), Some(authq::ErrorCode::PolicyDenied));
    assert!(err.to_string().contains("account under review"), "{err}");
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 2);

    let _ = web.close().await;
    worker.shutdown().await.unwrap();
    let _ = served.close(200, "done".into()).await;
    drop(defs);
}
