//! One typed method per operation: each builds the operation's request, calls
//! [`Client::call`] and returns the reply's `data` (the social login ones are in
//! `crate::social`).

use super::Client;
use crate::error::ClientError;
use authq_protocol::Secret;
use authq_protocol::ops::{
    ChangePasswordReply, ChangePasswordRequest, CheckReply, CheckRequest, CompleteResetReply,
    CompleteResetRequest, ConfirmRegistrationReply, ConfirmRegistrationRequest, DeleteUserReply,
    DeleteUserRequest, DeletionDoneRequest, DeletionStatusReply, DeletionStatusRequest, Empty,
    EndSessionRequest, GetProfileRequest, ListSessionsReply, ListSessionsRequest, LoginReply,
    LoginRequest, LogoutAllReply, LogoutAllRequest, LogoutRequest, PingRequest, ProfileMode,
    ProfileReply, RegisterReply, RegisterRequest, SetProfileRequest, StartResetReply,
    StartResetRequest, SuspendRequest, UnsuspendRequest, UserRef, UserStateReply,
};

impl Client {
    /// `ping`: a no-op round trip.
    ///
    /// # Errors
    ///
    /// the errors every call can return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// client.ping().await?;
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self) -> Result<(), ClientError> {
        let Empty {} = self.call(&PingRequest {}).await?;
        Ok(())
    }

    /// `register`: starts a registration and returns the confirmation code to mail.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `user_exists` (an active or suspended user has this email),
    /// `too_many_attempts` (5 per email per hour), `bad_request` (a malformed email); and the
    /// errors every call can return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let reg = client.register("ann@example.com").await?;
    /// send_mail("ann@example.com", reg.code.expose());
    /// # fn send_mail(_: &str, _: &str) {}
    /// # Ok(()) }
    /// ```
    pub async fn register(&self, email: &str) -> Result<RegisterReply, ClientError> {
        self.call(&RegisterRequest {
            email: email.to_owned(),
            profile: None,
        })
        .await
    }

    /// `register` with an initial profile.
    ///
    /// # Errors
    ///
    /// As [`Client::register`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let mut profile = serde_json::Map::new();
    /// profile.insert("name".into(), "Ann".into());
    /// let reg = client.register_with_profile("ann@example.com", profile).await?;
    /// # Ok(()) }
    /// ```
    pub async fn register_with_profile(
        &self,
        email: &str,
        profile: serde_json::Map<String, serde_json::Value>,
    ) -> Result<RegisterReply, ClientError> {
        self.call(&RegisterRequest {
            email: email.to_owned(),
            profile: Some(profile),
        })
        .await
    }

    /// `confirm_registration`: the code and the chosen password make the user active.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `invalid_code` (wrong, expired, used code, or no pending
    /// registration) or `weak_password`; and the errors every call can return (see
    /// [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let reply = client.confirm_registration("ann@example.com", "53649536", "correct horse battery").await?;
    /// assert_eq!(reply.user.state, authq::types::UserState::Active);
    /// # Ok(()) }
    /// ```
    pub async fn confirm_registration(
        &self,
        email: &str,
        code: &str,
        password: &str,
    ) -> Result<ConfirmRegistrationReply, ClientError> {
        self.call(&ConfirmRegistrationRequest {
            email: email.to_owned(),
            code: Secret::from(code),
            password: Secret::from(password),
        })
        .await
    }

    /// `login`: a new session for a correct email and password.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `invalid_credentials`, `user_suspended`, `too_many_attempts` or
    /// `policy_denied`; and the errors every call can return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// match client.login("ann@example.com", "correct horse battery").await {
    ///     Ok(login) => println!("session until {}", login.expires_at),
    ///     Err(e) if e.code() == Some(authq::ErrorCode::InvalidCredentials) => println!("try again"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn login(&self, email: &str, password: &str) -> Result<LoginReply, ClientError> {
        self.call(&LoginRequest {
            client_ip: None,
            user_agent: None,
            email: email.to_owned(),
            password: Secret::from(password),
        })
        .await
    }

    /// `check`: the session's user (renewing the session when due).
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `session_invalid` (unknown, ended or expired) or
    /// `user_suspended`; and the errors every call can return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let me = client.check("6x8y1GuhtDN4OHD4v94xcy2FGnmAg33yc47MjVDFNZk").await?;
    /// println!("{} ({:?})", me.user.email, me.user.state);
    /// # Ok(()) }
    /// ```
    pub async fn check(&self, session: &str) -> Result<CheckReply, ClientError> {
        self.call(&CheckRequest {
            session: Secret::from(session),
        })
        .await
    }

    /// `logout`: ends the session.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `session_invalid`; and the errors every call can return (see
    /// [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// client.logout("6x8y1GuhtDN4OHD4v94xcy2FGnmAg33yc47MjVDFNZk").await?;
    /// # Ok(()) }
    /// ```
    pub async fn logout(&self, session: &str) -> Result<(), ClientError> {
        let Empty {} = self
            .call(&LogoutRequest {
                session: Secret::from(session),
            })
            .await?;
        Ok(())
    }

    /// `logout_all`: ends every session of the session's user.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `session_invalid`; and the errors every call can return (see
    /// [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let ended = client.logout_all("6x8y1GuhtDN4OHD4v94xcy2FGnmAg33yc47MjVDFNZk").await?.ended;
    /// # Ok(()) }
    /// ```
    pub async fn logout_all(&self, session: &str) -> Result<LogoutAllReply, ClientError> {
        self.call(&LogoutAllRequest {
            session: Secret::from(session),
        })
        .await
    }

    /// `login` with the end user's device metadata, kept with the session for
    /// `list_sessions`: the `client_ip` (also limits failed logins per address) and the
    /// `user_agent` (at most 512 bytes), each optional.
    ///
    /// # Errors
    ///
    /// Those of [`Client::login`], and `bad_request` for a `client_ip` that is not an IP address
    /// or a `user_agent` that is too long or holds control characters.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let login = client
    ///     .login_from("ann@example.com", "correct horse battery", Some("203.0.113.7"), Some("Firefox/140"))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn login_from(
        &self,
        email: &str,
        password: &str,
        client_ip: Option<&str>,
        user_agent: Option<&str>,
    ) -> Result<LoginReply, ClientError> {
        self.call(&LoginRequest {
            client_ip: client_ip.map(str::to_owned),
            user_agent: user_agent.map(str::to_owned),
            email: email.to_owned(),
            password: Secret::from(password),
        })
        .await
    }

    /// `list_sessions`: the live sessions of the session's user, newest first (ids, times,
    /// device metadata; never tokens).
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `session_invalid` or `user_suspended`; and the errors every
    /// call can return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// for s in client.list_sessions("6x8y1GuhtDN4OHD4v94xcy2FGnmAg33yc47MjVDFNZk").await?.sessions {
    ///     println!("{} {:?} current={}", s.id, s.user_agent, s.current);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_sessions(&self, session: &str) -> Result<ListSessionsReply, ClientError> {
        self.call(&ListSessionsRequest {
            session: Secret::from(session),
        })
        .await
    }

    /// `end_session`: ends one of the session's user's sessions, by its id from
    /// [`Client::list_sessions`].
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `session_invalid` (the caller's session), `user_suspended`,
    /// or `session_not_found` (no live session of this user has that id); and the errors every
    /// call can return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// client.end_session("6x8y1GuhtDN4OHD4v94xcy2FGnmAg33yc47MjVDFNZk", "9f2c4e1a7b3d5f608a1c2e4b6d8f0a13").await?;
    /// # Ok(()) }
    /// ```
    pub async fn end_session(&self, session: &str, session_id: &str) -> Result<(), ClientError> {
        let Empty {} = self
            .call(&EndSessionRequest {
                session: Secret::from(session),
                session_id: session_id.to_owned(),
            })
            .await?;
        Ok(())
    }

    /// `start_reset`: a reset token to mail (same reply shape whether the email exists or not).
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `forbidden` (the caller is not an administrative caller) or
    /// `too_many_attempts`; and the errors every call can return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let reset = client.start_reset("ann@example.com").await?;
    /// send_mail("ann@example.com", reset.token.expose());
    /// # fn send_mail(_: &str, _: &str) {}
    /// # Ok(()) }
    /// ```
    pub async fn start_reset(&self, email: &str) -> Result<StartResetReply, ClientError> {
        self.call(&StartResetRequest {
            email: email.to_owned(),
        })
        .await
    }

    /// `complete_reset`: the token and a new password; ends every session.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `invalid_code` or `weak_password`; and the errors every call
    /// can return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let done = client.complete_reset("ann@example.com", "Gq3b0mJ7yD6kYQvFh2sZ1xPp9LwTnA4eRcUuV8iKj5o", "a brand new secret").await?;
    /// println!("{} sessions ended", done.sessions_ended);
    /// # Ok(()) }
    /// ```
    pub async fn complete_reset(
        &self,
        email: &str,
        token: &str,
        password: &str,
    ) -> Result<CompleteResetReply, ClientError> {
        self.call(&CompleteResetRequest {
            email: email.to_owned(),
            token: Secret::from(token),
            password: Secret::from(password),
        })
        .await
    }

    /// `change_password`: the old and new password; ends the user's other sessions.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `session_invalid`, `invalid_credentials` (wrong old password),
    /// `weak_password` or `user_suspended`; and the errors every call can return (see
    /// [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// client.change_password("6x8y1GuhtDN4OHD4v94xcy2FGnmAg33yc47MjVDFNZk", "correct horse battery", "another long secret").await?;
    /// # Ok(()) }
    /// ```
    pub async fn change_password(
        &self,
        session: &str,
        old_password: &str,
        new_password: &str,
    ) -> Result<ChangePasswordReply, ClientError> {
        self.call(&ChangePasswordRequest {
            session: Secret::from(session),
            old_password: Secret::from(old_password),
            new_password: Secret::from(new_password),
        })
        .await
    }

    /// `get_profile`: the session's user with the profile.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `session_invalid` or `user_suspended`; and the errors every
    /// call can return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let profile = client.get_profile("6x8y1GuhtDN4OHD4v94xcy2FGnmAg33yc47MjVDFNZk").await?.user.profile;
    /// # Ok(()) }
    /// ```
    pub async fn get_profile(&self, session: &str) -> Result<ProfileReply, ClientError> {
        self.call(&GetProfileRequest {
            session: Secret::from(session),
        })
        .await
    }

    /// `set_profile`: merges (RFC 7396) or replaces the session user's profile.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `session_invalid`, `user_suspended`, or `bad_request` (the
    /// profile would exceed its size limit); and the errors every call can return (see
    /// [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let mut patch = serde_json::Map::new();
    /// patch.insert("tz".into(), "UTC".into());
    /// let reply = client.set_profile("6x8y1GuhtDN4OHD4v94xcy2FGnmAg33yc47MjVDFNZk", patch, authq::types::ProfileMode::Merge).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_profile(
        &self,
        session: &str,
        profile: serde_json::Map<String, serde_json::Value>,
        mode: ProfileMode,
    ) -> Result<ProfileReply, ClientError> {
        self.call(&SetProfileRequest {
            session: Secret::from(session),
            profile,
            mode,
        })
        .await
    }

    /// `delete_user`: deletes a user with every session and code.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `not_found` or `forbidden` (the caller is not an administrative
    /// caller); and the errors every call can return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// client.delete_user(authq::types::UserRef::email("ann@example.com")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete_user(&self, user: UserRef) -> Result<DeleteUserReply, ClientError> {
        self.call(&DeleteUserRequest { user }).await
    }

    /// `suspend`: the user's sessions end and login is refused.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `not_found` or `forbidden`; and the errors every call can
    /// return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let reply = client.suspend(authq::types::UserRef::email("ann@example.com")).await?;
    /// println!("{} sessions ended", reply.sessions_ended);
    /// # Ok(()) }
    /// ```
    pub async fn suspend(&self, user: UserRef) -> Result<UserStateReply, ClientError> {
        self.call(&SuspendRequest { user }).await
    }

    /// `unsuspend`: lifts a suspension.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `not_found` or `forbidden`; and the errors every call can
    /// return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// client.unsuspend(authq::types::UserRef::id("01a208ad-da95-7397-8db6-326deded1d5f")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn unsuspend(&self, user: UserRef) -> Result<UserStateReply, ClientError> {
        self.call(&UnsuspendRequest { user }).await
    }
}

/// The deletion cascade.
impl Client {
    /// `deletion_done`: `service` has deleted its data about the deleted user `user_id`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `not_found` (no deletion of this user is tracked) or
    /// `bad_request` (the deletion does not wait for this service); and the errors every call can
    /// return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let status = client.deletion_done("01a208ad-da95-7397-8db6-326deded1d5f", "billing").await?;
    /// println!("still waiting for {:?}", status.pending);
    /// # Ok(()) }
    /// ```
    pub async fn deletion_done(
        &self,
        user_id: &str,
        service: &str,
    ) -> Result<DeletionStatusReply, ClientError> {
        self.call(&DeletionDoneRequest {
            user_id: user_id.to_owned(),
            service: service.to_owned(),
        })
        .await
    }

    /// `deletion_status`: which services have acknowledged the deletion of `user_id`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `not_found`; and the errors every call can return (see
    /// [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let status = client.deletion_status("01a208ad-da95-7397-8db6-326deded1d5f").await?;
    /// # Ok(()) }
    /// ```
    pub async fn deletion_status(&self, user_id: &str) -> Result<DeletionStatusReply, ClientError> {
        self.call(&DeletionStatusRequest {
            user_id: user_id.to_owned(),
        })
        .await
    }
}
