//! Policies that may refuse a login (and, optionally, a registration), like an `on_auth`
//! trigger: a built-in deny-list of emails and domains, then an external hook, asked over the
//! broker, whose reply may deny with a reason.
//!
//! The hook is an RPC: the worker publishes `{"event":"login","user_id":…,"email":…}` (or
//! `"register"`, without `user_id`) to the operator-named queue through the default exchange,
//! with `reply_to` = the worker's own exclusive reply queue and a `correlation_id`, and waits up
//! to the configured timeout for `{"allow":true}` or `{"allow":false,"reason":"…"}`. No answer in
//! time (the hook is down, slow, or its queue does not exist) allows or denies as configured
//! (`fail_open`). A refusal is an ordinary `policy_denied` error reply and an `auth.login.failed`
//! event with the policy's reason.

use crate::config::PolicyConfig;
use authq_amqp::{Pending, dispatch, private_queue};
use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Connection};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use tracing::{debug, warn};

/// What a policy decides about.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyQuestion {
    /// `login` or `register`.
    pub event: &'static str,
    /// The user, for a login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The email.
    pub email: String,
}

/// A hook's answer.
#[derive(Debug, Deserialize)]
struct HookAnswer {
    allow: bool,
    #[serde(default)]
    reason: Option<String>,
}

/// The policy chain of a worker.
#[derive(Debug)]
pub struct Policy {
    config: PolicyConfig,
    /// The deny-list, lower-cased once.
    deny: Vec<Denied>,
    hook: Mutex<Option<Arc<HookClient>>>,
}

/// One deny-list entry.
#[derive(Debug)]
enum Denied {
    /// An exact email.
    Email(String),
    /// A domain and its subdomains (`@example.com`).
    Domain(String),
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Email(e) => f.write_str(e),
            Self::Domain(d) => write!(f, "@{d}"),
        }
    }
}

impl Policy {
    /// The chain `config` describes; the hook client is attached by each broker connection.
    pub fn new(config: PolicyConfig) -> Self {
        let deny = config
            .deny
            .iter()
            .map(|d| {
                let d = d.trim().to_lowercase();
                // Compared in the canonical form emails are keyed by, so a fullwidth or
                // quoted spelling of a denied address or domain is denied too.
                match d.strip_prefix('@') {
                    Some(domain) => {
                        Denied::Domain(idna::domain_to_ascii(domain).unwrap_or(domain.to_owned()))
                    }
                    None => Denied::Email(crate::domain::canonical_email_key(&d).unwrap_or(d)),
                }
            })
            .collect();
        Self {
            config,
            deny,
            hook: Mutex::new(None),
        }
    }

    /// Whether registrations go through the chain too.
    pub fn covers_registration(&self) -> bool {
        self.config.on_register
    }

    /// Attaches the hook client of a new broker connection (when a hook is configured).
    pub async fn connect(&self, connection: &Connection) -> Result<(), lapin::Error> {
        if self.config.hook_queue.is_none() {
            return Ok(());
        }
        let client = HookClient::open(connection).await?;
        *self.hook.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(client));
        Ok(())
    }

    /// Runs the chain: `Err(reason)` if a policy refuses.
    pub async fn check(&self, question: &PolicyQuestion) -> Result<(), String> {
        self.deny_list(&question.email)?;
        let Some(queue) = &self.config.hook_queue else {
            return Ok(());
        };
        self.ask_hook(queue, question).await
    }

    /// The deny-list alone (no hook call): `Err(reason)` if it names `email`. For a check
    /// before any effect when the full chain runs later with more facts (`social_login`).
    pub fn deny_list(&self, email: &str) -> Result<(), String> {
        let email = crate::domain::canonical_email_key(email.trim())
            .unwrap_or_else(|_| email.trim().to_lowercase());
        let domain = email.rsplit_once('@').map_or("", |(_, d)| d);
        for denied in &self.deny {
            let hit = match denied {
                Denied::Email(e) => email == *e,
                Denied::Domain(d) => {
                    domain == d
                        || domain
                            .strip_suffix(d.as_str())
                            .is_some_and(|sub| sub.ends_with('.'))
                }
            };
            if hit {
                return Err(format!("denied by the deny-list ({denied})"));
            }
        }
        Ok(())
    }

    /// Asks the hook on `queue`.
    async fn ask_hook(&self, queue: &str, question: &PolicyQuestion) -> Result<(), String> {
        let client = self.hook.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let answer = match client {
            Some(client) => client.ask(queue, question, self.config.hook_timeout).await,
            None => None,
        };
        match answer {
            Some(HookAnswer { allow: true, .. }) => Ok(()),
            Some(HookAnswer {
                allow: false,
                reason,
            }) => Err(reason.unwrap_or_else(|| "denied by the policy hook".into())),
            None if self.config.fail_open => {
                warn!(
                    queue,
                    "policy hook did not answer in time: allowed (fail-open)"
                );
                Ok(())
            }
            None => {
                warn!(
                    queue,
                    "policy hook did not answer in time: denied (fail-closed)"
                );
                Err("the policy hook did not answer".into())
            }
        }
    }
}

/// Requests to the hook, and the replies they wait for (`authq_amqp`'s private queue and
/// pending calls, as the client library uses them).
#[derive(Debug)]
struct HookClient {
    channel: Channel,
    reply_queue: ShortString,
    pending: Arc<Pending>,
}

impl HookClient {
    async fn open(connection: &Connection) -> Result<Self, lapin::Error> {
        let channel = connection.create_channel().await?;
        let (reply_queue, consumer) = private_queue(&channel).await?;
        let pending = Arc::new(Pending::default());
        tokio::spawn(dispatch(consumer, Arc::clone(&pending)));
        Ok(Self {
            channel,
            reply_queue,
            pending,
        })
    }

    /// Asks the hook; `None` when no usable answer came within `timeout`.
    async fn ask(
        &self,
        queue: &str,
        question: &PolicyQuestion,
        timeout: std::time::Duration,
    ) -> Option<HookAnswer> {
        let (waiter, reply) = self.pending.register()?;
        let body = serde_json::to_vec(question).ok()?;
        let properties = BasicProperties::default()
            .with_content_type(authq_protocol::CONTENT_TYPE.into())
            .with_reply_to(self.reply_queue.clone())
            .with_correlation_id(waiter.correlation_id().into())
            .with_expiration(timeout.as_millis().to_string().into());
        let published = self
            .channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await;
        let answer = match published {
            Ok(_) => tokio::time::timeout(timeout, reply).await.ok()?.ok(),
            Err(e) => {
                debug!(error = %e, "cannot ask the policy hook");
                None
            }
        };
        drop(waiter);
        match answer? {
            authq_amqp::Answer::Reply(body) => serde_json::from_slice(&body).ok(),
            authq_amqp::Answer::Refused(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deny_list_matches_every_spelling_of_an_address_or_domain() {
        let policy = Policy::new(PolicyConfig {
            deny: vec!["eve@example.com".into(), "@Blocked.Example".into()],
            ..PolicyConfig::default()
        });
        for denied in [
            "eve@example.com",
            "EVE@Example.com",
            "\"eve\"@example.com",
            "\u{FF45}ve@example.com",
            "mal@blocked.example",
            "mal@sub.blocked.example",
            "mal@\u{FF42}locked.example",
        ] {
            assert!(policy.deny_list(denied).is_err(), "{denied}");
        }
        for allowed in ["ann@example.com", "mal@notblocked.example", ""] {
            assert!(policy.deny_list(allowed).is_ok(), "{allowed}");
        }
    }
}
