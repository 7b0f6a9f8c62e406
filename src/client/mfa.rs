//! The TOTP second factor's operations: `mfa_enroll`, `mfa_confirm`, `mfa_verify`,
//! `mfa_disable`.

use super::Client;
use crate::error::ClientError;
use authq_protocol::Secret;
use authq_protocol::ops::{
    Empty, LoginReply, MfaConfirmReply, MfaConfirmRequest, MfaDisableRequest, MfaEnrollReply,
    MfaEnrollRequest, MfaVerifyRequest,
};

impl Client {
    /// `mfa_enroll`: a new TOTP secret (and its `otpauth://` URI) for the session's user,
    /// inactive until [`Client::mfa_confirm`].
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `session_invalid`, `user_suspended` or `mfa_enabled`; and
    /// the errors every call can return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let enrol = client.mfa_enroll("6x8y1GuhtDN4OHD4v94xcy2FGnmAg33yc47MjVDFNZk").await?;
    /// println!("scan {}", enrol.uri.expose());
    /// # Ok(()) }
    /// ```
    pub async fn mfa_enroll(&self, session: &str) -> Result<MfaEnrollReply, ClientError> {
        self.call(&MfaEnrollRequest {
            session: Secret::from(session),
        })
        .await
    }

    /// `mfa_confirm`: activates the enrolment with a first code; returns the ten recovery
    /// codes (shown this once).
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `session_invalid`, `invalid_code`, `too_many_attempts`,
    /// `mfa_enabled` or `mfa_not_enabled`; and the errors every call can return (see
    /// [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let codes = client.mfa_confirm("6x8y1GuhtDN4OHD4v94xcy2FGnmAg33yc47MjVDFNZk", "123456").await?;
    /// # Ok(()) }
    /// ```
    pub async fn mfa_confirm(
        &self,
        session: &str,
        code: &str,
    ) -> Result<MfaConfirmReply, ClientError> {
        self.call(&MfaConfirmRequest {
            session: Secret::from(session),
            code: Secret::from(code),
        })
        .await
    }

    /// `mfa_verify` with a TOTP code: the pending handle of an `mfa_required` login
    /// ([`ClientError::mfa_pending`]) to a session.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `invalid_code` (wrong or replayed code, unknown, used or
    /// expired handle), `too_many_attempts`; and the errors every call can return (see
    /// [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// match client.login("ann@example.com", "correct horse battery").await {
    ///     Err(e) if e.mfa_pending().is_some() => {
    ///         let handle = e.mfa_pending().unwrap().handle.expose().to_owned();
    ///         let login = client.mfa_verify(&handle, "123456").await?;
    ///     }
    ///     other => { other?; }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn mfa_verify(&self, handle: &str, code: &str) -> Result<LoginReply, ClientError> {
        self.call(&MfaVerifyRequest {
            handle: Secret::from(handle),
            code: Some(Secret::from(code)),
            recovery_code: None,
        })
        .await
    }

    /// `mfa_verify` with a recovery code (used up by the call).
    ///
    /// # Errors
    ///
    /// As [`Client::mfa_verify`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let login = client.mfa_recover("pending-handle", "1a2b-3c4d-5e6f-7a8b").await?;
    /// # Ok(()) }
    /// ```
    pub async fn mfa_recover(
        &self,
        handle: &str,
        recovery_code: &str,
    ) -> Result<LoginReply, ClientError> {
        self.call(&MfaVerifyRequest {
            handle: Secret::from(handle),
            code: None,
            recovery_code: Some(Secret::from(recovery_code)),
        })
        .await
    }

    /// `mfa_disable` with a current code.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `session_invalid`, `invalid_code`, `too_many_attempts` or
    /// `mfa_not_enabled`; and the errors every call can return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// client.mfa_disable_with_code("6x8y1GuhtDN4OHD4v94xcy2FGnmAg33yc47MjVDFNZk", "123456").await?;
    /// # Ok(()) }
    /// ```
    pub async fn mfa_disable_with_code(
        &self,
        session: &str,
        code: &str,
    ) -> Result<(), ClientError> {
        let Empty {} = self
            .call(&MfaDisableRequest {
                session: Secret::from(session),
                code: Some(Secret::from(code)),
                password: None,
            })
            .await?;
        Ok(())
    }

    /// `mfa_disable` with the password.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `session_invalid`, `invalid_credentials`,
    /// `too_many_attempts` or `mfa_not_enabled`; and the errors every call can return (see
    /// [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// client.mfa_disable_with_password("6x8y1GuhtDN4OHD4v94xcy2FGnmAg33yc47MjVDFNZk", "correct horse battery").await?;
    /// # Ok(()) }
    /// ```
    pub async fn mfa_disable_with_password(
        &self,
        session: &str,
        password: &str,
    ) -> Result<(), ClientError> {
        let Empty {} = self
            .call(&MfaDisableRequest {
                session: Secret::from(session),
                code: None,
                password: Some(Secret::from(password)),
            })
            .await?;
        Ok(())
    }
}
