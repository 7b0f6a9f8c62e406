//! `authq call`: one request, its reply on stdout, an exit status that says how it went.

use crate::cli::CallArgs;
use authq::{Client, ClientOptions};
use authq_protocol::{Envelope, Status};
use std::io::{Read, Write};
use std::process::ExitCode;

/// Exit status for an ok reply.
const OK: u8 = 0;
/// Exit status for an error reply.
const ERROR_REPLY: u8 = 1;
/// Exit status when no reply came (timeout, broker unreachable, unreadable reply).
const NO_REPLY: u8 = 2;

/// Runs `authq call`.
pub async fn run(args: CallArgs) -> ExitCode {
    let body = if args.json == "-" {
        let mut buf = Vec::new();
        if let Err(e) = std::io::stdin().read_to_end(&mut buf) {
            eprintln!("authq call: cannot read the request from stdin: {e}");
            return ExitCode::from(NO_REPLY);
        }
        buf
    } else {
        args.json.into_bytes()
    };
    let options = ClientOptions::default()
        .namespace(args.broker.namespace)
        .timeout(args.timeout)
        .attempts(args.attempts)
        .connection_name("authq-call");
    let client = match Client::connect_with(&args.broker.amqp_url, options).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("authq call: {}", e.report());
            if matches!(e, authq::ClientError::Connect { .. }) {
                eprintln!(
                    "authq call: is RabbitMQ running? Start it with `rabbitmq-server -detached` \
                     (install it with `apt-get install rabbitmq-server`)"
                );
            }
            return ExitCode::from(NO_REPLY);
        }
    };
    let message_id = args
        .message_id
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let outcome = client
        .call_raw_with_id(&args.operation, &body, args.timeout, &message_id)
        .await;
    let _ = client.close().await;
    let reply = match outcome {
        Ok(reply) => reply,
        Err(e) => {
            eprintln!("authq call: {}", e.report());
            return ExitCode::from(NO_REPLY);
        }
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&reply);
    let _ = stdout.write_all(b"\n");
    match serde_json::from_slice::<Envelope<serde::de::IgnoredAny>>(&reply) {
        Ok(Envelope {
            status: Status::Ok, ..
        }) => ExitCode::from(OK),
        Ok(Envelope {
            status: Status::Error,
            ..
        }) => ExitCode::from(ERROR_REPLY),
        Err(e) => {
            eprintln!("authq call: the reply is not an authq envelope: {e}");
            ExitCode::from(NO_REPLY)
        }
    }
}
