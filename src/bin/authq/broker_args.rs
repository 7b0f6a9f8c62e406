//! The broker flags every subcommand that talks to RabbitMQ shares (`--amqp-url`,
//! `--namespace`). A leaf: it imports no other module of the binary.

use authq_protocol::names::DEFAULT_NAMESPACE;
use authq_worker::config::DEFAULT_AMQP_URL;
use clap::Args;

/// Where the broker is and which deployment to talk to.
#[derive(Clone, Debug, Args)]
pub struct BrokerArgs {
    /// AMQP URL of the RabbitMQ broker (`amqp://user:password@host:port/vhost`) [default: the
    /// local broker, 127.0.0.1:5672, vhost `/`, with RabbitMQ's default account].
    #[arg(
        long,
        env = "AUTHQ_AMQP_URL",
        default_value = DEFAULT_AMQP_URL,
        hide_default_value = true,
        hide_env_values = true
    )]
    pub amqp_url: String,
    /// Namespace: the prefix of every exchange and queue, so several deployments share a broker.
    #[arg(long, env = "AUTHQ_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
}
