//! Service clients (programs calling an API, beside users): `create_service_client` and
//! `revoke_service_client` (administrative), and `service_token` (a client's id and secret
//! traded for an access token with `client_type: service` and the client's scopes).

use super::request;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};

/// `client_type` of an access token issued to a service client (by `service_token`).
pub const CLIENT_TYPE_SERVICE: &str = "service";

/// `create_service_client`: a name for people, and the scopes its tokens carry.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateServiceClientRequest {
    /// What the client is (shown to administrators; at most 200 bytes).
    pub name: String,
    /// The scopes its access tokens carry (each 1–64 characters of `A-Za-z0-9_.:-`).
    #[serde(default)]
    pub scopes: Vec<String>,
}
request!(CreateServiceClientRequest => CreateServiceClient, ServiceClientCreated);

/// The reply to `create_service_client`: the client's id and secret. The secret is shown this
/// once: authq keeps only a keyed digest of it.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceClientCreated {
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
    /// The scopes, as stored.
    pub scopes: Vec<String>,
}

/// `revoke_service_client`: the client to revoke (it can get no token any more; tokens already
/// issued expire on their own).
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeServiceClientRequest {
    /// The client id.
    pub client_id: String,
}
request!(RevokeServiceClientRequest => RevokeServiceClient, super::Empty);

/// `service_token`: a service client's credentials.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTokenRequest {
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
}
request!(ServiceTokenRequest => ServiceToken, ServiceTokenReply);

/// The reply to `service_token`.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTokenReply {
    /// The access token (`client_type: service`, `sub`: the client id, `scope`).
    pub access_token: Secret,
    /// When it expires (Unix ms).
    pub access_expires_at: i64,
}

/// `list_service_clients`: no arguments.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListServiceClientsRequest {}
request!(ListServiceClientsRequest => ListServiceClients, ServiceClientList);

/// The reply to `list_service_clients`: every client, revoked ones too, oldest first.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceClientList {
    /// The clients (never their secrets).
    pub clients: Vec<ServiceClientSummary>,
}

/// One service client as `list_service_clients` shows it.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceClientSummary {
    /// The client id.
    pub client_id: String,
    /// Its name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// When it was created (Unix ms).
    pub created_at: i64,
    /// When it was revoked (Unix ms); absent while it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

/// `rotate_service_client_secret`: gives the client a new secret; the old one stops working at
/// once.
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateServiceClientSecretRequest {
    /// The client id.
    pub client_id: String,
}
request!(RotateServiceClientSecretRequest => RotateServiceClientSecret, ServiceClientCreated);
