//! Service clients: programs that get access tokens with a client id and secret. The secret is
//! stored as a keyed digest (HMAC-SHA256 under a key derived from the server key, see
//! `crate::tokens`), never itself.

use super::StoreError;
use super::query::{Tx, args};
use crate::crypto::Digest;

/// A service client as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceClientRecord {
    /// The client id.
    pub client_id: String,
    /// The keyed digest of its secret.
    pub secret_digest: Vec<u8>,
    /// Its scopes, space-separated.
    pub scopes: String,
}

/// A service client as listed (no secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceClientRow {
    /// The client id.
    pub client_id: String,
    /// Its name.
    pub name: String,
    /// Its scopes, space-separated.
    pub scopes: String,
    /// When it was created (Unix ms).
    pub created_at: i64,
    /// When it was revoked (Unix ms).
    pub revoked_at: Option<i64>,
}

impl Tx<'_> {
    /// Stores a new service client.
    pub fn insert_service_client(
        &mut self,
        client_id: &str,
        name: &str,
        secret_digest: &Digest,
        scopes: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO service_clients (client_id, name, secret_digest, scopes, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            args![client_id, name, secret_digest, scopes, now],
        )?;
        Ok(())
    }

    /// The client with this id, unless revoked.
    pub fn active_service_client(
        &mut self,
        client_id: &str,
    ) -> Result<Option<ServiceClientRecord>, StoreError> {
        self.query_opt(
            "SELECT client_id, secret_digest, scopes FROM service_clients
             WHERE client_id = ?1 AND revoked_at IS NULL",
            args![client_id],
            |r| {
                Ok(ServiceClientRecord {
                    client_id: r.get(0)?,
                    secret_digest: r.get(1)?,
                    scopes: r.get(2)?,
                })
            },
        )
    }

    /// Revokes the client; `false` if there is no such client not yet revoked.
    pub fn revoke_service_client(&mut self, client_id: &str, now: i64) -> Result<bool, StoreError> {
        let n = self.execute(
            "UPDATE service_clients SET revoked_at = ?2
             WHERE client_id = ?1 AND revoked_at IS NULL",
            args![client_id, now],
        )?;
        Ok(n == 1)
    }

    /// Every client, oldest first.
    pub fn list_service_clients(&mut self) -> Result<Vec<ServiceClientRow>, StoreError> {
        self.query_all(
            "SELECT client_id, name, scopes, created_at, revoked_at FROM service_clients
             ORDER BY created_at, client_id",
            args![],
            |r| {
                Ok(ServiceClientRow {
                    client_id: r.get(0)?,
                    name: r.get(1)?,
                    scopes: r.get(2)?,
                    created_at: r.get(3)?,
                    revoked_at: r.get(4)?,
                })
            },
        )
    }

    /// Replaces the secret digest of a client not revoked; returns its scopes, or `None` if
    /// there is no such client.
    pub fn rotate_service_client_secret(
        &mut self,
        client_id: &str,
        secret_digest: &Digest,
    ) -> Result<Option<String>, StoreError> {
        let n = self.execute(
            "UPDATE service_clients SET secret_digest = ?2
             WHERE client_id = ?1 AND revoked_at IS NULL",
            args![client_id, secret_digest],
        )?;
        if n == 0 {
            return Ok(None);
        }
        self.query_value(
            "SELECT scopes FROM service_clients WHERE client_id = ?1",
            args![client_id],
        )
    }
}
