//! One-time codes: registration confirmations and password resets, stored as keyed digests and
//! consumed by one conditional `DELETE` (of concurrent uses exactly one succeeds).

use super::StoreError;
use super::query::{Tx, args};
use super::users::UserRecord;
use crate::crypto::Digest;
use authq_protocol::ops::UserState;

/// What a one-time secret is for. A code issued for one purpose never works for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodePurpose {
    /// A registration's confirmation code.
    Confirm,
    /// A password reset token.
    Reset,
}

impl CodePurpose {
    /// The stored form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Confirm => "confirm",
            Self::Reset => "reset",
        }
    }

    /// The state the user must be in for a code of this purpose to work.
    pub const fn required_state(self) -> UserState {
        match self {
            Self::Confirm => UserState::Pending,
            Self::Reset => UserState::Active,
        }
    }
}

/// A stored one-time code, for verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeRecord {
    /// The user it was issued to.
    pub user_id: String,
    /// Its digest.
    pub digest: Digest,
    /// When it expires (Unix ms).
    pub expires_at: i64,
}

impl Tx<'_> {
    /// The live one-time code of `purpose` for the user with this email, if the user is in the
    /// state the purpose requires ([`CodePurpose::required_state`]) and the code has not
    /// expired at `now`.
    pub fn find_code(
        &mut self,
        email_key: &str,
        purpose: CodePurpose,
        now: i64,
    ) -> Result<Option<CodeRecord>, StoreError> {
        self.query_opt(
            "SELECT c.user_id, c.digest, c.expires_at
             FROM codes c JOIN users u ON u.id = c.user_id
             WHERE u.email_key = ?1 AND c.purpose = ?2 AND u.state = ?3 AND c.expires_at > ?4",
            args![
                email_key,
                purpose.as_str(),
                purpose.required_state().as_str(),
                now
            ],
            |r| {
                Ok(CodeRecord {
                    user_id: r.get(0)?,
                    digest: r.digest(1)?,
                    expires_at: r.get(2)?,
                })
            },
        )
    }

    /// Counts a wrong guess against the code with this digest; the code is destroyed once it
    /// has had `max_attempts` wrong guesses.
    pub fn code_failed(
        &mut self,
        user_id: &str,
        purpose: CodePurpose,
        digest: &Digest,
        max_attempts: u32,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE codes SET attempts = attempts + 1
             WHERE user_id = ?1 AND purpose = ?2 AND digest = ?3",
            args![user_id, purpose.as_str(), digest],
        )?;
        self.execute(
            "DELETE FROM codes WHERE user_id = ?1 AND purpose = ?2 AND attempts >= ?3",
            args![user_id, purpose.as_str(), max_attempts],
        )?;
        Ok(())
    }

    /// Consumes a live code with exactly this digest. `true` if one was consumed.
    fn consume_code(
        &mut self,
        user_id: &str,
        purpose: CodePurpose,
        digest: &Digest,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = self.execute(
            "DELETE FROM codes
             WHERE user_id = ?1 AND purpose = ?2 AND digest = ?3 AND expires_at > ?4",
            args![user_id, purpose.as_str(), digest, now],
        )?;
        Ok(n == 1)
    }

    /// Consumes the confirmation code (only if it still has this digest and has not expired),
    /// sets the password hash and makes the pending user active. `None` if the code was
    /// consumed or replaced meanwhile.
    pub fn confirm_registration(
        &mut self,
        user_id: &str,
        code: &Digest,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<UserRecord>, StoreError> {
        if !self.consume_code(user_id, CodePurpose::Confirm, code, now)? {
            return Ok(None);
        }
        let activated = self.execute(
            "UPDATE users SET password_hash = ?2, state = 'active', updated_at = ?3
             WHERE id = ?1 AND state = 'pending'",
            args![user_id, password_hash, now],
        )?;
        if activated != 1 {
            return Ok(None); // not pending any more: the code was dead anyway
        }
        self.user_by_id(user_id)
    }

    /// Issues (or replaces) the reset token of the active user with this email. `false` (and
    /// nothing stored) if there is no such active user.
    pub fn start_reset(
        &mut self,
        email_key: &str,
        digest: &Digest,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let user_id: Option<String> = self.query_value(
            "SELECT id FROM users WHERE email_key = ?1 AND state = 'active'",
            args![email_key],
        )?;
        let Some(user_id) = user_id else {
            return Ok(false);
        };
        self.execute(
            "INSERT INTO codes (user_id, purpose, digest, expires_at, attempts, created_at)
             VALUES (?1, 'reset', ?2, ?3, 0, ?4)
             ON CONFLICT (user_id, purpose) DO UPDATE
             SET digest = excluded.digest, expires_at = excluded.expires_at, attempts = 0,
                 created_at = excluded.created_at",
            args![&user_id, digest, expires_at, now],
        )?;
        Ok(true)
    }

    /// Consumes the reset token (only if it still has this digest and has not expired), sets
    /// the new password hash and ends every session of the user. `None` if the token was
    /// consumed or replaced meanwhile.
    pub fn complete_reset(
        &mut self,
        user_id: &str,
        token: &Digest,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<(UserRecord, u64)>, StoreError> {
        if !self.consume_code(user_id, CodePurpose::Reset, token, now)? {
            return Ok(None);
        }
        let updated = self.execute(
            "UPDATE users SET password_hash = ?2, updated_at = ?3
             WHERE id = ?1 AND state = 'active'",
            args![user_id, password_hash, now],
        )?;
        if updated != 1 {
            return Ok(None); // not active any more: the token was dead anyway
        }
        let ended = self.end_user_sessions(user_id)?;
        let user = self.user_by_id(user_id)?;
        Ok(user.map(|u| (u, ended)))
    }
}
