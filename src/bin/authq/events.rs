//! `authq events`: binds a temporary queue to the events exchange and prints every event as
//! one JSON line, as it happens.

use crate::cli::EventsArgs;
use authq::ClientError;
use authq_protocol::Names;
use authq_protocol::redact_url;
use futures_util::StreamExt;
use lapin::options::QueueBindOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use std::io::Write;
use std::process::ExitCode;

/// The patterns bound when none is given: every event except the secret-bearing ones.
pub const DEFAULT_BINDINGS: &[&str] = &["auth.#", "user.#", "password.#", "session.#", "mfa.#"];

/// Runs `authq events` until SIGINT/SIGTERM (or `--count` events).
pub async fn run(args: EventsArgs) -> ExitCode {
    match watch(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authq events: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn watch(args: EventsArgs) -> anyhow::Result<()> {
    let names = Names::new(&args.broker.namespace)?;
    let redacted = redact_url(&args.broker.amqp_url);
    let broker = |e: lapin::Error| anyhow::anyhow!("broker at {redacted}: {e}");
    let url = &args.broker.amqp_url;
    let connection = Connection::connect(
        url,
        ConnectionProperties::default().with_connection_name("authq-events".into()),
    )
    .await
    .map_err(broker)?;
    let channel = connection.create_channel().await.map_err(broker)?;
    // Consumed before it is bound: nothing reaches it before the bindings anyway.
    let (queue, mut consumer) = authq_amqp::private_queue(&channel).await.map_err(broker)?;
    let patterns: Vec<String> = if args.bind.is_empty() {
        DEFAULT_BINDINGS.iter().map(|p| (*p).to_owned()).collect()
    } else {
        args.bind
    };
    for pattern in &patterns {
        channel
            .queue_bind(
                queue.clone(),
                names.events_exchange().into(),
                pattern.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| match e.kind() {
                lapin::ErrorKind::ProtocolError(_) => ClientError::NoDeployment {
                    namespace: names.namespace().to_owned(),
                }
                .into(),
                _ => broker(e),
            })?;
    }
    // Listening for SIGINT/SIGTERM before saying so, so a signal sent on that line is handled.
    let shutdown = crate::shutdown::shutdown_signal();
    // Tells a script (and the tests) that the bindings are in place.
    eprintln!(
        "authq events: listening on {} ({})",
        names.events_exchange(),
        patterns.join(", ")
    );
    let mut seen = 0u64;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&delivery.data);
                    let _ = out.write_all(b"\n");
                    let _ = out.flush();
                    seen += 1;
                    if args.count.is_some_and(|n| seen >= n) {
                        return Ok(());
                    }
                }
                Some(Err(_)) => return Err(ClientError::ConnectionLost.into()),
                None => return Err(ClientError::ConnectionLost.into()),
            },
        }
    }
}
