//! The administrative methods of `authq user`: `list_users`, `get_user`, `import_users`,
//! `end_user_sessions`, `reset_mfa`. Each needs a caller the workers list in `--admin-caller`.

use super::Client;
use crate::error::ClientError;
use authq_protocol::ops::{
    EndUserSessionsReply, EndUserSessionsRequest, GetUserReply, GetUserRequest, ImportUser,
    ImportUsersReply, ImportUsersRequest, ListUsersReply, ListUsersRequest, ResetMfaReply,
    ResetMfaRequest, UserRef,
};

impl Client {
    /// `list_users`: one page of users in canonical email key order.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `forbidden` or `bad_request`; and the errors every call can
    /// return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let request = authq::types::ListUsersRequest {
    ///     email_prefix: Some("ann".into()),
    ///     ..Default::default()
    /// };
    /// let page = client.list_users(request).await?;
    /// println!("{} users, more: {}", page.users.len(), page.next_cursor.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn list_users(
        &self,
        request: ListUsersRequest,
    ) -> Result<ListUsersReply, ClientError> {
        self.call(&request).await
    }

    /// `get_user`: one user with its times, password scheme, sessions and providers.
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
    /// let user = client.get_user(authq::types::UserRef::email("ann@example.com")).await?;
    /// println!("{} live sessions", user.sessions);
    /// # Ok(()) }
    /// ```
    pub async fn get_user(&self, user: UserRef) -> Result<GetUserReply, ClientError> {
        self.call(&GetUserRequest { user }).await
    }

    /// `import_users`: up to 100 users, each imported, already there, or invalid.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `forbidden` or `bad_request`; and the errors every call can
    /// return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let user = authq::types::ImportUser {
    ///     email: "ann@example.com".into(),
    ///     user_id: None,
    ///     state: None,
    ///     profile: None,
    ///     password_hash: None,
    ///     password: None,
    /// };
    /// let reply = client.import_users(vec![user]).await?;
    /// println!("{:?}", reply.results[0].status);
    /// # Ok(()) }
    /// ```
    pub async fn import_users(
        &self,
        users: Vec<ImportUser>,
    ) -> Result<ImportUsersReply, ClientError> {
        self.call(&ImportUsersRequest { users }).await
    }

    /// `end_user_sessions`: every session of the user ends.
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
    /// let reply = client.end_user_sessions(authq::types::UserRef::email("ann@example.com")).await?;
    /// println!("{} sessions ended", reply.ended);
    /// # Ok(()) }
    /// ```
    pub async fn end_user_sessions(
        &self,
        user: UserRef,
    ) -> Result<EndUserSessionsReply, ClientError> {
        self.call(&EndUserSessionsRequest { user }).await
    }

    /// `reset_mfa`: turns the user's TOTP second factor off without a code (for a user who
    /// lost both the authenticator and the recovery codes).
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `not_found`, `mfa_not_enabled` or `forbidden`; and the
    /// errors every call can return (see [`Client::call`]).
    pub async fn reset_mfa(&self, user: UserRef) -> Result<ResetMfaReply, ClientError> {
        self.call(&ResetMfaRequest { user }).await
    }
}
