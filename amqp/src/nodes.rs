//! [`BrokerNodes`]: a setting may list several nodes of one RabbitMQ cluster
//! (`amqp://h1/%2f,amqp://h2/%2f`), and a connection goes to the first that answers, starting
//! with the one that answered last time, so a process whose node stopped reconnects to a
//! surviving one.

use authq_protocol::{broker_urls, redact_url};
use lapin::{Connection, ConnectionProperties};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The nodes of a broker setting, and which one answered last.
#[derive(Debug)]
pub struct BrokerNodes {
    urls: Vec<String>,
    last: AtomicUsize,
}

impl BrokerNodes {
    /// The nodes listed in `setting` (one URL, or several separated by commas).
    pub fn new(setting: &str) -> Self {
        let mut urls: Vec<String> = broker_urls(setting)
            .into_iter()
            .map(str::to_owned)
            .collect();
        if urls.is_empty() {
            // Nothing listed: the connection attempt reports the setting as lapin reads it.
            urls.push(setting.to_owned());
        }
        Self {
            urls,
            last: AtomicUsize::new(0),
        }
    }

    /// Connects to the first node that answers, trying each once, from the one that answered
    /// last; `adjust` may rewrite each URL first (e.g. to add a heartbeat). Returns the
    /// connection and the node's URL (password redacted), or the last node's error with its
    /// redacted URL. Unbounded: callers bound it with their own timeout, which also covers
    /// what they set up on the connection.
    pub async fn connect(
        &self,
        properties: impl Fn() -> ConnectionProperties,
        adjust: impl Fn(&str) -> String,
    ) -> Result<(Connection, String), (lapin::Error, String)> {
        let n = self.urls.len();
        let first = self.last.load(Ordering::Relaxed);
        let mut failure = None;
        for i in 0..n {
            let index = (first + i) % n;
            let url = &self.urls[index];
            match Connection::connect(&adjust(url), properties()).await {
                Ok(connection) => {
                    self.last.store(index, Ordering::Relaxed);
                    return Ok((connection, redact_url(url)));
                }
                Err(e) => {
                    if n > 1 {
                        tracing::warn!(url = %redact_url(url), error = %e, "broker node unreachable");
                    }
                    failure = Some((e, redact_url(url)));
                }
            }
        }
        Err(failure.unwrap_or_else(|| unreachable!("at least one URL was tried")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_or_several() {
        assert_eq!(BrokerNodes::new("amqp://a/%2f").urls, ["amqp://a/%2f"]);
        assert_eq!(
            BrokerNodes::new("amqp://a/%2f,amqp://b/%2f").urls,
            ["amqp://a/%2f", "amqp://b/%2f"]
        );
        assert_eq!(BrokerNodes::new("").urls, [""]);
    }
}
