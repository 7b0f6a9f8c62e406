//! Deletion cascades: which services must acknowledge a deleted user, and which did.

use super::StoreError;
use super::query::{Tx, args};

/// A deletion cascade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletionRecord {
    /// The deleted user.
    pub user_id: String,
    /// When it was deleted (Unix ms).
    pub requested_at: i64,
    /// When the cascade completes regardless (Unix ms).
    pub deadline: i64,
    /// Services that acknowledged, by name.
    pub acknowledged: Vec<String>,
    /// Services that did not yet.
    pub pending: Vec<String>,
    /// When it completed.
    pub completed_at: Option<i64>,
}

/// What [`Tx::acknowledge_deletion`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeletionAck {
    /// No cascade is tracked for this user.
    NoDeletion,
    /// The service is not one the cascade waits for.
    UnknownService,
    /// Recorded; the cascade as it now stands.
    Recorded(DeletionRecord),
}

impl Tx<'_> {
    /// Starts tracking the deletion cascade of `user_id`: every one of `services` must
    /// acknowledge it before `deadline`.
    pub fn begin_deletion(
        &mut self,
        user_id: &str,
        services: &[String],
        now: i64,
        deadline: i64,
    ) -> Result<(), StoreError> {
        // A cascade tracked before for this id starts over (its services go with it).
        self.execute("DELETE FROM deletions WHERE user_id = ?1", args![user_id])?;
        self.execute(
            "INSERT INTO deletions (user_id, requested_at, deadline) VALUES (?1, ?2, ?3)",
            args![user_id, now, deadline],
        )?;
        for service in services {
            self.execute(
                "INSERT INTO deletion_services (user_id, service) VALUES (?1, ?2)
                 ON CONFLICT (user_id, service) DO NOTHING",
                args![user_id, service],
            )?;
        }
        Ok(())
    }

    /// Records that `service` deleted its data about `user_id` (a repeat changes nothing).
    pub fn acknowledge_deletion(
        &mut self,
        user_id: &str,
        service: &str,
        now: i64,
    ) -> Result<DeletionAck, StoreError> {
        if self.deletion(user_id)?.is_none() {
            return Ok(DeletionAck::NoDeletion);
        }
        let n = self.execute(
            "UPDATE deletion_services SET acknowledged_at = coalesce(acknowledged_at, ?3)
             WHERE user_id = ?1 AND service = ?2",
            args![user_id, service, now],
        )?;
        if n == 0 {
            return Ok(DeletionAck::UnknownService);
        }
        Ok(self
            .deletion(user_id)?
            .map_or(DeletionAck::NoDeletion, DeletionAck::Recorded))
    }

    /// The deletion cascade of `user_id`, if one is tracked.
    pub fn deletion(&mut self, user_id: &str) -> Result<Option<DeletionRecord>, StoreError> {
        let Some((requested_at, deadline, completed_at)) = self.query_opt(
            "SELECT requested_at, deadline, completed_at FROM deletions WHERE user_id = ?1",
            args![user_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?
        else {
            return Ok(None);
        };
        let services = self.query_all(
            "SELECT service, acknowledged_at
             FROM deletion_services WHERE user_id = ?1 ORDER BY service",
            args![user_id],
            |r| Ok((r.get::<String>(0)?, r.get::<Option<i64>>(1)?.is_some())),
        )?;
        let (acknowledged, pending): (Vec<_>, Vec<_>) =
            services.into_iter().partition(|(_, done)| *done);
        Ok(Some(DeletionRecord {
            user_id: user_id.to_owned(),
            requested_at,
            deadline,
            acknowledged: acknowledged.into_iter().map(|(s, _)| s).collect(),
            pending: pending.into_iter().map(|(s, _)| s).collect(),
            completed_at,
        }))
    }

    /// Marks the cascade of `user_id` complete; `false` if it already was.
    pub fn complete_deletion(&mut self, user_id: &str, now: i64) -> Result<bool, StoreError> {
        let n = self.execute(
            "UPDATE deletions SET completed_at = ?2 WHERE user_id = ?1 AND completed_at IS NULL",
            args![user_id, now],
        )?;
        Ok(n == 1)
    }

    /// The cascades still open whose deadline has passed.
    pub fn overdue_deletions(&mut self, now: i64) -> Result<Vec<DeletionRecord>, StoreError> {
        let ids: Vec<String> = self.query_all(
            "SELECT user_id FROM deletions WHERE completed_at IS NULL AND deadline <= ?1",
            args![now],
            |r| r.get(0),
        )?;
        let mut overdue = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(d) = self.deletion(&id)? {
                overdue.push(d);
            }
        }
        Ok(overdue)
    }
}
