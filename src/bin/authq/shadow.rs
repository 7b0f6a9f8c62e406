//! `authq shadow`: trying a deployment on real traffic without answering anyone.
//!
//! It binds a queue of its own to a running deployment's request exchange for the read-only
//! operations (`ping`, `check`, `list_sessions`, `get_profile`, `deletion_status`), so the
//! broker gives it a copy of each such request while the running deployment answers the callers
//! as before. Each copy is sent to both deployments — the running one and the one being tried —
//! through the client library, and the two replies are compared: status, error code, and `data`
//! without the fields that move on their own (`expires_at`, `renewed`: every `check` may renew).
//! A difference is reported with the paths that differ, never with the request's body
//! (sessions are secrets).
//!
//! Sending a `check` again renews the session like the original did; reads have no other
//! effect. The copy queue is bounded (oldest dropped): shadowing samples a flood rather than
//! holding it.

use crate::broker_args::BrokerArgs;
use anyhow::Context as _;
use authq::{Client, ClientOptions};
use authq_protocol::{Names, Operation};
use clap::Args;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Reply fields that may differ between two answers to the same read with nothing wrong.
const VOLATILE: &[&str] = &["expires_at", "renewed"];

/// Copies waiting in the shadow's queue at most; past it the oldest are dropped.
const QUEUE_MAX_LENGTH: i64 = 10_000;

/// The `message_id` prefix of the shadow's own requests: its requests to the running deployment
/// reach that deployment's request exchange too, and the copies of them are skipped (else each
/// would be copied and sent again, for ever).
const OWN_PREFIX: &str = "authq-shadow-";

/// Comparisons in flight at once (also the queue's prefetch).
const IN_FLIGHT: u16 = 64;

/// `authq shadow`.
#[derive(Debug, Args)]
pub struct ShadowArgs {
    /// The broker and the deployment being tried (`--namespace`).
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// The namespace of the running deployment whose requests are copied (its broker user, the
    /// URL's, needs `read` on that exchange to bind: the shipped `authq-admin` has it).
    #[arg(long, env = "AUTHQ_SHADOW_SOURCE")]
    pub source: String,
    /// Operations to copy (repeatable, or comma-separated); only read-only ones are accepted
    /// [default: every read-only operation but `list_users`, `get_user`,
    /// `list_service_clients` and `service_token`].
    #[arg(long = "operation", value_delimiter = ',', value_parser = parse_read)]
    pub operations: Vec<Operation>,
    /// Stop after this many requests compared (or failed).
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this long (e.g. `10m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// How long each side may take to answer a copy.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// One JSON object per line (`ready`, `differs`, `failed`, `summary`) instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_read(s: &str) -> Result<Operation, String> {
    match Operation::parse(s) {
        Some(op) if !op.is_mutating() => Ok(op),
        Some(op) => Err(format!(
            "{op} changes state: shadow copies read-only operations only"
        )),
        None => Err(format!("unknown operation {s:?}")),
    }
}

/// What a run saw.
#[derive(Debug, Default)]
struct Tally {
    compared: u64,
    differ: u64,
    failed: u64,
    by_operation: BTreeMap<&'static str, u64>,
}

/// Runs `authq shadow`: exit status 0 when every reply matched, 1 when some differed, 2 when
/// it could not run.
pub async fn run(args: ShadowArgs) -> ExitCode {
    match shadow(args).await {
        Ok(tally) if tally.differ == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("authq shadow: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Reads copied only when named with `--operation`: the administrative ones (shadow sends them
/// again as its own broker user, which needs the admin role for them), and `service_token`,
/// whose request carries a client secret and whose reply differs every time (a new token).
const NOT_BY_DEFAULT: [Operation; 4] = [
    Operation::ListUsers,
    Operation::GetUser,
    Operation::ListServiceClients,
    Operation::ServiceToken,
];

async fn shadow(args: ShadowArgs) -> anyhow::Result<Tally> {
    let source = Names::new(&args.source).map_err(|e| anyhow::anyhow!("--source: {e}"))?;
    let operations: Vec<Operation> = if args.operations.is_empty() {
        Operation::ALL
            .iter()
            .copied()
            .filter(|op| !op.is_mutating() && !NOT_BY_DEFAULT.contains(op))
            .collect()
    } else {
        args.operations.clone()
    };
    let live = connect(&args, source.namespace()).await?;
    let tried = connect(&args, &args.broker.namespace).await?;

    let connection = Connection::connect(
        &args.broker.amqp_url,
        ConnectionProperties::default().with_connection_name("authq-shadow-copies".into()),
    )
    .await
    .context("cannot reach the broker")?;
    let channel = connection.create_channel().await?;
    let mut queue_args = FieldTable::default();
    queue_args.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(QUEUE_MAX_LENGTH),
    );
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            queue_args,
        )
        .await
        .context("declaring the copy queue")?;
    for op in &operations {
        channel
            .queue_bind(
                queue.name().clone(),
                source.request_exchange().into(),
                op.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| {
                format!(
                    "binding to {:?} (the broker user needs read on it)",
                    source.request_exchange()
                )
            })?;
    }
    channel
        .basic_qos(IN_FLIGHT, BasicQosOptions::default())
        .await?;
    let mut copies = channel
        .basic_consume(
            queue.name().clone(),
            "authq-shadow".into(),
            BasicConsumeOptions {
                exclusive: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let names: Vec<&str> = operations.iter().map(|op| op.as_str()).collect();
    if args.json {
        println!(
            "{}",
            json!({"ready": {"source": source.namespace(), "tried": args.broker.namespace, "operations": names}})
        );
    } else {
        eprintln!(
            "authq shadow: copying {} from {:?}, comparing with {:?}",
            names.join(", "),
            source.namespace(),
            args.broker.namespace
        );
    }

    let tally = Arc::new(Mutex::new(Tally::default()));
    let permits = Arc::new(Semaphore::new(usize::from(IN_FLIGHT)));
    let mut started = 0u64;
    let stop = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop);
    loop {
        if args.count.is_some_and(|n| started >= n) {
            break;
        }
        let delivery = tokio::select! {
            next = copies.next() => match next {
                Some(Ok(d)) => d,
                Some(Err(e)) => return Err(e).context("the copy queue's consumer failed"),
                None => anyhow::bail!("the broker cancelled the copy queue's consumer"),
            },
            () = &mut stop => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        let own = delivery
            .properties
            .message_id()
            .as_ref()
            .is_some_and(|m| m.as_str().starts_with(OWN_PREFIX));
        let Some(op) = Operation::parse(delivery.routing_key.as_str()).filter(|_| !own) else {
            let _ = channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
                .await;
            continue;
        };
        started += 1;
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let (live, tried, tally, json, channel) = (
            live.clone(),
            tried.clone(),
            Arc::clone(&tally),
            args.json,
            channel.clone(),
        );
        tokio::spawn(async move {
            let message_id = delivery
                .properties
                .message_id()
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let id = format!("{OWN_PREFIX}{}", uuid::Uuid::new_v4());
            let (a, b) = tokio::join!(
                live.call_raw_with_id(op.as_str(), &delivery.data, live.options().timeout, &id),
                tried.call_raw_with_id(op.as_str(), &delivery.data, tried.options().timeout, &id),
            );
            let line = compare(op, &message_id, a, b, &mut lock(&tally));
            if let Some(line) = line {
                println!("{}", if json { line.0 } else { line.1 });
            }
            let _ = channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
                .await;
            drop(permit);
        });
    }
    // The comparisons in flight end (each within the timeout) before the summary.
    let _ = permits.acquire_many(u32::from(IN_FLIGHT)).await;
    let _ = connection.close(200, "shadow done".into()).await;
    let _ = live.close().await;
    let _ = tried.close().await;
    let tally = std::mem::take(&mut *lock(&tally));
    let summary = json!({"summary": {
        "compared": tally.compared, "differ": tally.differ, "failed": tally.failed,
        "differ_by_operation": tally.by_operation,
    }});
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "authq shadow: {} compared, {} differ, {} failed {}",
            tally.compared,
            tally.differ,
            tally.failed,
            serde_json::to_string(&tally.by_operation).unwrap_or_default()
        );
    }
    Ok(tally)
}

async fn connect(args: &ShadowArgs, namespace: &str) -> anyhow::Result<Client> {
    let options = ClientOptions::default()
        .namespace(namespace.to_owned())
        .timeout(args.timeout)
        .connection_name("authq-shadow");
    Client::connect_with(&args.broker.amqp_url, options)
        .await
        .map_err(|e| anyhow::anyhow!(e.report()))
        .with_context(|| format!("cannot reach the deployment {namespace:?}"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Compares the two replies to one copy and counts it; returns the lines to print (JSON,
/// text) when they differ or a side failed.
fn compare(
    op: Operation,
    message_id: &str,
    live: Result<Vec<u8>, authq::ClientError>,
    tried: Result<Vec<u8>, authq::ClientError>,
    tally: &mut Tally,
) -> Option<(String, String)> {
    let (live, tried) = match (live, tried) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            tally.failed += 1;
            let why = |r: &Result<Vec<u8>, authq::ClientError>| match r {
                Ok(_) => "answered".to_owned(),
                Err(e) => e.to_string(),
            };
            let (a, b) = (why(&a), why(&b));
            return Some((
                json!({"failed": {"operation": op.as_str(), "message_id": message_id, "live": a, "tried": b}})
                    .to_string(),
                format!("failed: {op} (message_id {message_id}): live {a}; tried {b}"),
            ));
        }
    };
    tally.compared += 1;
    let (live, tried) = (normalized(&live), normalized(&tried));
    let mut paths = Vec::new();
    differences("", &live, &tried, &mut paths);
    if paths.is_empty() {
        return None;
    }
    tally.differ += 1;
    *tally.by_operation.entry(op.as_str()).or_default() += 1;
    let (a, b) = (outcome(&live), outcome(&tried));
    Some((
        json!({"differs": {"operation": op.as_str(), "message_id": message_id, "live": a, "tried": b, "paths": paths}})
            .to_string(),
        format!(
            "differs: {op} (message_id {message_id}): live {a}, tried {b}; at {}",
            paths.join(", ")
        ),
    ))
}

/// A reply envelope as compared: the error's code without its message (wording may change
/// between versions), and `data` without [`VOLATILE`] fields. A body that is not JSON is kept
/// as a string.
fn normalized(body: &[u8]) -> Value {
    let mut value: Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
    if let Some(error) = value.get_mut("error").and_then(Value::as_object_mut) {
        error.retain(|k, _| k == "code");
    }
    if let Some(data) = value.get_mut("data") {
        strip(data);
    }
    value
}

fn strip(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !VOLATILE.contains(&k.as_str()));
            map.values_mut().for_each(strip);
        }
        Value::Array(items) => items.iter_mut().for_each(strip),
        _ => {}
    }
}

/// The JSON paths at which `a` and `b` differ (a key on one side only counts).
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match (x.get(key), y.get(key)) {
                    (Some(p), Some(q)) => differences(&sub, p, q, out),
                    _ => out.push(sub),
                }
            }
        }
        _ if a != b => out.push(if path.is_empty() { "." } else { path }.to_owned()),
        _ => {}
    }
}

/// `ok` or `error CODE`.
fn outcome(v: &Value) -> String {
    match v.get("status").and_then(Value::as_str) {
        Some("ok") => "ok".to_owned(),
        Some(status) => match v.pointer("/error/code").and_then(Value::as_str) {
            Some(code) => format!("{status} {code}"),
            None => status.to_owned(),
        },
        None => "unreadable".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_and_error_wording_are_not_differences() {
        let a = normalized(
            br#"{"status":"ok","data":{"user":{"id":"u"},"expires_at":1,"renewed":false}}"#,
        );
        let b = normalized(
            br#"{"status":"ok","data":{"user":{"id":"u"},"expires_at":2,"renewed":true}}"#,
        );
        let mut paths = Vec::new();
        differences("", &a, &b, &mut paths);
        assert!(paths.is_empty(), "{paths:?}");
        let e1 = normalized(br#"{"status":"error","error":{"code":"x","message":"one"}}"#);
        let e2 = normalized(br#"{"status":"error","error":{"code":"x","message":"two"}}"#);
        differences("", &e1, &e2, &mut paths);
        assert!(paths.is_empty(), "{paths:?}");
    }

    #[test]
    fn differences_name_their_paths() {
        let a = normalized(br#"{"status":"ok","data":{"user":{"email":"a","state":"active"}}}"#);
        let b = normalized(br#"{"status":"error","error":{"code":"session_invalid"}}"#);
        let mut paths = Vec::new();
        differences("", &a, &b, &mut paths);
        assert_eq!(paths, ["data", "error", "status"]);
        assert_eq!(outcome(&b), "error session_invalid");
        let c = normalized(br#"{"status":"ok","data":{"user":{"email":"b","state":"active"}}}"#);
        paths.clear();
        differences("", &a, &c, &mut paths);
        assert_eq!(paths, ["data.user.email"]);
    }

    #[test]
    fn only_read_only_operations_can_be_shadowed() {
        assert_eq!(parse_read("check"), Ok(Operation::Check));
        assert!(parse_read("login").is_err());
        assert!(parse_read("nope").is_err());
    }
}
