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
