//! Access token signing keys: each signs from `not_before` until `retire_at`, and stays
//! published until `expires_at` (its retirement plus the longest access token lifetime), so
//! every token it signed verifies until it expires. The private key is stored sealed with the
//! server key (`crate::tokens`); the store is where workers agree on the active key.

use super::StoreError;
use super::query::{Lock, Row, Tx, args};

/// A stored signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// The key id (the JWT header's `kid`).
    pub kid: String,
    /// When it starts signing (Unix ms).
    pub not_before: i64,
    /// When it stops signing (Unix ms).
    pub retire_at: i64,
    /// When it leaves the published key set (Unix ms).
    pub expires_at: i64,
    /// The Ed25519 public key (32 bytes).
    pub public_key: Vec<u8>,
    /// The PKCS#8 private key, sealed (`crate::sealing`) for this `kid`.
    pub sealed_private: Vec<u8>,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("not_before", &self.not_before)
            .field("retire_at", &self.retire_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl SigningKeyRecord {
    fn from_row(r: &Row<'_, '_>) -> Result<Self, StoreError> {
        Ok(Self {
            kid: r.get(0)?,
            not_before: r.get(1)?,
            retire_at: r.get(2)?,
            expires_at: r.get(3)?,
            public_key: r.get(4)?,
            sealed_private: r.get(5)?,
        })
    }
}

impl Tx<'_> {
    /// The key that signs at `now`: the newest not yet retired. (Not "whose window holds
    /// `now`": a key another worker created a moment "later" by its clock must count, or two
    /// workers whose clocks differ by a millisecond would each create one.)
    pub fn active_signing_key(&mut self, now: i64) -> Result<Option<SigningKeyRecord>, StoreError> {
        self.query_opt(
            "SELECT kid, not_before, retire_at, expires_at, public_key, sealed_private
             FROM signing_keys WHERE retire_at > ?1
             ORDER BY not_before DESC, kid DESC LIMIT 1",
            args![now],
            SigningKeyRecord::from_row,
        )
    }

    /// Stores `new` unless a key is already active at `now`, and returns the active key (the
    /// one found, or `new`). Workers racing to create a key serialise on a lock (SQLite's
    /// write transactions, a PostgreSQL advisory lock), so exactly one key is active at a time.
    pub fn insert_signing_key_unless_active(
        &mut self,
        new: &SigningKeyRecord,
        now: i64,
    ) -> Result<SigningKeyRecord, StoreError> {
        self.lock(Lock::SigningKeys)?;
        if let Some(active) = self.active_signing_key(now)? {
            return Ok(active);
        }
        self.execute(
            "INSERT INTO signing_keys (kid, not_before, retire_at, expires_at, public_key,
                                       sealed_private)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            args![
                new.kid.as_str(),
                new.not_before,
                new.retire_at,
                new.expires_at,
                &new.public_key,
                &new.sealed_private
            ],
        )?;
        Ok(new.clone())
    }

    /// The keys published at `now` (signing, or retired with tokens still unexpired), newest
    /// (the active one) first.
    pub fn published_signing_keys(
        &mut self,
        now: i64,
    ) -> Result<Vec<SigningKeyRecord>, StoreError> {
        self.query_all(
            "SELECT kid, not_before, retire_at, expires_at, public_key, sealed_private
             FROM signing_keys WHERE expires_at > ?1
             ORDER BY not_before DESC, kid DESC",
            args![now],
            SigningKeyRecord::from_row,
        )
    }

    /// Deletes the keys no longer published at `now`; returns how many.
    pub fn purge_signing_keys(&mut self, now: i64) -> Result<u64, StoreError> {
        self.execute(
            "DELETE FROM signing_keys WHERE expires_at <= ?1",
            args![now],
        )
    }
}
