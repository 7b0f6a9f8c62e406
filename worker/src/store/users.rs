//! Users: registration, credentials, profile, state (suspend, delete), the session epoch.

use super::StoreError;
use super::query::{Row, Tx, args};
use crate::crypto::Digest;
use authq_protocol::ops::{Profile, ProfileMode, UserInfo, UserState};
use std::fmt;

/// A user as stored, without the password hash.
#[derive(Clone, Debug, PartialEq)]
pub struct UserRecord {
    /// The id.
    pub id: String,
    /// The email as registered.
    pub email: String,
    /// The state.
    pub state: UserState,
    /// The profile, as JSON object text.
    pub profile: String,
}

impl UserRecord {
    /// The wire form of the user.
    pub fn into_info(self) -> UserInfo {
        UserInfo {
            id: self.id,
            email: self.email,
            state: self.state,
            profile: Profile::from_json_unchecked(self.profile),
        }
    }

    /// Reads `id, email, state, profile` from columns `offset..offset + 4`.
    pub(super) fn from_row(row: &Row<'_, '_>, offset: usize) -> Result<Self, StoreError> {
        let state: String = row.get(offset + 2)?;
        Ok(Self {
            id: row.get(offset)?,
            email: row.get(offset + 1)?,
            state: UserState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown user state {state:?}")))?,
            profile: row.get(offset + 3)?,
        })
    }
}

/// A user with the password hash, for verification.
#[derive(Clone, PartialEq)]
pub struct Credentials {
    /// The user.
    pub user: UserRecord,
    /// The argon2id PHC string; `None` while the registration is pending.
    pub password_hash: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// A new registration.
#[derive(Debug)]
pub struct NewRegistration<'a> {
    /// The id for a new user (unused if the email is already pending).
    pub user_id: &'a str,
    /// The email as given.
    pub email: &'a str,
    /// The normalised email (unique).
    pub email_key: &'a str,
    /// The initial profile (JSON object text); `None` keeps a pending user's profile.
    pub profile: Option<&'a str>,
    /// The confirmation code's digest.
    pub code_digest: &'a Digest,
    /// When the code expires (Unix ms).
    pub code_expires_at: i64,
    /// Now (Unix ms).
    pub now: i64,
}

/// What `register` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registration {
    /// A new pending user was created with the code.
    Created {
        /// The new user's id.
        user_id: String,
    },
    /// The email was already pending: its code was replaced.
    CodeReissued {
        /// The pending user's id.
        user_id: String,
    },
    /// The email belongs to an active or suspended user; nothing changed.
    Exists,
}

/// Names a user for administrative operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserKey<'a> {
    /// By id.
    Id(&'a str),
    /// By normalised email.
    EmailKey(&'a str),
}

/// What `set_profile` did.
#[derive(Clone, Debug, PartialEq)]
pub enum ProfileUpdate {
    /// The profile changed; the user with the new profile.
    Updated(UserRecord),
    /// The result would exceed the size limit; nothing changed.
    TooLarge,
    /// No such user.
    NotFound,
}

/// `profile` with `patch` applied: an RFC 7396 merge, or a replacement; minified JSON.
pub(super) fn patched_profile(
    profile: &str,
    patch: &str,
    mode: ProfileMode,
) -> Result<String, StoreError> {
    let corrupt = |source| StoreError::Json {
        what: "a profile is not JSON",
        source,
    };
    let patch: serde_json::Value = serde_json::from_str(patch).map_err(corrupt)?;
    let merged = match mode {
        ProfileMode::Replace => patch,
        ProfileMode::Merge => {
            let mut merged: serde_json::Value = serde_json::from_str(profile).map_err(corrupt)?;
            json_patch::merge(&mut merged, &patch);
            merged
        }
    };
    serde_json::to_string(&merged).map_err(corrupt)
}

impl Tx<'_> {
    /// Starts a registration: creates a pending user with the code, or replaces the code of an
    /// already pending user; an active or suspended user's email gives [`Registration::Exists`].
    /// Of concurrent registrations of one address exactly one creates the user.
    pub fn register(&mut self, new: &NewRegistration<'_>) -> Result<Registration, StoreError> {
        let inserted = self.execute(
            "INSERT INTO users (id, email, email_key, profile, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)
             ON CONFLICT (email_key) DO NOTHING",
            args![
                new.user_id,
                new.email,
                new.email_key,
                new.profile.unwrap_or("{}"),
                new.now
            ],
        )?;
        let outcome = if inserted == 1 {
            Registration::Created {
                user_id: new.user_id.to_owned(),
            }
        } else {
            let existing = self.query_opt(
                "SELECT id, state FROM users WHERE email_key = ?1",
                args![new.email_key],
                |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
            )?;
            match existing {
                Some((user_id, state)) if state == UserState::Pending.as_str() => {
                    if let Some(profile) = new.profile {
                        self.execute(
                            "UPDATE users SET profile = ?2, updated_at = ?3 WHERE id = ?1",
                            args![&user_id, profile, new.now],
                        )?;
                    }
                    Registration::CodeReissued { user_id }
                }
                // Active, suspended, or deleted since the insert collided: nothing to do.
                _ => return Ok(Registration::Exists),
            }
        };
        let (Registration::Created { user_id } | Registration::CodeReissued { user_id }) = &outcome
        else {
            return Ok(outcome);
        };
        self.execute(
            "INSERT INTO codes (user_id, purpose, digest, expires_at, attempts, created_at)
             VALUES (?1, 'confirm', ?2, ?3, 0, ?4)
             ON CONFLICT (user_id, purpose) DO UPDATE
             SET digest = excluded.digest, expires_at = excluded.expires_at, attempts = 0,
                 created_at = excluded.created_at",
            args![user_id, new.code_digest, new.code_expires_at, new.now],
        )?;
        Ok(outcome)
    }

    /// The user with this email and the password hash.
    pub fn credentials(&mut self, email_key: &str) -> Result<Option<Credentials>, StoreError> {
        self.query_opt(
            "SELECT id, email, state, profile, password_hash FROM users WHERE email_key = ?1",
            args![email_key],
            |r| {
                Ok(Credentials {
                    user: UserRecord::from_row(r, 0)?,
                    password_hash: r.get(4)?,
                })
            },
        )
    }

    /// The user named by `key`.
    pub fn find_user(&mut self, key: UserKey<'_>) -> Result<Option<UserRecord>, StoreError> {
        match key {
            UserKey::Id(id) => self.query_opt(
                "SELECT id, email, state, profile FROM users WHERE id = ?1",
                args![id],
                |r| UserRecord::from_row(r, 0),
            ),
            UserKey::EmailKey(k) => self.query_opt(
                "SELECT id, email, state, profile FROM users WHERE email_key = ?1",
                args![k],
                |r| UserRecord::from_row(r, 0),
            ),
        }
    }

    /// The user with this id.
    pub fn user_by_id(&mut self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        self.find_user(UserKey::Id(id))
    }

    /// Replaces the password hash (only if it is still `old_hash`: a concurrent change wins)
    /// and ends every session of the user but `keep`. `None` if the hash changed meanwhile.
    pub fn change_password(
        &mut self,
        user_id: &str,
        old_hash: &str,
        new_hash: &str,
        keep: &Digest,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
        let updated = self.execute(
            "UPDATE users SET password_hash = ?3, updated_at = ?4
             WHERE id = ?1 AND password_hash = ?2 AND state = 'active'",
            args![user_id, old_hash, new_hash, now],
        )?;
        if updated != 1 {
            return Ok(None);
        }
        let ended = self.execute(
            "DELETE FROM sessions WHERE user_id = ?1 AND token_digest <> ?2",
            args![user_id, keep],
        )?;
        Ok(Some(ended))
    }

    /// Replaces the password hash with one made with the current parameters, only if it is
    /// still `old_hash`. `false` if it changed meanwhile (then nothing is done).
    pub fn rehash_password(
        &mut self,
        user_id: &str,
        old_hash: &str,
        new_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = self.execute(
            "UPDATE users SET password_hash = ?3, updated_at = ?4
             WHERE id = ?1 AND password_hash = ?2",
            args![user_id, old_hash, new_hash, now],
        )?;
        Ok(n == 1)
    }

    /// Applies a profile object (RFC 7396 merge patch, or replacement) to the user's profile,
    /// refusing results larger than `max_bytes`.
    pub fn set_profile(
        &mut self,
        user_id: &str,
        profile: &str,
        mode: ProfileMode,
        max_bytes: usize,
        now: i64,
    ) -> Result<ProfileUpdate, StoreError> {
        let current: Option<String> = self.query_value(
            self.dialect(
                "SELECT profile FROM users WHERE id = ?1",
                "SELECT profile FROM users WHERE id = ?1 FOR UPDATE",
            ),
            args![user_id],
        )?;
        let Some(current) = current else {
            return Ok(ProfileUpdate::NotFound);
        };
        let new_profile = patched_profile(&current, profile, mode)?;
        if new_profile.len() > max_bytes {
            return Ok(ProfileUpdate::TooLarge);
        }
        self.execute(
            "UPDATE users SET profile = ?2, updated_at = ?3 WHERE id = ?1",
            args![user_id, &new_profile, now],
        )?;
        let user = self.user_by_id(user_id)?;
        Ok(user.map_or(ProfileUpdate::NotFound, ProfileUpdate::Updated))
    }

    /// Deletes the user with every session and code. The deleted user's id, or `None`.
    pub fn delete_user(&mut self, user: UserKey<'_>) -> Result<Option<String>, StoreError> {
        let Some(found) = self.find_user(user)? else {
            return Ok(None);
        };
        // Sessions and codes go with the user (ON DELETE CASCADE).
        self.execute("DELETE FROM users WHERE id = ?1", args![&found.id])?;
        Ok(Some(found.id))
    }

    /// Suspends the user and ends every session (and pending code). Returns the user and how
    /// many sessions ended; a user already suspended stays so.
    pub fn suspend(
        &mut self,
        user: UserKey<'_>,
        now: i64,
    ) -> Result<Option<(UserRecord, u64)>, StoreError> {
        let Some(found) = self.find_user(user)? else {
            return Ok(None);
        };
        self.execute(
            "UPDATE users SET state = 'suspended', updated_at = ?2
             WHERE id = ?1 AND state <> 'suspended'",
            args![&found.id, now],
        )?;
        let ended = self.end_user_sessions(&found.id)?;
        self.execute("DELETE FROM codes WHERE user_id = ?1", args![&found.id])?;
        let user = self.user_by_id(&found.id)?;
        Ok(user.map(|u| (u, ended)))
    }

    /// Lifts a suspension: the user becomes active again (pending if it never had a password).
    /// A user who is not suspended is returned unchanged.
    pub fn unsuspend(
        &mut self,
        user: UserKey<'_>,
        now: i64,
    ) -> Result<Option<UserRecord>, StoreError> {
        let Some(found) = self.find_user(user)? else {
            return Ok(None);
        };
        self.execute(
            "UPDATE users
             SET state = CASE
                     WHEN password_hash IS NULL
                      AND NOT EXISTS (SELECT 1 FROM social_accounts a WHERE a.user_id = users.id)
                     THEN 'pending' ELSE 'active' END,
                 updated_at = ?2
             WHERE id = ?1 AND state = 'suspended'",
            args![&found.id, now],
        )?;
        self.user_by_id(&found.id)
    }

    /// Moves the user's session epoch forward (every session of the user ended at once);
    /// returns the new epoch (0 for an unknown user).
    pub fn bump_session_epoch(&mut self, user_id: &str) -> Result<u64, StoreError> {
        let epoch: Option<i64> = self.query_value(
            "UPDATE users SET session_epoch = session_epoch + 1 WHERE id = ?1
             RETURNING session_epoch",
            args![user_id],
        )?;
        Ok(epoch.map_or(0, |e| u64::try_from(e).unwrap_or(0)))
    }

    /// The ids of every suspended user.
    pub fn suspended_users(&mut self) -> Result<Vec<String>, StoreError> {
        self.query_all(
            "SELECT id FROM users WHERE state = 'suspended'",
            args![],
            |r| r.get(0),
        )
    }
}

/// What `Tx::rekey_emails` changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RekeyReport {
    /// Rows whose key became the canonical form of their address.
    pub rekeyed: u64,
    /// Rows whose address the current rules refuse (flagged `refused`).
    pub refused: u64,
    /// Rows whose canonical key another account holds (flagged `duplicate`).
    pub duplicates: u64,
}

impl Tx<'_> {
    /// Brings every user's `email_key` to the canonical form of its address
    /// ([`crate::domain::canonical_email_key`]), once, in the migration that introduced it.
    /// A row already holding its canonical key keeps it; a row whose address the rules refuse
    /// (mixed scripts, an ASCII look-alike, a quoted local part that needs its quotes), or
    /// whose canonical key another row holds (a look-alike second account), is never merged or
    /// deleted: its key becomes `review:{id}` (no login or reset finds it by email any more)
    /// and `email_review` says why, for an administrator to decide. Changed rows lose their
    /// pending codes (digests are keyed by the old key); their counters expire by themselves.
    pub(super) fn rekey_emails(&mut self) -> Result<RekeyReport, StoreError> {
        let rows: Vec<(String, String, String)> = self.query_all(
            "SELECT id, email, email_key FROM users
             WHERE email <> '' AND email_key NOT LIKE 'social:%'
             ORDER BY created_at, id",
            args![],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let mut report = RekeyReport::default();
        for (id, email, key) in rows {
            let (new_key, review) = match crate::domain::canonical_email_key(email.trim()) {
                Ok(canonical) if canonical == key => continue,
                Ok(canonical) => {
                    let taken: Option<String> = self.query_value(
                        "SELECT id FROM users WHERE email_key = ?1",
                        args![&canonical],
                    )?;
                    match taken {
                        None => (canonical, None),
                        Some(_) => (format!("review:{id}"), Some("duplicate")),
                    }
                }
                Err(_) => (format!("review:{id}"), Some("refused")),
            };
            match review {
                None => report.rekeyed += 1,
                Some("refused") => report.refused += 1,
                Some(_) => report.duplicates += 1,
            }
            self.execute(
                "UPDATE users SET email_key = ?2, email_review = ?3 WHERE id = ?1",
                args![&id, &new_key, review],
            )?;
            self.execute("DELETE FROM codes WHERE user_id = ?1", args![&id])?;
        }
        Ok(report)
    }
}
