//! A failed login, whichever path it took (password, social): who tried, and the
//! `auth.login.failed` event recorded for it.

use crate::error::HandlerError;
use authq_protocol::events::{EventBody, LoginFailed, LoginMethod};
use std::sync::Arc;

/// Who tried to log in, and how: what the `auth.login.failed` event of a failure says besides
/// the reason.
#[derive(Debug)]
pub(crate) struct Attempt {
    /// The user, when known.
    pub user_id: Option<String>,
    /// The email tried (or the provider's), when known.
    pub email: Option<String>,
    /// The caller's `client_ip`.
    pub source: Option<String>,
    /// Password or social.
    pub method: LoginMethod,
    /// The social provider.
    pub provider: Option<String>,
}

impl Attempt {
    /// The `auth.login.failed` event of this attempt failing with `error` (its code as the
    /// reason, a policy's words as the detail).
    pub fn failed(self, error: &HandlerError) -> EventBody {
        EventBody::LoginFailed(LoginFailed {
            user_id: self.user_id,
            email: self.email,
            reason: error.code(),
            source: self.source,
            method: self.method,
            provider: self.provider,
            detail: match error {
                HandlerError::PolicyDenied(reason) => Some(reason.clone()),
                _ => None,
            },
        })
    }
}

/// Records the `auth.login.failed` event of `attempt` and returns `error`: the one place every
/// login path (password, social) reports a failure.
pub(crate) async fn login_failed_event<T>(
    ctx: &super::Ctx,
    error: HandlerError,
    attempt: Attempt,
) -> Result<T, HandlerError> {
    let (events, now) = (Arc::clone(&ctx.events), ctx.now());
    let body = attempt.failed(&error);
    ctx.write(move |s| events.record(s, body, now)).await?;
    ctx.events.wake();
    Err(error)
}
