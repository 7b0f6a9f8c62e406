//! The TOTP second factor: each user's sealed secret with the last time step a code was
//! accepted for (so a code is accepted once: [`Tx::mfa_accept_step`] is one conditional
//! `UPDATE`), recovery codes as keyed digests (consumed by one `DELETE`: of concurrent uses
//! exactly one succeeds), and the pending handles of logins answered `mfa_required` (digests,
//! single use, expiring).

use super::StoreError;
use super::query::{Tx, args};
use crate::crypto::Digest;

/// A user's TOTP enrolment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MfaRecord {
    /// The secret, sealed (`crate::handlers::mfa` seals and opens it).
    pub secret_sealed: Vec<u8>,
    /// Whether `mfa_confirm` activated it (else it is an enrolment in progress).
    pub enabled: bool,
    /// The last time step a code was accepted for (-1: none).
    pub last_step: i64,
}

/// A pending handle to store: what `mfa_verify` needs to open the session the login would have.
#[derive(Clone, Debug)]
pub struct NewMfaPending<'a> {
    /// The handle's digest.
    pub digest: &'a Digest,
    /// The user who passed the first factor.
    pub user_id: &'a str,
    /// When the handle expires (Unix ms).
    pub expires_at: i64,
    /// `password` or `social`.
    pub method: &'a str,
    /// The social provider (method `social`).
    pub provider: Option<&'a str>,
    /// The login's user agent (validated by the caller).
    pub user_agent: Option<&'a str>,
    /// The login's client address (validated by the caller).
    pub client_ip: Option<&'a str>,
}

/// A live pending handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MfaPendingRecord {
    /// The user who passed the first factor.
    pub user_id: String,
    /// `password` or `social`.
    pub method: String,
    /// The social provider (method `social`).
    pub provider: Option<String>,
    /// The login's user agent.
    pub user_agent: Option<String>,
    /// The login's client address.
    pub client_ip: Option<String>,
}

impl Tx<'_> {
    /// The user's TOTP enrolment, enabled or in progress.
    pub fn mfa_record(&mut self, user_id: &str) -> Result<Option<MfaRecord>, StoreError> {
        self.query_opt(
            "SELECT secret_sealed, enabled_at, last_step FROM mfa_totp WHERE user_id = ?1",
            args![user_id],
            |r| {
                Ok(MfaRecord {
                    secret_sealed: r.get(0)?,
                    enabled: r.get::<Option<i64>>(1)?.is_some(),
                    last_step: r.get(2)?,
                })
            },
        )
    }

    /// Whether the user's second factor is on.
    pub fn mfa_enabled(&mut self, user_id: &str) -> Result<bool, StoreError> {
        Ok(self.mfa_record(user_id)?.is_some_and(|r| r.enabled))
    }

    /// Starts (or restarts) an enrolment with this sealed secret. `false` (nothing changed) if
    /// the user's second factor is already on.
    pub fn mfa_begin_enrollment(
        &mut self,
        user_id: &str,
        secret_sealed: &[u8],
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = self.execute(
            "INSERT INTO mfa_totp (user_id, secret_sealed, enabled_at, last_step, created_at)
             VALUES (?1, ?2, NULL, -1, ?3)
             ON CONFLICT (user_id) DO UPDATE
             SET secret_sealed = excluded.secret_sealed, last_step = -1,
                 created_at = excluded.created_at
             WHERE mfa_totp.enabled_at IS NULL",
            args![user_id, secret_sealed, now],
        )?;
        Ok(n == 1)
    }

    /// Activates the enrolment whose secret is still `secret_sealed`, accepting time step
    /// `step`, and replaces the user's recovery codes with `recovery`. `false` (nothing
    /// changed) if it is on already or was replaced meanwhile.
    pub fn mfa_enable(
        &mut self,
        user_id: &str,
        secret_sealed: &[u8],
        step: i64,
        recovery: &[Digest],
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = self.execute(
            "UPDATE mfa_totp SET enabled_at = ?3, last_step = ?4
             WHERE user_id = ?1 AND secret_sealed = ?2 AND enabled_at IS NULL",
            args![user_id, secret_sealed, now, step],
        )?;
        if n != 1 {
            return Ok(false);
        }
        self.execute(
            "DELETE FROM mfa_recovery_codes WHERE user_id = ?1",
            args![user_id],
        )?;
        for digest in recovery {
            self.execute(
                "INSERT INTO mfa_recovery_codes (user_id, digest) VALUES (?1, ?2)",
                args![user_id, digest],
            )?;
        }
        Ok(true)
    }

    /// Accepts a code of time step `step` for the user's enabled second factor: only if no
    /// code of this step or a later one was accepted before (one conditional `UPDATE`, so of
    /// two workers accepting the same code at once exactly one succeeds).
    pub fn mfa_accept_step(&mut self, user_id: &str, step: i64) -> Result<bool, StoreError> {
        let n = self.execute(
            "UPDATE mfa_totp SET last_step = ?2
             WHERE user_id = ?1 AND enabled_at IS NOT NULL AND last_step < ?2",
            args![user_id, step],
        )?;
        Ok(n == 1)
    }

    /// Consumes one of the user's recovery codes. The codes left, or `None` if there was no
    /// such code (wrong, or used already).
    pub fn mfa_use_recovery_code(
        &mut self,
        user_id: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, StoreError> {
        let n = self.execute(
            "DELETE FROM mfa_recovery_codes WHERE user_id = ?1 AND digest = ?2",
            args![user_id, digest],
        )?;
        if n != 1 {
            return Ok(None);
        }
        let left: Option<i64> = self.query_value(
            "SELECT COUNT(*) FROM mfa_recovery_codes WHERE user_id = ?1",
            args![user_id],
        )?;
        Ok(Some(left.unwrap_or(0).max(0).unsigned_abs()))
    }

    /// Turns the user's second factor off: the secret, the recovery codes and the pending
    /// handles go. `false` if it was not on.
    pub fn mfa_disable(&mut self, user_id: &str) -> Result<bool, StoreError> {
        let n = self.execute(
            "DELETE FROM mfa_totp WHERE user_id = ?1 AND enabled_at IS NOT NULL",
            args![user_id],
        )?;
        if n != 1 {
            return Ok(false);
        }
        self.execute(
            "DELETE FROM mfa_recovery_codes WHERE user_id = ?1",
            args![user_id],
        )?;
        self.execute("DELETE FROM mfa_pending WHERE user_id = ?1", args![user_id])?;
        Ok(true)
    }

    /// Stores a pending handle.
    pub fn insert_mfa_pending(&mut self, new: &NewMfaPending<'_>) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO mfa_pending (handle_digest, user_id, expires_at, method, provider,
                                      user_agent, client_ip)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            args![
                new.digest,
                new.user_id,
                new.expires_at,
                new.method,
                new.provider,
                new.user_agent,
                new.client_ip
            ],
        )?;
        Ok(())
    }

    /// The live pending handle with this digest.
    pub fn mfa_pending(
        &mut self,
        digest: &Digest,
        now: i64,
    ) -> Result<Option<MfaPendingRecord>, StoreError> {
        self.query_opt(
            "SELECT user_id, method, provider, user_agent, client_ip FROM mfa_pending
             WHERE handle_digest = ?1 AND expires_at > ?2",
            args![digest, now],
            |r| {
                Ok(MfaPendingRecord {
                    user_id: r.get(0)?,
                    method: r.get(1)?,
                    provider: r.get(2)?,
                    user_agent: r.get(3)?,
                    client_ip: r.get(4)?,
                })
            },
        )
    }

    /// Consumes the live pending handle with this digest. `true` if this call consumed it.
    pub fn consume_mfa_pending(&mut self, digest: &Digest, now: i64) -> Result<bool, StoreError> {
        let n = self.execute(
            "DELETE FROM mfa_pending WHERE handle_digest = ?1 AND expires_at > ?2",
            args![digest, now],
        )?;
        Ok(n == 1)
    }
}
