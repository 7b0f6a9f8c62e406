//! Social identities: OAuth `state`s (single use), provider accounts linked to users, and the
//! provider side of social sessions (for re-checks).

use super::StoreError;
use super::query::{Tx, args};
use super::users::{UserKey, UserRecord, patched_profile};
use crate::crypto::Digest;
use authq_protocol::ops::{ProfileMode, UserState};

/// A new OAuth `state` from `social_url`.
#[derive(Debug)]
pub struct NewOAuthState<'a> {
    /// The state's digest (the state itself is only in the browser's URL).
    pub digest: &'a Digest,
    /// The provider it was issued for.
    pub provider: &'a str,
    /// The redirect URI of the authorization request (the code exchange repeats it).
    pub redirect_uri: &'a str,
    /// The PKCE verifier, sealed.
    pub verifier_sealed: &'a [u8],
    /// When it stops being accepted (Unix ms).
    pub expires_at: i64,
    /// Now (Unix ms).
    pub now: i64,
}

/// A live OAuth `state`, consumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthStateRecord {
    /// The provider it was issued for.
    pub provider: String,
    /// The redirect URI of the authorization request.
    pub redirect_uri: String,
    /// The sealed PKCE verifier.
    pub verifier_sealed: Vec<u8>,
}

/// An email a provider reported.
#[derive(Clone, Copy, Debug)]
pub struct ProviderEmail<'a> {
    /// As given (trimmed).
    pub address: &'a str,
    /// Normalised (the users table's key).
    pub key: &'a str,
    /// Whether the provider says it verified it.
    pub verified: bool,
}

/// A social login to apply: the provider account, what to do about its email, the session.
#[derive(Debug)]
pub struct NewSocialLogin<'a> {
    /// The provider's name.
    pub provider: &'a str,
    /// The user's id at the provider.
    pub subject: &'a str,
    /// The email the provider reported, if it is a valid address.
    pub email: Option<ProviderEmail<'a>>,
    /// The linking rule: a verified email of an existing account links to it.
    pub link_verified_email: bool,
    /// A JSON object merged (RFC 7396) into the user's profile.
    pub profile_patch: &'a str,
    /// Profiles larger than this after the merge are left as they were.
    pub max_profile_bytes: usize,
    /// The id of the user, if one is created.
    pub new_user_id: &'a str,
    /// The new session's token digest.
    pub session_digest: &'a Digest,
    /// The session's first idle expiry (Unix ms).
    pub expires_at: i64,
    /// The session's absolute expiry (Unix ms).
    pub absolute_expires_at: i64,
    /// The session's public id (random, never the token).
    pub session_id: &'a str,
    /// The user agent the calling service passed (validated by the caller).
    pub user_agent: Option<&'a str>,
    /// The client address the calling service passed (validated by the caller).
    pub client_ip: Option<&'a str>,
    /// When `check` first re-checks the session with the provider; `None`: never.
    pub recheck_at: Option<i64>,
    /// The provider tokens, sealed, if kept for re-checks.
    pub tokens_sealed: Option<&'a [u8]>,
    /// Now (Unix ms).
    pub now: i64,
}

/// What `social_login` did.
#[derive(Clone, Debug, PartialEq)]
pub enum SocialLoginOutcome {
    /// A session was opened for the user.
    LoggedIn {
        /// The user.
        user: UserRecord,
        /// Whether the user was created by this login.
        created: bool,
    },
    /// The email belongs to an existing account that the linking rule does not allow to link
    /// automatically. Nothing changed.
    LinkRequired,
    /// The user is suspended. Nothing changed.
    Suspended,
}

/// A provider account to link to a session's user.
#[derive(Debug)]
pub struct SocialLink<'a> {
    /// The session (of the account to link to).
    pub session_digest: &'a Digest,
    /// The provider's name.
    pub provider: &'a str,
    /// The user's id at the provider.
    pub subject: &'a str,
    /// The email the provider reported (kept with the link, for information).
    pub email: Option<&'a str>,
    /// Now (Unix ms).
    pub now: i64,
}

/// What `link_social` did.
#[derive(Clone, Debug, PartialEq)]
pub enum LinkOutcome {
    /// Linked (or it already was, to this user).
    Linked(UserRecord),
    /// The provider account is linked to another user.
    AlreadyLinked,
    /// The session is not live.
    SessionInvalid,
    /// The session's user is not active.
    Suspended,
}

/// A social session due for a re-check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocialSessionRecord {
    /// The provider's name.
    pub provider: String,
    /// The user's id at the provider.
    pub subject: String,
    /// The sealed provider tokens, if kept.
    pub tokens_sealed: Option<Vec<u8>>,
}

impl Tx<'_> {
    /// Stores a new OAuth `state`.
    pub fn create_oauth_state(&mut self, new: &NewOAuthState<'_>) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO oauth_states
               (state_digest, provider, redirect_uri, verifier_sealed, expires_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            args![
                new.digest,
                new.provider,
                new.redirect_uri,
                new.verifier_sealed,
                new.expires_at,
                new.now
            ],
        )?;
        Ok(())
    }

    /// Consumes the live `state` with this digest: of concurrent uses exactly one gets it.
    pub fn take_oauth_state(
        &mut self,
        digest: &Digest,
        now: i64,
    ) -> Result<Option<OAuthStateRecord>, StoreError> {
        // One statement: of concurrent uses of a state exactly one deletes (and gets) it.
        let found = self.query_opt(
            "DELETE FROM oauth_states WHERE state_digest = ?1
             RETURNING provider, redirect_uri, verifier_sealed, expires_at",
            args![digest],
            |r| {
                Ok((
                    OAuthStateRecord {
                        provider: r.get(0)?,
                        redirect_uri: r.get(1)?,
                        verifier_sealed: r.get(2)?,
                    },
                    r.get::<i64>(3)?,
                ))
            },
        )?;
        Ok(found.and_then(|(record, expires_at)| (expires_at > now).then_some(record)))
    }

    fn linked_user(&mut self, provider: &str, subject: &str) -> Result<Option<String>, StoreError> {
        self.query_value(
            "SELECT user_id FROM social_accounts WHERE provider = ?1 AND subject = ?2",
            args![provider, subject],
        )
    }

    fn insert_social_account(
        &mut self,
        provider: &str,
        subject: &str,
        user_id: &str,
        email: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO social_accounts (provider, subject, user_id, email, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            args![provider, subject, user_id, email, now],
        )?;
        Ok(())
    }

    fn update_social_account(
        &mut self,
        provider: &str,
        subject: &str,
        email: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE social_accounts SET email = ?3, updated_at = ?4
             WHERE provider = ?1 AND subject = ?2",
            args![provider, subject, email, now],
        )?;
        Ok(())
    }

    /// Finds the user linked to the provider account (updating the profile), or links an
    /// existing account by verified email when the rule allows, or creates an active user;
    /// then opens a session that remembers its provider. Run in a write transaction.
    pub fn social_login(
        &mut self,
        login: &NewSocialLogin<'_>,
    ) -> Result<SocialLoginOutcome, StoreError> {
        let email = login.email.map(|e| e.address);
        let (user_id, created) = if let Some(user_id) =
            self.linked_user(login.provider, login.subject)?
        {
            self.update_social_account(login.provider, login.subject, email, login.now)?;
            (user_id, false)
        } else {
            let existing = match login.email {
                Some(e) => self.find_user(UserKey::EmailKey(e.key))?,
                None => None,
            };
            let user_id = match existing {
                Some(user) => {
                    let verified = login.email.is_some_and(|e| e.verified);
                    if !(verified && login.link_verified_email) {
                        return Ok(SocialLoginOutcome::LinkRequired);
                    }
                    if user.state == UserState::Pending {
                        // The provider proved the email: the pending registration is complete.
                        self.execute(
                            "UPDATE users SET state = 'active', updated_at = ?2 WHERE id = ?1",
                            args![&user.id, login.now],
                        )?;
                        self.execute(
                            "DELETE FROM codes WHERE user_id = ?1 AND purpose = 'confirm'",
                            args![&user.id],
                        )?;
                    }
                    user.id
                }
                None => {
                    // Only a verified email is claimed for the new user: an unverified one
                    // would let whoever controls the provider account squat (and later reset
                    // into) an address that is not theirs.
                    let (address, key) = match login.email {
                        Some(e) if e.verified => (e.address.to_owned(), e.key.to_owned()),
                        _ => (
                            String::new(),
                            format!("social:{}:{}", login.provider, login.subject),
                        ),
                    };
                    self.execute(
                        "INSERT INTO users (id, email, email_key, profile, state, created_at, updated_at)
                         VALUES (?1, ?2, ?3, '{}', 'active', ?4, ?4)",
                        args![login.new_user_id, &address, &key, login.now],
                    )?;
                    login.new_user_id.to_owned()
                }
            };
            self.insert_social_account(login.provider, login.subject, &user_id, email, login.now)?;
            let created = user_id == login.new_user_id;
            (user_id, created)
        };
        let Some(user) = self.user_by_id(&user_id)? else {
            return Err(StoreError::Corrupt(
                "a social account without its user".into(),
            ));
        };
        if user.state == UserState::Suspended {
            return Ok(SocialLoginOutcome::Suspended);
        }
        // The provider's profile fields, merged in unless the result would be too large.
        let merged = patched_profile(&user.profile, login.profile_patch, ProfileMode::Merge)?;
        if merged.len() <= login.max_profile_bytes {
            self.execute(
                "UPDATE users SET profile = ?2, updated_at = ?3 WHERE id = ?1",
                args![&user_id, &merged, login.now],
            )?;
        }
        self.insert_session(&super::NewSession {
            user_id: &user_id,
            digest: login.session_digest,
            now: login.now,
            expires_at: login.expires_at,
            absolute_expires_at: login.absolute_expires_at,
            session_id: login.session_id,
            user_agent: login.user_agent,
            client_ip: login.client_ip,
            // The session limit is enforced when the login commits (`end_sessions_beyond`).
            limited: false,
        })?;
        self.execute(
            "INSERT INTO social_sessions
               (token_digest, provider, subject, verified_at, recheck_at, tokens_sealed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            args![
                login.session_digest,
                login.provider,
                login.subject,
                login.now,
                login.recheck_at,
                login.tokens_sealed
            ],
        )?;
        let user = self
            .user_by_id(&user_id)?
            .ok_or_else(|| StoreError::Corrupt("the user vanished".into()))?;
        Ok(SocialLoginOutcome::LoggedIn { user, created })
    }

    /// Links a provider account to the live session's user. Run in a write transaction.
    pub fn link_social(&mut self, link: &SocialLink<'_>) -> Result<LinkOutcome, StoreError> {
        let Some(user) = self
            .session_user_id(link.session_digest, link.now)?
            .map(|id| self.user_by_id(&id))
            .transpose()?
            .flatten()
        else {
            return Ok(LinkOutcome::SessionInvalid);
        };
        match user.state {
            UserState::Active => {}
            UserState::Suspended => return Ok(LinkOutcome::Suspended),
            UserState::Pending => return Ok(LinkOutcome::SessionInvalid),
        }
        match self.linked_user(link.provider, link.subject)? {
            Some(other) if other != user.id => return Ok(LinkOutcome::AlreadyLinked),
            Some(_) => {
                self.update_social_account(link.provider, link.subject, link.email, link.now)?;
            }
            None => {
                self.insert_social_account(
                    link.provider,
                    link.subject,
                    &user.id,
                    link.email,
                    link.now,
                )?;
            }
        }
        Ok(LinkOutcome::Linked(user))
    }

    /// The social session with this digest, if its re-check is due at `now`.
    pub fn social_session_due(
        &mut self,
        digest: &Digest,
        now: i64,
    ) -> Result<Option<SocialSessionRecord>, StoreError> {
        self.query_opt(
            "SELECT provider, subject, tokens_sealed FROM social_sessions
             WHERE token_digest = ?1 AND recheck_at IS NOT NULL AND recheck_at <= ?2",
            args![digest, now],
            |r| {
                Ok(SocialSessionRecord {
                    provider: r.get(0)?,
                    subject: r.get(1)?,
                    tokens_sealed: r.get(2)?,
                })
            },
        )
    }

    /// Records a re-check: the next one is at `next_recheck_at`; `verified_at` is set when the
    /// provider confirmed the user, and `tokens_sealed` replaces the kept tokens when given.
    pub fn social_session_rechecked(
        &mut self,
        digest: &Digest,
        verified_at: Option<i64>,
        next_recheck_at: i64,
        tokens_sealed: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE social_sessions
             SET verified_at = COALESCE(?2, verified_at),
                 recheck_at = ?3,
                 tokens_sealed = COALESCE(?4, tokens_sealed)
             WHERE token_digest = ?1",
            args![digest, verified_at, next_recheck_at, tokens_sealed],
        )?;
        Ok(())
    }
}
