//! The Redis set of suspended user ids, for gateways built the a-shine way (they check
//! `SISMEMBER {ns}:suspended <user_id>` on every request).
//!
//! Optional (`--redis-url`). The event relay keeps it up to date from the events it publishes
//! (`user.suspended` adds, `user.unsuspended` and `user.deleted` remove), and it is rebuilt
//! from the store whenever the relay (re)connects and every five minutes, so a Redis outage
//! only delays it. Redis is a cache here: the store stays the truth, and `check` refuses a
//! suspended user's sessions whatever Redis says.
//!
//! Cargo feature `redis` (on by default). Without it this module is a type with no values: a
//! configuration with `--redis-url` is refused at start-up, and nothing of Redis is compiled.

use authq_protocol::events::EventKind;
#[cfg(feature = "redis")]
use redis::AsyncCommands;

/// The set, and how to reach it.
#[cfg(feature = "redis")]
#[derive(Debug)]
pub struct SuspendedSet {
    client: redis::Client,
    key: String,
}

#[cfg(feature = "redis")]
impl SuspendedSet {
    /// The set `{namespace}:suspended` on the Redis server at `url`.
    pub fn new(url: &str, namespace: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            key: format!("{namespace}:suspended"),
        })
    }

    /// The key of the set.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Replaces the set with `ids`, atomically.
    pub async fn rebuild(&self, ids: &[String]) -> redis::RedisResult<()> {
        let mut conn = self.client.get_multiplexed_async_connection().await?;
        let mut pipe = redis::pipe();
        pipe.atomic().del(&self.key);
        if !ids.is_empty() {
            pipe.sadd(&self.key, ids);
        }
        pipe.query_async::<()>(&mut conn).await
    }

    /// Applies what an event says about suspension (other events change nothing).
    pub async fn apply(&self, kind: EventKind, user_id: &str) -> redis::RedisResult<()> {
        let add = match kind {
            EventKind::UserSuspended => true,
            EventKind::UserUnsuspended | EventKind::UserDeleted => false,
            _ => return Ok(()),
        };
        let mut conn = self.client.get_multiplexed_async_connection().await?;
        if add {
            conn.sadd::<_, _, ()>(&self.key, user_id).await
        } else {
            conn.srem::<_, _, ()>(&self.key, user_id).await
        }
    }
}

/// Without the `redis` feature: no set can exist.
#[cfg(not(feature = "redis"))]
#[derive(Debug)]
pub enum SuspendedSet {}

#[cfg(not(feature = "redis"))]
impl SuspendedSet {
    /// Always refused: this build has no Redis client.
    pub fn new(_url: &str, _namespace: &str) -> Result<Self, String> {
        Err("this authq was built without the `redis` feature".into())
    }

    /// The key of the set (no set exists).
    pub fn key(&self) -> &str {
        match *self {}
    }

    /// Replaces the set (no set exists).
    pub async fn rebuild(&self, _ids: &[String]) -> Result<(), String> {
        match *self {}
    }

    /// Applies an event (no set exists).
    pub async fn apply(&self, _kind: EventKind, _user_id: &str) -> Result<(), String> {
        match *self {}
    }
}
