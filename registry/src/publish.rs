//! Publishing: verify signature → validate manifest and component imports → store bundle →
//! insert version; and reading published versions back.
//!
//! The signature is checked first, against the hash of the raw bytes, so unsigned input is never
//! decompressed or parsed. Everything that can reject a bundle runs before anything is written; a database failure
//! after the store write removes a bundle this publish created, so a refused publish leaves
//! nothing behind. A crash between the two leaves at most an unreferenced bundle file, never a
//! half-visible version (the version row is the only thing that makes a bundle visible).

use libsql::params;

use crate::bundle::{self, ContentHash, UnpackLimits};
use crate::db::now;
use crate::imports::check_imports;
use crate::manifest::Manifest;
use crate::ownership;
use crate::signing::{BundleClaims, SigningError, TrustBundle};
use crate::store::{BundleStore, Stored};
use crate::{Registry, RegistryError};

/// The outcome of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Extension name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Bundle content hash.
    pub content_hash: ContentHash,
    /// `false` when the identical bundle was already published under this version.
    pub created: bool,
}

/// A published version.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionInfo {
    /// Row id (what installs reference).
    pub id: String,
    /// Extension name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Bundle content hash.
    pub content_hash: ContentHash,
    /// The normalised manifest.
    pub manifest: Manifest,
    /// The compact JWS it was published with (re-verified before a bundle is loaded).
    pub signature: String,
    /// Whether it was deprecated.
    pub deprecated: bool,
    /// Fingerprint of the key that signed it.
    pub signer: String,
    /// Whether an admin let `/ext-ui` serve its UI before any tenant installed it.
    pub previewable: bool,
}

impl Registry {
    /// Publishes a bundle signed by a key in `trust`, storing its bytes in `store`.
    pub async fn publish(
        &self,
        bundle_bytes: &[u8],
        signature: &str,
        trust: &TrustBundle,
        store: &BundleStore,
    ) -> Result<Published, RegistryError> {
        // Authenticate before parsing: bytes no trusted publisher signed are never decompressed.
        let content_hash = ContentHash::of(bundle_bytes);
        let (signed, verified) = trust.signed_claims(signature)?;
        if signed.content_hash != content_hash.as_str() {
            return Err(SigningError::Mismatch {
                field: "content_hash",
                signed: signed.content_hash,
                expected: content_hash.to_string(),
            }
            .into());
        }
        let files = bundle::unpack(bundle_bytes, UnpackLimits::default())?;
        let manifest = Manifest::from_bundle(&files)?;
        check_imports(files.component()?, &manifest.capability_set())?;
        signed.check_matches(&BundleClaims {
            content_hash: content_hash.to_string(),
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            publisher: manifest.publisher.clone(),
        })?;

        // Checks that need the database, before the store is touched, under the writer lock so
        // two publishes of one version cannot both pass them.
        let writer = self.writer().await?;
        // The name belongs to a key; the manifest's publisher string is only a label, which
        // must still match so a delegate cannot relabel the extension.
        self.check_signer(&manifest.name, &verified.key_fingerprint)
            .await?;
        if let Some(owner) = self.publisher_of(&manifest.name).await?
            && owner != manifest.publisher
        {
            return Err(RegistryError::PublisherMismatch {
                name: manifest.name,
                owner,
                publisher: manifest.publisher,
            });
        }
        if let Some(existing) = self.version(&manifest.name, &manifest.version).await? {
            if existing.content_hash == content_hash {
                return Ok(Published {
                    name: manifest.name,
                    version: manifest.version,
                    content_hash,
                    created: false,
                });
            }
            return Err(RegistryError::VersionConflict {
                name: manifest.name,
                version: manifest.version,
                existing: existing.content_hash.to_string(),
            });
        }

        let stored = store.put(&content_hash, bundle_bytes).await?;
        let manifest_json =
            serde_json::to_string(&manifest).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
        let insert = async {
            let tx = writer.transaction().await?;
            let at = now();
            let claimed = tx
                .execute(
                    "INSERT INTO extension_registry (name, publisher, owner_fingerprint, created_at)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO NOTHING",
                    params![
                        manifest.name.clone(),
                        manifest.publisher.clone(),
                        verified.key_fingerprint.clone(),
                        at
                    ],
                )
                .await?;
            if claimed == 1 {
                ownership::audit(&tx, &manifest.name, "claim", &verified.key_fingerprint, at)
                    .await?;
            }
            tx.execute(
                "INSERT INTO extension_bundle (content_hash, size_bytes, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (content_hash) DO NOTHING",
                params![content_hash.to_string(), bundle_bytes.len() as i64, at],
            )
            .await?;
            tx.execute(
                "INSERT INTO extension_version
                   (id, extension_name, version, content_hash, manifest_json, signature, signer_fingerprint, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    uuid::Uuid::new_v4().to_string(),
                    manifest.name.clone(),
                    manifest.version.clone(),
                    content_hash.to_string(),
                    manifest_json,
                    signature.trim().to_owned(),
                    verified.key_fingerprint,
                    at
                ],
            )
            .await?;
            tx.commit().await
        };
        if let Err(e) = insert.await {
            if stored == Stored::Created {
                let _ = store.remove(&content_hash).await;
            }
            return Err(e.into());
        }
        Ok(Published {
            name: manifest.name,
            version: manifest.version,
            content_hash,
            created: true,
        })
    }

    /// The publisher that owns `name`, if it was ever published.
    pub async fn publisher_of(&self, name: &str) -> Result<Option<String>, RegistryError> {
        let mut rows = self
            .read
            .query(
                "SELECT publisher FROM extension_registry WHERE name = ?1",
                [name],
            )
            .await?;
        Ok(match rows.next().await? {
            Some(row) => Some(row.get(0)?),
            None => None,
        })
    }

    /// One published version.
    pub async fn version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<VersionInfo>, RegistryError> {
        let mut versions = self
            .versions_where("v.extension_name = ?1 AND v.version = ?2", [name, version])
            .await?;
        Ok(versions.pop())
    }

    /// The version of `name` published with the bundle `content_hash` (a bundle belongs to one
    /// extension name, but the same bytes may be published under one version only).
    pub async fn version_by_hash(
        &self,
        name: &str,
        content_hash: &str,
    ) -> Result<Option<VersionInfo>, RegistryError> {
        let mut versions = self
            .versions_where(
                "v.extension_name = ?1 AND v.content_hash = ?2",
                [name, content_hash],
            )
            .await?;
        Ok(versions.pop())
    }

    /// Every published version of `name`, oldest first.
    pub async fn versions(&self, name: &str) -> Result<Vec<VersionInfo>, RegistryError> {
        self.versions_where("v.extension_name = ?1", [name]).await
    }

    /// Marks a version deprecated: existing installs keep it, new installs are refused.
    pub async fn deprecate(&self, name: &str, version: &str) -> Result<(), RegistryError> {
        self.set_version_flag(name, version, "deprecated", true)
            .await
    }

    /// Lets `/ext-ui` serve the UI of `name@version` before any tenant installed it (or stops
    /// that, with `previewable = false`).
    pub async fn set_previewable(
        &self,
        name: &str,
        version: &str,
        previewable: bool,
    ) -> Result<(), RegistryError> {
        self.set_version_flag(name, version, "previewable", previewable)
            .await
    }

    /// Sets the 0/1 `column` of `name@version`; unknown versions are
    /// [`RegistryError::UnknownVersion`]. `column` is one of ours, never input.
    async fn set_version_flag(
        &self,
        name: &str,
        version: &str,
        column: &'static str,
        value: bool,
    ) -> Result<(), RegistryError> {
        let sql = format!(
            "UPDATE extension_version SET {column} = ?3 WHERE extension_name = ?1 AND version = ?2"
        );
        let changed = self
            .writer()
            .await?
            .execute(&sql, params![name, version, i64::from(value)])
            .await?;
        if changed == 0 {
            return Err(RegistryError::UnknownVersion {
                name: name.to_owned(),
                version: version.to_owned(),
            });
        }
        Ok(())
    }

    /// Whether `/ext-ui` may serve the UI of `name`'s bundle `content_hash`: some tenant
    /// installed that version, or an admin marked it previewable.
    pub async fn ui_servable(&self, name: &str, content_hash: &str) -> Result<bool, RegistryError> {
        let mut rows = self
            .read
            .query(
                "SELECT 1 FROM extension_version v
                 WHERE v.extension_name = ?1 AND v.content_hash = ?2
                   AND (v.previewable = 1 OR EXISTS (
                        SELECT 1 FROM tenant_extension_install i WHERE i.version_id = v.id))",
                [name, content_hash],
            )
            .await?;
        Ok(rows.next().await?.is_some())
    }

    /// Every published extension name, sorted.
    pub async fn extensions(&self) -> Result<Vec<String>, RegistryError> {
        let mut rows = self
            .read
            .query("SELECT name FROM extension_registry ORDER BY name", ())
            .await?;
        let mut names = Vec::new();
        while let Some(row) = rows.next().await? {
            names.push(row.get(0)?);
        }
        Ok(names)
    }

    async fn versions_where<const N: usize>(
        &self,
        condition: &str,
        values: [&str; N],
    ) -> Result<Vec<VersionInfo>, RegistryError> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM extension_version v WHERE {condition}
             ORDER BY v.created_at, v.rowid"
        );
        let mut rows = self.read.query(&sql, values).await?;
        let mut found = Vec::new();
        while let Some(row) = rows.next().await? {
            found.push(version_from_row(&row, 0)?);
        }
        Ok(found)
    }
}

/// The `extension_version` columns (table alias `v`) that [`version_from_row`] decodes.
pub(crate) const VERSION_COLUMNS: &str = "v.id, v.extension_name, v.version, v.content_hash, v.manifest_json, v.signature, v.deprecated, v.signer_fingerprint, v.previewable";

/// Decodes the [`VERSION_COLUMNS`] that start at column `first` of `row`.
pub(crate) fn version_from_row(
    row: &libsql::Row,
    first: i32,
) -> Result<VersionInfo, RegistryError> {
    let corrupt = |e: String| RegistryError::Corrupt(e);
    let hash: String = row.get(first + 3)?;
    let manifest: String = row.get(first + 4)?;
    Ok(VersionInfo {
        id: row.get(first)?,
        name: row.get(first + 1)?,
        version: row.get(first + 2)?,
        content_hash: ContentHash::parse(&hash).map_err(|e| corrupt(e.to_string()))?,
        manifest: serde_json::from_str(&manifest).map_err(|e| corrupt(e.to_string()))?,
        signature: row.get(first + 5)?,
        deprecated: row.get::<i64>(first + 6)? != 0,
        signer: row.get(first + 7)?,
        previewable: row.get::<i64>(first + 8)? != 0,
    })
}
