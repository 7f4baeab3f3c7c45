//! Who may publish an extension name: the key (fingerprint) that first published it, and the
//! keys its owner delegated to. The manifest's `publisher` is a display string anyone can
//! write; only a signing key proves who publishes.
//!
//! A delegation is a compact JWS the owner key signed ([`DelegationClaims`]), so the operator's
//! admin token alone cannot hand a name to another key; revocation needs only the admin token
//! (it can only take rights away). Every claim, delegation and revocation is kept in an audit
//! table.

use libsql::params;
use serde::Serialize;

use crate::db::now;
use crate::signing::TrustBundle;
use crate::{Registry, RegistryError};

/// The keys that may publish one extension name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublisherKeys {
    /// Extension name.
    pub extension: String,
    /// Fingerprint of the key that first published it.
    pub owner: String,
    /// Keys the owner delegated to.
    pub delegates: Vec<DelegatedKey>,
    /// Every change of these rights, oldest first.
    pub audit: Vec<KeyAuditEntry>,
}

/// A key allowed to publish by delegation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DelegatedKey {
    /// Its fingerprint.
    pub fingerprint: String,
    /// Unix seconds of the delegation.
    pub delegated_at: i64,
}

/// One change of publishing rights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyAuditEntry {
    /// `claim` (first publish), `delegate` or `revoke`.
    pub action: String,
    /// The key concerned.
    pub fingerprint: String,
    /// Unix seconds.
    pub at: i64,
}

impl Registry {
    /// The keys that may publish `extension`; unknown names are [`RegistryError::UnknownExtension`].
    pub async fn publisher_keys(&self, extension: &str) -> Result<PublisherKeys, RegistryError> {
        let owner = self
            .owner_key_of(extension)
            .await?
            .ok_or_else(|| RegistryError::UnknownExtension(extension.to_owned()))?;
        let mut delegates = Vec::new();
        let mut rows = self
            .read
            .query(
                "SELECT fingerprint, created_at FROM extension_publisher_key
                 WHERE extension_name = ?1 ORDER BY created_at, fingerprint",
                [extension],
            )
            .await?;
        while let Some(row) = rows.next().await? {
            delegates.push(DelegatedKey {
                fingerprint: row.get(0)?,
                delegated_at: row.get(1)?,
            });
        }
        let mut audit = Vec::new();
        let mut rows = self
            .read
            .query(
                "SELECT action, fingerprint, created_at FROM extension_key_audit
                 WHERE extension_name = ?1 ORDER BY id",
                [extension],
            )
            .await?;
        while let Some(row) = rows.next().await? {
            audit.push(KeyAuditEntry {
                action: row.get(0)?,
                fingerprint: row.get(1)?,
                at: row.get(2)?,
            });
        }
        Ok(PublisherKeys {
            extension: extension.to_owned(),
            owner,
            delegates,
            audit,
        })
    }

    /// The fingerprint of the key that owns `extension`, if it was ever published.
    pub async fn owner_key_of(&self, extension: &str) -> Result<Option<String>, RegistryError> {
        let mut rows = self
            .read
            .query(
                "SELECT owner_fingerprint FROM extension_registry WHERE name = ?1",
                [extension],
            )
            .await?;
        match rows.next().await? {
            Some(row) => Ok(Some(row.get::<Option<String>>(0)?.ok_or_else(|| {
                RegistryError::Corrupt(format!("extension '{extension}' has no owner key"))
            })?)),
            None => Ok(None),
        }
    }

    /// Refuses `signer` unless it owns `extension` or was delegated to; a name never
    /// published is free. Callers hold the writer lock so the answer cannot go stale.
    pub(crate) async fn check_signer(
        &self,
        extension: &str,
        signer: &str,
    ) -> Result<(), RegistryError> {
        let Some(owner) = self.owner_key_of(extension).await? else {
            return Ok(());
        };
        if owner == signer || self.is_delegate(extension, signer).await? {
            return Ok(());
        }
        Err(RegistryError::KeyNotAllowed {
            name: extension.to_owned(),
            signer: signer.to_owned(),
            owner,
        })
    }

    async fn is_delegate(&self, extension: &str, fingerprint: &str) -> Result<bool, RegistryError> {
        let mut rows = self
            .read
            .query(
                "SELECT 1 FROM extension_publisher_key WHERE extension_name = ?1 AND fingerprint = ?2",
                [extension, fingerprint],
            )
            .await?;
        Ok(rows.next().await?.is_some())
    }

    /// Lets the key in `delegation` (a JWS the owner key of `extension` signed, see
    /// [`crate::signing::SigningKey::sign_delegation`]) publish versions of `extension`.
    /// Returns `false` when that key already could.
    pub async fn delegate_publishing(
        &self,
        extension: &str,
        delegation: &str,
        trust: &TrustBundle,
    ) -> Result<bool, RegistryError> {
        let writer = self.writer().await?;
        let owner = self
            .owner_key_of(extension)
            .await?
            .ok_or_else(|| RegistryError::UnknownExtension(extension.to_owned()))?;
        let claims = trust.verify_delegation(delegation, &owner)?;
        if claims.extension != extension {
            return Err(crate::signing::SigningError::Mismatch {
                field: "extension",
                signed: claims.extension,
                expected: extension.to_owned(),
            }
            .into());
        }
        if !is_fingerprint(&claims.delegate) {
            return Err(RegistryError::BadFingerprint(claims.delegate));
        }
        if claims.delegate == owner || self.is_delegate(extension, &claims.delegate).await? {
            return Ok(false);
        }
        let tx = writer.transaction().await?;
        let at = now();
        tx.execute(
            "INSERT INTO extension_publisher_key (extension_name, fingerprint, delegation, created_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![extension, claims.delegate.clone(), delegation.trim(), at],
        )
        .await?;
        audit(&tx, extension, "delegate", &claims.delegate, at).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Takes publishing rights on `extension` away from the delegated key `fingerprint`
    /// (versions it already published stay). The owner's own key cannot be revoked.
    pub async fn revoke_publishing(
        &self,
        extension: &str,
        fingerprint: &str,
    ) -> Result<(), RegistryError> {
        let writer = self.writer().await?;
        let owner = self
            .owner_key_of(extension)
            .await?
            .ok_or_else(|| RegistryError::UnknownExtension(extension.to_owned()))?;
        if owner == fingerprint {
            return Err(RegistryError::OwnerKeyRevoke {
                name: extension.to_owned(),
            });
        }
        let tx = writer.transaction().await?;
        let removed = tx
            .execute(
                "DELETE FROM extension_publisher_key WHERE extension_name = ?1 AND fingerprint = ?2",
                [extension, fingerprint],
            )
            .await?;
        if removed == 0 {
            return Err(RegistryError::NotDelegated {
                name: extension.to_owned(),
                fingerprint: fingerprint.to_owned(),
            });
        }
        audit(&tx, extension, "revoke", fingerprint, now()).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Records one change of publishing rights inside the caller's transaction.
pub(crate) async fn audit(
    tx: &libsql::Transaction,
    extension: &str,
    action: &str,
    fingerprint: &str,
    at: i64,
) -> Result<(), libsql::Error> {
    tx.execute(
        "INSERT INTO extension_key_audit (extension_name, action, fingerprint, created_at)
         VALUES (?1, ?2, ?3, ?4)",
        params![extension, action, fingerprint, at],
    )
    .await?;
    Ok(())
}

/// `sha256:` and 64 lowercase hex digits, the form of every key fingerprint.
pub fn is_fingerprint(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}
