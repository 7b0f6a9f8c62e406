//! [`Client`]'s social login methods: `social_url`, `social_login`, `link_social`.

use crate::client::Client;
use crate::error::ClientError;
use authq_protocol::Secret;
use authq_protocol::ops::{
    LinkSocialReply, LinkSocialRequest, SocialLoginReply, SocialLoginRequest, SocialUrlReply,
    SocialUrlRequest,
};

impl Client {
    /// `social_url`: the provider's authorization URL (with a fresh single-use `state`) to
    /// redirect the browser to. `redirect_uri`: one of the provider's configured redirect URIs,
    /// or `None` for its default.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `unknown_provider` or `bad_request` (a redirect URI the
    /// provider does not have); and the errors every call can return (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let start = client.social_url("google", None).await?;
    /// println!("redirect the browser to {}", start.url);
    /// # Ok(()) }
    /// ```
    pub async fn social_url(
        &self,
        provider: &str,
        redirect_uri: Option<&str>,
    ) -> Result<SocialUrlReply, ClientError> {
        self.call(&SocialUrlRequest {
            provider: provider.to_owned(),
            redirect_uri: redirect_uri.map(str::to_owned),
        })
        .await
    }

    /// `social_login`: the `code` and `state` the provider sent the browser back with, to a
    /// session. Fails with `link_required` when the email belongs to an existing account that
    /// may not be linked automatically (see [`Client::link_social`]).
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `unknown_provider`, `invalid_state`, `provider_refused`,
    /// `provider_unavailable`, `provider_bad_response`, `missing_subject`, `link_required`,
    /// `user_suspended` or `policy_denied`; and the errors every call can return (see
    /// [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let login = client.social_login("google", "4/0AeanS0b", "q1W0xNnB0d3sKXbC7rLrE6kM4uYp2l8ZfJ9aTnRgS5c").await?;
    /// # Ok(()) }
    /// ```
    pub async fn social_login(
        &self,
        provider: &str,
        code: &str,
        state: &str,
    ) -> Result<SocialLoginReply, ClientError> {
        self.call(&SocialLoginRequest {
            provider: provider.to_owned(),
            code: Secret::from(code),
            state: Secret::from(state),
        })
        .await
    }

    /// `link_social`: links the provider account of a fresh `social_url` round trip to the
    /// user of `session`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `session_invalid`, `user_suspended`, `already_linked`, and
    /// those of [`Client::social_login`] but `link_required`; and the errors every call can return
    /// (see [`Client::call`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(client: authq::Client) -> Result<(), authq::ClientError> {
    /// let linked = client.link_social("6x8y1GuhtDN4OHD4v94xcy2FGnmAg33yc47MjVDFNZk", "google", "4/0AeanS0c", "Zt9vC2x").await?;
    /// println!("{} at {}", linked.subject, linked.provider);
    /// # Ok(()) }
    /// ```
    pub async fn link_social(
        &self,
        session: &str,
        provider: &str,
        code: &str,
        state: &str,
    ) -> Result<LinkSocialReply, ClientError> {
        self.call(&LinkSocialRequest {
            session: Secret::from(session),
            provider: provider.to_owned(),
            code: Secret::from(code),
            state: Secret::from(state),
        })
        .await
    }
}
