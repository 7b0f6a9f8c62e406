//! The user base for administrators (`authq user`): `list_users`, `get_user`,
//! `import_users`, `end_user_sessions`, `reset_mfa`. Every one needs the admin role
//! (`crate::caller`).
//!
//! # Decisions
//! - **`list_users` pages by a cursor, the last canonical email key shown**, in key order: the
//!   key is unique and indexed, so a page costs one range scan and stays stable while users
//!   come and go (an offset would skip or repeat users under concurrent registrations).
//! - **`import_users` answers per entry** (`imported`, `exists`, `invalid` with a reason) and
//!   commits the batch in one transaction with the request's outcome, so a redelivered batch
//!   is answered as the first delivery was. An existing email or id is never overwritten.
//! - **Legacy hashes are stored as they are** (bcrypt) or with their salt
//!   (`$authman-sha256$<id>$<hex>`), and replaced by argon2id at the user's first successful
//!   login (`crate::hashing::legacy`).
//! - **`authq user create` is an `import_users` of one entry with a `password`**, hashed here
//!   with argon2id after the password policy: no separate operation.
//! - **An entry without a password is `pending` by default** (`register` then sends the user a
//!   code, as an invitation): the state `unsuspend` gives such a user too. `active` without a
//!   password may be asked for explicitly (the user then sets one through `start_reset`).
//! - **`end_user_sessions` publishes `session.ended` with reason `logout_all`**: the same
//!   effect as the user's own `logout_all` (every session, the epoch moved), so consumers need
//!   no new reason.

use super::account::Target;
use super::{Call, record_user};
use crate::domain::{Email, check_new_password};
use crate::error::HandlerError;
use crate::store::{ImportRow, Imported};
use authq_protocol::events::{EventBody, MfaChange, MfaChanged, SessionEndReason, SessionEnded};
use authq_protocol::ops::{
    DEFAULT_LIST_USERS, EndUserSessionsReply, EndUserSessionsRequest, GetUserReply, GetUserRequest,
    ImportResult, ImportStatus, ImportUser, ImportUsersReply, ImportUsersRequest, ListUsersReply,
    ListUsersRequest, MAX_IMPORT_USERS, MAX_LIST_USERS, PasswordScheme, ResetMfaReply,
    ResetMfaRequest, UserState,
};
use std::sync::Arc;

/// The longest `email_prefix` or `cursor` accepted (an email key is at most 320 bytes, and a
/// review key a little more).
const MAX_KEY_BYTES: usize = 400;

/// `list_users`: a page of users in canonical email key order, under an optional prefix.
pub async fn list_users(
    ctx: &Call<'_>,
    req: ListUsersRequest,
) -> Result<ListUsersReply, HandlerError> {
    let limit = req.limit.unwrap_or(DEFAULT_LIST_USERS);
    if limit == 0 || limit > MAX_LIST_USERS {
        return Err(HandlerError::bad_request("`limit` is between 1 and 500"));
    }
    let prefix = req
        .email_prefix
        .map(|p| p.trim().to_lowercase())
        .unwrap_or_default();
    let after = req.cursor.unwrap_or_default();
    if prefix.len() > MAX_KEY_BYTES || after.len() > MAX_KEY_BYTES {
        return Err(HandlerError::bad_request(
            "`email_prefix` or `cursor` is too long",
        ));
    }
    let mut rows = ctx
        .read(move |s| s.list_users(&prefix, &after, limit + 1))
        .await?;
    let page = usize::try_from(limit).unwrap_or(usize::MAX);
    let next_cursor = if rows.len() > page {
        rows.truncate(page);
        rows.last().map(|(key, _)| key.clone())
    } else {
        None
    };
    Ok(ListUsersReply {
        users: rows.into_iter().map(|(_, user)| user).collect(),
        next_cursor,
    })
}

/// `get_user`: one user with its times, password scheme, live sessions, providers and second
/// factor.
pub async fn get_user(ctx: &Call<'_>, req: GetUserRequest) -> Result<GetUserReply, HandlerError> {
    let target = Target::parse(&req.user)?;
    let now = ctx.now();
    let details = ctx
        .read(move |s| s.user_details(target.key(), now))
        .await?
        .ok_or(HandlerError::NotFound)?;
    record_user(&details.user.id);
    Ok(GetUserReply {
        user: details.user.into_info(),
        created_at: details.created_at,
        updated_at: details.updated_at,
        password_scheme: details.password_scheme.map(str::to_owned),
        sessions: details.sessions,
        providers: details.providers,
        mfa: details.mfa,
    })
}

/// `end_user_sessions`: every session of the user ends (and its session epoch moves).
pub async fn end_user_sessions(
    ctx: &Call<'_>,
    req: EndUserSessionsRequest,
) -> Result<EndUserSessionsReply, HandlerError> {
    let target = Target::parse(&req.user)?;
    let now = ctx.now();
    let events = Arc::clone(&ctx.events);
    ctx.commit(
        move |s| {
            let Some(user) = s.find_user(target.key())? else {
                return Ok(None);
            };
            let ended = s.end_user_sessions(&user.id)?;
            let body = EventBody::SessionEnded(SessionEnded {
                session_epoch: Some(s.bump_session_epoch(&user.id)?),
                user_id: user.id.clone(),
                reason: SessionEndReason::LogoutAll,
                sessions_ended: ended,
                session_ids: Vec::new(),
            });
            events.record(s, body, now)?;
            Ok(Some((user.id, ended)))
        },
        |done| {
            let (user_id, ended) = done.ok_or(HandlerError::NotFound)?;
            record_user(&user_id);
            Ok(EndUserSessionsReply { user_id, ended })
        },
    )
    .await
}

/// `reset_mfa`: the user's second factor is turned off (secret, recovery codes and pending
/// handles deleted) without a code: an administrator's answer to a user who lost both the
/// authenticator and the recovery codes. Publishes `mfa.changed` with change `reset`.
pub async fn reset_mfa(
    ctx: &Call<'_>,
    req: ResetMfaRequest,
) -> Result<ResetMfaReply, HandlerError> {
    let target = Target::parse(&req.user)?;
    let now = ctx.now();
    let events = Arc::clone(&ctx.events);
    ctx.commit(
        move |s| {
            let Some(user) = s.find_user(target.key())? else {
                return Ok(Err(HandlerError::NotFound));
            };
            if !s.mfa_disable(&user.id)? {
                return Ok(Err(HandlerError::MfaNotEnabled));
            }
            let body = EventBody::MfaChanged(MfaChanged {
                user_id: user.id.clone(),
                change: MfaChange::Reset,
                recovery_codes_left: None,
            });
            events.record(s, body, now)?;
            Ok(Ok(user.id))
        },
        |done| {
            let user_id = done?;
            record_user(&user_id);
            Ok(ResetMfaReply { user_id })
        },
    )
    .await
}

/// One checked entry, ready to insert.
struct Prepared {
    id: String,
    email: String,
    email_key: String,
    state: UserState,
    profile: String,
    password_hash: Option<String>,
}

/// `import_users`: each entry checked on its own, then the valid ones inserted in one
/// transaction (an existing email or id is left alone and reported `exists`).
pub async fn import_users(
    ctx: &Call<'_>,
    req: ImportUsersRequest,
) -> Result<ImportUsersReply, HandlerError> {
    if req.users.is_empty() || req.users.len() > MAX_IMPORT_USERS {
        return Err(HandlerError::bad_request(
            "`users` holds between 1 and 100 entries",
        ));
    }
    let mut checked = Vec::with_capacity(req.users.len());
    for entry in req.users {
        let email = entry.email.clone();
        checked.push((email, prepare(ctx, entry).await?));
    }
    let now = ctx.now();
    ctx.commit(
        move |s| {
            let mut results = Vec::with_capacity(checked.len());
            for (email, prepared) in checked {
                let result = match prepared {
                    Err(reason) => ImportResult {
                        email,
                        user_id: None,
                        status: ImportStatus::Invalid,
                        reason: Some(reason),
                    },
                    Ok(p) => {
                        let outcome = s.import_user(&ImportRow {
                            id: &p.id,
                            email: &p.email,
                            email_key: &p.email_key,
                            state: p.state,
                            profile: &p.profile,
                            password_hash: p.password_hash.as_deref(),
                            now,
                        })?;
                        let (user_id, status) = match outcome {
                            Imported::Created => (p.id, ImportStatus::Imported),
                            Imported::Exists(id) => (id, ImportStatus::Exists),
                        };
                        ImportResult {
                            email,
                            user_id: Some(user_id),
                            status,
                            reason: None,
                        }
                    }
                };
                results.push(result);
            }
            Ok(results)
        },
        |results| {
            let imported = results
                .iter()
                .filter(|r| r.status == ImportStatus::Imported)
                .count();
            tracing::info!(imported, entries = results.len(), "users imported");
            Ok(ImportUsersReply { results })
        },
    )
    .await
}

/// Checks one entry: `Ok(Err(reason))` for an invalid one; `Err` only when the worker itself
/// fails (hashing a given `password`).
async fn prepare(
    ctx: &Call<'_>,
    entry: ImportUser,
) -> Result<Result<Prepared, String>, HandlerError> {
    let email = match Email::parse(&entry.email) {
        Ok(email) => email,
        Err(e) => return Ok(Err(e.public_message().into_owned())),
    };
    let id = match &entry.user_id {
        Some(given) => match uuid::Uuid::parse_str(given) {
            Ok(parsed) if parsed.hyphenated().to_string() == *given => given.clone(),
            _ => {
                return Ok(Err(
                    "`user_id` is a UUID in its lowercase hyphenated form".into()
                ));
            }
        },
        None => uuid::Uuid::now_v7().to_string(),
    };
    let profile = match &entry.profile {
        Some(p) if !p.as_json().trim_start().starts_with('{') => {
            return Ok(Err("`profile` is a JSON object".into()));
        }
        Some(p) if p.as_json().len() > ctx.config.max_profile_bytes => {
            return Ok(Err("the profile is too large".into()));
        }
        Some(p) => p.as_json().to_owned(),
        None => "{}".to_owned(),
    };
    let password_hash = match (entry.password_hash, entry.password) {
        (Some(_), Some(_)) => {
            return Ok(Err("give `password_hash` or `password`, not both".into()));
        }
        (Some(imported), None) => {
            if imported.scheme == PasswordScheme::AuthmanSha256 && entry.user_id.is_none() {
                return Ok(Err(
                    "an `authman_sha256` hash needs the authman `user_id` it was salted with"
                        .into(),
                ));
            }
            match ctx.hasher.importable(imported.scheme, &imported.hash, &id) {
                Ok(stored) => Some(stored),
                Err(reason) => return Ok(Err(reason)),
            }
        }
        (None, Some(password)) => {
            match check_new_password(&ctx.config.passwords, &password, &email) {
                Ok(normalized) => Some(ctx.hasher.hash(normalized).await?),
                Err(e) => return Ok(Err(e.public_message().into_owned())),
            }
        }
        (None, None) => None,
    };
    // Without a password the user is pending unless told otherwise: `register` then sends it
    // a code, as to anyone who registered (an invitation).
    let state = entry.state.unwrap_or(if password_hash.is_some() {
        UserState::Active
    } else {
        UserState::Pending
    });
    if state == UserState::Pending && password_hash.is_some() {
        return Ok(Err(
            "a `pending` user has no password (`register` sends it a code)".into(),
        ));
    }
    Ok(Ok(Prepared {
        id,
        email: email.address,
        email_key: email.key,
        state,
        profile,
        password_hash,
    }))
}
