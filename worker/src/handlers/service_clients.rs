//! Service clients: `create_service_client` and `revoke_service_client` (administrative: the
//! caller role is checked before dispatch, `crate::caller`), and `service_token`.
//!
//! A service client is not a user: its access token says `client_type: service`, names the
//! client in `sub`, carries its scopes, and no session. It cannot call the user operations,
//! which all take a session token, and an access token is never one.

use super::Call;
use crate::crypto;
use crate::error::HandlerError;
use authq_protocol::events::{EventBody, ServiceClientChanged};
use authq_protocol::ops::{
    CreateServiceClientRequest, Empty, ListServiceClientsRequest, RevokeServiceClientRequest,
    RotateServiceClientSecretRequest, ServiceClientCreated, ServiceClientList,
    ServiceClientSummary, ServiceTokenReply, ServiceTokenRequest,
};
use subtle::ConstantTimeEq;

/// The longest service client name, in bytes.
const MAX_NAME_BYTES: usize = 200;

/// Checks one scope: 1–64 characters of `A-Za-z0-9_.:-`.
fn valid_scope(scope: &str) -> bool {
    (1..=64).contains(&scope.len())
        && scope
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// `create_service_client`: a new client with a random id and a 256-bit random secret, which
/// the reply shows once.
pub async fn create_service_client(
    ctx: &Call<'_>,
    req: CreateServiceClientRequest,
) -> Result<ServiceClientCreated, HandlerError> {
    let name = req.name.trim().to_owned();
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(HandlerError::BadRequest(
            "name: 1 to 200 bytes without control characters".into(),
        ));
    }
    if req.scopes.len() > 64 || !req.scopes.iter().all(|s| valid_scope(s)) {
        return Err(HandlerError::BadRequest(
            "scopes: at most 64, each 1 to 64 characters of A-Za-z0-9_.:-".into(),
        ));
    }
    let mut scopes = req.scopes;
    scopes.sort();
    scopes.dedup();
    let client_id = format!("svc_{}", crypto::new_session_id()?);
    let (secret, _) = crypto::new_token()?;
    let digest = ctx.tokens.client_secret_digest(&client_id, secret.expose());
    let now = ctx.now();
    let (id, joined) = (client_id.clone(), scopes.join(" "));
    let events = std::sync::Arc::clone(&ctx.events);
    ctx.commit(
        move |s| {
            s.insert_service_client(&id, &name, &digest, &joined, now)?;
            let body = EventBody::ServiceClientCreated(ServiceClientChanged { client_id: id });
            events.record(s, body, now)
        },
        move |()| {
            tracing::info!(client_id = %client_id, "service client created");
            Ok(ServiceClientCreated {
                client_id,
                client_secret: secret,
                scopes,
            })
        },
    )
    .await
}

/// `revoke_service_client`: the client gets no token any more. `not_found` for an unknown or
/// already revoked client.
pub async fn revoke_service_client(
    ctx: &Call<'_>,
    req: RevokeServiceClientRequest,
) -> Result<Empty, HandlerError> {
    let now = ctx.now();
    let id = req.client_id.clone();
    let events = std::sync::Arc::clone(&ctx.events);
    ctx.commit(
        move |s| {
            let revoked = s.revoke_service_client(&id, now)?;
            if revoked {
                let body = EventBody::ServiceClientRevoked(ServiceClientChanged { client_id: id });
                events.record(s, body, now)?;
            }
            Ok(revoked)
        },
        move |revoked| {
            if revoked {
                tracing::info!(client_id = %req.client_id, "service client revoked");
                Ok(Empty {})
            } else {
                Err(HandlerError::NotFound)
            }
        },
    )
    .await
}

/// `service_token`: an access token for a client whose id and secret match (compared in
/// constant time as keyed digests). A wrong id, a wrong secret and a revoked client all get
/// `invalid_credentials`; so does every client of a deployment without access tokens.
pub async fn service_token(
    ctx: &Call<'_>,
    req: ServiceTokenRequest,
) -> Result<ServiceTokenReply, HandlerError> {
    let Some(signer) = super::tokens::signer(ctx).await? else {
        return Err(HandlerError::InvalidCredentials);
    };
    let given = ctx
        .tokens
        .client_secret_digest(&req.client_id, req.client_secret.expose());
    let id = req.client_id.clone();
    let client = ctx.read(move |s| s.active_service_client(&id)).await?;
    let Some(client) = client else {
        return Err(HandlerError::InvalidCredentials);
    };
    if !bool::from(client.secret_digest.as_slice().ct_eq(given.as_slice())) {
        return Err(HandlerError::InvalidCredentials);
    }
    let access = signer.sign_service(&client.client_id, &client.scopes, ctx.now())?;
    Ok(ServiceTokenReply {
        access_token: access.token,
        access_expires_at: access.expires_at,
    })
}

/// Splits stored scopes (space-separated) into a list.
fn scope_list(scopes: &str) -> Vec<String> {
    scopes.split_whitespace().map(str::to_owned).collect()
}

/// `list_service_clients`: every client, revoked ones too (never a secret).
pub async fn list_service_clients(
    ctx: &Call<'_>,
    _req: ListServiceClientsRequest,
) -> Result<ServiceClientList, HandlerError> {
    let rows = ctx.read(|s| s.list_service_clients()).await?;
    Ok(ServiceClientList {
        clients: rows
            .into_iter()
            .map(|row| ServiceClientSummary {
                scopes: scope_list(&row.scopes),
                client_id: row.client_id,
                name: row.name,
                created_at: row.created_at,
                revoked_at: row.revoked_at,
            })
            .collect(),
    })
}

/// `rotate_service_client_secret`: a new secret, shown once; the old one stops working at
/// once. `not_found` for an unknown or revoked client.
pub async fn rotate_service_client_secret(
    ctx: &Call<'_>,
    req: RotateServiceClientSecretRequest,
) -> Result<ServiceClientCreated, HandlerError> {
    let (secret, _) = crypto::new_token()?;
    let digest = ctx
        .tokens
        .client_secret_digest(&req.client_id, secret.expose());
    let id = req.client_id.clone();
    ctx.commit(
        move |s| s.rotate_service_client_secret(&id, &digest),
        move |scopes| {
            let scopes = scopes.ok_or(HandlerError::NotFound)?;
            tracing::info!(client_id = %req.client_id, "service client secret rotated");
            Ok(ServiceClientCreated {
                client_id: req.client_id,
                client_secret: secret,
                scopes: scope_list(&scopes),
            })
        },
    )
    .await
}
