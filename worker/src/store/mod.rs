//! The user store: the interface the auth logic needs, and its SQLite implementation.
//!
//! Each method is one atomic unit of the auth logic (one transaction), not a generic CRUD call,
//! so an implementation on another database (PostgreSQL for pools spread over several hosts)
//! fills the same trait with its own transactions. Methods are synchronous: the worker calls
//! them on tokio's blocking pool, bounded by the connection pool's size.
//!
//! The store never sees a secret in clear: tokens and codes arrive as digests, passwords as
//! argon2id PHC strings. Time arrives as an argument (`now`, Unix ms), so expiry is the
//! caller's clock's business.

mod migrations;
mod sqlite;

pub use sqlite::SqliteStore;

use crate::crypto::Digest;
use crate::idempotency::OutcomeKey;
use authq_protocol::ops::{Profile, ProfileMode, UserInfo, UserState};
use std::fmt;

/// The store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// No connection could be taken from the pool in time.
    #[error("database connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    /// The database holds something this version cannot read.
    #[error("database content is invalid: {0}")]
    Corrupt(String),
    /// The database was written by a newer authq (a schema version this one does not know).
    #[error("database schema version {found} is newer than this authq supports ({supported})")]
    SchemaTooNew {
        /// The version found in the database.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
}

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

/// The work of [`Store::with_outcome`]: store calls that return the sealed reply.
pub type OutcomeWork<'a> = dyn FnMut(&dyn Store) -> Result<Vec<u8>, StoreError> + 'a;

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

/// What [`Store::acknowledge_deletion`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeletionAck {
    /// No cascade is tracked for this user.
    NoDeletion,
    /// The service is not one the cascade waits for.
    UnknownService,
    /// Recorded; the cascade as it now stands.
    Recorded(DeletionRecord),
}

/// An event waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Its place in the outbox (publication order).
    pub seq: i64,
    /// The routing key to publish it with.
    pub routing_key: String,
    /// The event's JSON, sealed.
    pub sealed: Vec<u8>,
}

/// A request's recorded outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedOutcome {
    /// SHA-256 of the request it answers (operation and body).
    pub request_digest: Vec<u8>,
    /// The reply, sealed (see [`crate::idempotency`]).
    pub sealed: Vec<u8>,
}

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

/// A new session.
#[derive(Debug)]
pub struct NewSession<'a> {
    /// The user.
    pub user_id: &'a str,
    /// The token's digest.
    pub digest: &'a Digest,
    /// Now (Unix ms).
    pub now: i64,
    /// The first idle expiry (Unix ms).
    pub expires_at: i64,
    /// The absolute expiry (Unix ms); renewals never pass it.
    pub absolute_expires_at: i64,
}

/// When `check_session` renews a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Renewal {
    /// Renew once `now` reaches `expires_at - renew_window_ms`.
    pub renew_window_ms: i64,
    /// A renewed session expires at `now + idle_timeout_ms` (capped by its absolute expiry).
    pub idle_timeout_ms: i64,
}

impl Renewal {
    /// The rule a session policy describes: renew once `renew_after` of the idle window has
    /// passed, i.e. once the remaining time falls below `(1 - renew_after) * idle_timeout`.
    pub fn from_policy(policy: &crate::config::SessionPolicy) -> Self {
        let idle = crate::clock::duration_ms(policy.idle_timeout);
        let renew_after = policy.renew_after.clamp(0.0, 1.0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        let window = ((1.0 - renew_after) * idle as f64) as i64;
        Self {
            renew_window_ms: window,
            idle_timeout_ms: idle,
        }
    }
}

/// A live session and its user.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionInfo {
    /// The user.
    pub user: UserRecord,
    /// The (possibly renewed) idle expiry (Unix ms).
    pub expires_at: i64,
    /// Whether this call renewed the session.
    pub renewed: bool,
    /// The user's session epoch: it grows whenever all of the user's sessions end at once.
    pub session_epoch: u64,
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

/// One counter to claim an attempt on ([`Store::claim_attempts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptLimit<'a> {
    /// The counter's key, e.g. `login:ann@example.com`.
    pub key: &'a str,
    /// Claims allowed per window.
    pub max: u32,
    /// The window's length (Unix ms), from the first claim.
    pub window_ms: i64,
}

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

/// The user store.
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Starts a registration: creates a pending user with the code, or replaces the code of an
    /// already pending user; an active or suspended user's email gives [`Registration::Exists`].
    fn register(&self, new: &NewRegistration<'_>) -> Result<Registration, StoreError>;

    /// The live one-time code of `purpose` for the user with this email, if the user is in the
    /// state the purpose requires ([`CodePurpose::required_state`]) and the code has not
    /// expired at `now`.
    fn find_code(
        &self,
        email_key: &str,
        purpose: CodePurpose,
        now: i64,
    ) -> Result<Option<CodeRecord>, StoreError>;

    /// Counts a wrong guess against the code with this digest; the code is destroyed once it
    /// has had `max_attempts` wrong guesses.
    fn code_failed(
        &self,
        user_id: &str,
        purpose: CodePurpose,
        digest: &Digest,
        max_attempts: u32,
    ) -> Result<(), StoreError>;

    /// In one transaction: consumes the confirmation code (only if it still has this digest and
    /// has not expired), sets the password hash and makes the pending user active. `None` if
    /// the code was consumed or replaced meanwhile.
    fn confirm_registration(
        &self,
        user_id: &str,
        code: &Digest,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<UserRecord>, StoreError>;

    /// The user with this email and the password hash.
    fn credentials(&self, email_key: &str) -> Result<Option<Credentials>, StoreError>;

    /// Creates a session, only if the user is (still) active. `None` otherwise.
    fn create_session(&self, new: &NewSession<'_>) -> Result<Option<UserRecord>, StoreError>;

    /// The session with this digest if it is live at `now`, renewing it when due. A session of
    /// a user who is no longer active is returned with that user's state: the caller refuses it.
    fn check_session(
        &self,
        digest: &Digest,
        now: i64,
        renewal: Renewal,
    ) -> Result<Option<SessionInfo>, StoreError>;

    /// [`Store::check_session`] for the async executor: it never waits. `None` when it would
    /// have to (no inline reader idle, the database busy) or when the session is due for
    /// renewal (a write); the caller then runs `check_session` on the blocking pool.
    fn check_session_now(
        &self,
        _digest: &Digest,
        _now: i64,
        _renewal: Renewal,
    ) -> Option<Result<Option<SessionInfo>, StoreError>> {
        None
    }

    /// The live session's user with the password hash (whatever the user's state).
    fn session_credentials(
        &self,
        digest: &Digest,
        now: i64,
    ) -> Result<Option<Credentials>, StoreError>;

    /// Ends the live session with this digest. `false` if there was none.
    fn end_session(&self, digest: &Digest, now: i64) -> Result<bool, StoreError>;

    /// Ends every session of the live session's user. `None` if the session was not live.
    fn end_all_sessions(&self, digest: &Digest, now: i64) -> Result<Option<u64>, StoreError>;

    /// Issues (or replaces) the reset token of the active user with this email. `false` (and
    /// nothing stored) if there is no such active user.
    fn start_reset(
        &self,
        email_key: &str,
        digest: &Digest,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// In one transaction: consumes the reset token (only if it still has this digest and has
    /// not expired), sets the new password hash and ends every session of the user. `None` if
    /// the token was consumed or replaced meanwhile.
    fn complete_reset(
        &self,
        user_id: &str,
        token: &Digest,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<(UserRecord, u64)>, StoreError>;

    /// Replaces the password hash (only if it is still `old_hash`: a concurrent change wins)
    /// and ends every session of the user but `keep`. `None` if the hash changed meanwhile.
    fn change_password(
        &self,
        user_id: &str,
        old_hash: &str,
        new_hash: &str,
        keep: &Digest,
        now: i64,
    ) -> Result<Option<u64>, StoreError>;

    /// Applies a profile object (RFC 7396 merge patch, or replacement) to the user's profile,
    /// refusing results larger than `max_bytes`.
    fn set_profile(
        &self,
        user_id: &str,
        profile: &str,
        mode: ProfileMode,
        max_bytes: usize,
        now: i64,
    ) -> Result<ProfileUpdate, StoreError>;

    /// Deletes the user with every session and code. The deleted user's id, or `None`.
    fn delete_user(&self, user: UserKey<'_>) -> Result<Option<String>, StoreError>;

    /// Suspends the user and ends every session (and pending code). Returns the user and how
    /// many sessions ended; a user already suspended stays so.
    fn suspend(&self, user: UserKey<'_>, now: i64)
    -> Result<Option<(UserRecord, u64)>, StoreError>;

    /// Lifts a suspension: the user becomes active again (pending if it never had a password).
    /// A user who is not suspended is returned unchanged.
    fn unsuspend(&self, user: UserKey<'_>, now: i64) -> Result<Option<UserRecord>, StoreError>;

    /// Claims one attempt on every limit in `limits`, all or nothing, in one transaction: a
    /// limit's window starts at its first claim and lasts `window_ms`; a limit that already
    /// has `max` claims in its window refuses. `false` when any limit refused (and nothing was
    /// counted: attempts refused during a lock are not counted).
    fn claim_attempts(&self, limits: &[AttemptLimit<'_>], now: i64) -> Result<bool, StoreError>;

    /// Forgets the counters `clear` and gives one claim back to each of `release` (a
    /// successful login clears its email's counter and releases its source's claim; a completed
    /// reset clears the email's login lock).
    fn settle_attempts(&self, clear: &[&str], release: &[&str]) -> Result<(), StoreError>;

    /// Replaces the password hash with one made with the current parameters, only if it is
    /// still `old_hash`. `false` if it changed meanwhile (then nothing is done).
    fn rehash_password(
        &self,
        user_id: &str,
        old_hash: &str,
        new_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Stores a new OAuth `state`.
    fn create_oauth_state(&self, new: &NewOAuthState<'_>) -> Result<(), StoreError>;

    /// Consumes the live `state` with this digest: of concurrent uses exactly one gets it.
    fn take_oauth_state(
        &self,
        digest: &Digest,
        now: i64,
    ) -> Result<Option<OAuthStateRecord>, StoreError>;

    /// In one transaction: finds the user linked to the provider account (updating the
    /// profile), or links an existing account by verified email when the rule allows, or
    /// creates an active user; then opens a session that remembers its provider.
    fn social_login(&self, login: &NewSocialLogin<'_>) -> Result<SocialLoginOutcome, StoreError>;

    /// Links a provider account to the live session's user.
    fn link_social(&self, link: &SocialLink<'_>) -> Result<LinkOutcome, StoreError>;

    /// The social session with this digest, if its re-check is due at `now`.
    fn social_session_due(
        &self,
        digest: &Digest,
        now: i64,
    ) -> Result<Option<SocialSessionRecord>, StoreError>;

    /// Records a re-check: the next one is at `next_recheck_at`; `verified_at` is set when the
    /// provider confirmed the user, and `tokens_sealed` replaces the kept tokens when given.
    fn social_session_rechecked(
        &self,
        digest: &Digest,
        verified_at: Option<i64>,
        next_recheck_at: i64,
        tokens_sealed: Option<&[u8]>,
    ) -> Result<(), StoreError>;

    /// Deletes sessions, codes and OAuth states that expired before `now`. Returns how many
    /// rows went.
    fn purge_expired(&self, now: i64) -> Result<u64, StoreError>;

    /// The outcome recorded for the request `message_id` of `caller` at or after
    /// `recorded_since`, if any.
    fn find_outcome(
        &self,
        caller: &str,
        message_id: &str,
        recorded_since: i64,
    ) -> Result<Option<RecordedOutcome>, StoreError>;

    /// Runs `work` (which calls other methods of this store and returns the sealed reply) in
    /// one write transaction, and with a `key` records its outcome in it too: the effect, its
    /// events and its outcome commit together or not at all. If an outcome is already recorded
    /// under `key`, nothing runs and that outcome is returned instead.
    /// Outcomes recorded before `recorded_since` are out of the window: ignored and replaced.
    fn with_outcome(
        &self,
        key: Option<&OutcomeKey>,
        now: i64,
        recorded_since: i64,
        work: &mut OutcomeWork<'_>,
    ) -> Result<Option<RecordedOutcome>, StoreError>;

    /// Appends an event to the outbox (inside the caller's transaction when there is one).
    fn enqueue_event(&self, routing_key: &str, sealed: &[u8], now: i64) -> Result<(), StoreError>;

    /// Claims up to `limit` of the oldest unpublished events for `lease_ms`, unless another
    /// relay holds a claim (events go out one relay at a time, in order).
    fn claim_events(
        &self,
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, StoreError>;

    /// Removes published events (up to and including `seq`, of those claimed).
    fn delete_events(&self, up_to_seq: i64) -> Result<(), StoreError>;

    /// Starts tracking the deletion cascade of `user_id`: every one of `services` must
    /// acknowledge it before `deadline`.
    fn begin_deletion(
        &self,
        user_id: &str,
        services: &[String],
        now: i64,
        deadline: i64,
    ) -> Result<(), StoreError>;

    /// Records that `service` deleted its data about `user_id` (a repeat changes nothing).
    fn acknowledge_deletion(
        &self,
        user_id: &str,
        service: &str,
        now: i64,
    ) -> Result<DeletionAck, StoreError>;

    /// The deletion cascade of `user_id`, if one is tracked.
    fn deletion(&self, user_id: &str) -> Result<Option<DeletionRecord>, StoreError>;

    /// Marks the cascade of `user_id` complete; `false` if it already was.
    fn complete_deletion(&self, user_id: &str, now: i64) -> Result<bool, StoreError>;

    /// The cascades still open whose deadline has passed.
    fn overdue_deletions(&self, now: i64) -> Result<Vec<DeletionRecord>, StoreError>;

    /// Moves the user's session epoch forward (every session of the user ended at once);
    /// returns the new epoch (0 for an unknown user).
    fn bump_session_epoch(&self, user_id: &str) -> Result<u64, StoreError>;

    /// The ids of every suspended user.
    fn suspended_users(&self) -> Result<Vec<String>, StoreError>;

    /// Deletes outcomes recorded before `recorded_before`. Returns how many went.
    fn purge_outcomes(&self, recorded_before: i64) -> Result<u64, StoreError>;
}
