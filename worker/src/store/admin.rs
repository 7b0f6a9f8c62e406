//! The user base as administrators see it (`authq user`): pages of users by canonical email
//! key, one user's details, and users imported from another system.

use super::StoreError;
use super::query::{Tx, args};
use super::users::{UserKey, UserRecord};
use authq_protocol::ops::{UserState, UserSummary};

/// One user's details for `get_user`.
#[derive(Clone, Debug, PartialEq)]
pub struct UserDetails {
    /// The user.
    pub user: UserRecord,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Last changed (Unix ms).
    pub updated_at: i64,
    /// The scheme of the stored password hash, if any (never the hash itself).
    pub password_scheme: Option<&'static str>,
    /// Live sessions.
    pub sessions: u64,
    /// Linked social providers, by name.
    pub providers: Vec<String>,
    /// Whether the TOTP second factor is on.
    pub mfa: bool,
}

/// A user to insert as imported.
#[derive(Debug)]
pub struct ImportRow<'a> {
    /// The id.
    pub id: &'a str,
    /// The email as given.
    pub email: &'a str,
    /// Its canonical key.
    pub email_key: &'a str,
    /// The state.
    pub state: UserState,
    /// The profile (JSON object text).
    pub profile: &'a str,
    /// The stored password hash, if any.
    pub password_hash: Option<&'a str>,
    /// Now (Unix ms).
    pub now: i64,
}

/// What inserting an imported user did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Imported {
    /// Inserted.
    Created,
    /// A user with the email or the id exists already (its id); nothing changed.
    Exists(String),
}

/// `s` as a LIKE pattern matching the text that starts with it (`\` escapes).
fn prefix_pattern(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

impl Tx<'_> {
    /// Up to `limit` users whose email key starts with `prefix` and sorts after `after`, in
    /// email key order, each with its key (the next page's cursor is the last one's).
    pub fn list_users(
        &mut self,
        prefix: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<(String, UserSummary)>, StoreError> {
        let pattern = prefix_pattern(prefix);
        self.query_all(
            "SELECT email_key, id, email, state, created_at, updated_at FROM users
             WHERE email_key > ?1 AND email_key LIKE ?2 ESCAPE '\\'
             ORDER BY email_key LIMIT ?3",
            args![after, &pattern, limit],
            |r| {
                let state: String = r.get(3)?;
                Ok((
                    r.get(0)?,
                    UserSummary {
                        id: r.get(1)?,
                        email: r.get(2)?,
                        state: UserState::parse(&state).ok_or_else(|| {
                            StoreError::Corrupt(format!("unknown user state {state:?}"))
                        })?,
                        created_at: r.get(4)?,
                        updated_at: r.get(5)?,
                    },
                ))
            },
        )
    }

    /// The user named by `key`, with its times, password scheme, live sessions (at `now`),
    /// providers and whether its second factor is on.
    pub fn user_details(
        &mut self,
        key: UserKey<'_>,
        now: i64,
    ) -> Result<Option<UserDetails>, StoreError> {
        let Some(user) = self.find_user(key)? else {
            return Ok(None);
        };
        let (created_at, updated_at, hash): (i64, i64, Option<String>) = self
            .query_opt(
                "SELECT created_at, updated_at, password_hash FROM users WHERE id = ?1",
                args![&user.id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?
            .ok_or_else(|| StoreError::Corrupt("a user vanished mid-read".into()))?;
        let sessions: i64 = self
            .query_value(
                "SELECT count(*) FROM sessions
                 WHERE user_id = ?1 AND expires_at > ?2 AND absolute_expires_at > ?2",
                args![&user.id, now],
            )?
            .unwrap_or(0);
        let providers = self.query_all(
            "SELECT DISTINCT provider FROM social_accounts WHERE user_id = ?1 ORDER BY provider",
            args![&user.id],
            |r| r.get(0),
        )?;
        let mfa = self.mfa_enabled(&user.id)?;
        Ok(Some(UserDetails {
            user,
            created_at,
            updated_at,
            password_scheme: hash.as_deref().map(crate::hashing::legacy::scheme_of),
            sessions: u64::try_from(sessions).unwrap_or(0),
            providers,
            mfa,
        }))
    }

    /// Inserts an imported user unless its email key or its id is taken.
    pub fn import_user(&mut self, row: &ImportRow<'_>) -> Result<Imported, StoreError> {
        let inserted = self.execute(
            "INSERT INTO users
                 (id, email, email_key, password_hash, profile, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
             ON CONFLICT DO NOTHING",
            args![
                row.id,
                row.email,
                row.email_key,
                row.password_hash,
                row.profile,
                row.state.as_str(),
                row.now
            ],
        )?;
        if inserted == 1 {
            return Ok(Imported::Created);
        }
        let existing: Option<String> = self.query_value(
            "SELECT id FROM users WHERE email_key = ?1 OR id = ?2 LIMIT 1",
            args![row.email_key, row.id],
        )?;
        Ok(Imported::Exists(
            existing.unwrap_or_else(|| row.id.to_owned()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_escape_like_metacharacters() {
        assert_eq!(prefix_pattern("ann"), "ann%");
        assert_eq!(prefix_pattern("a_b%c\\"), "a\\_b\\%c\\\\%");
        assert_eq!(prefix_pattern(""), "%");
    }
}
