//! Extension key-value data (DESIGN §4): its own libsql database, replicated like the registry.
//! Keys are scoped by tenant × extension × bucket. The primary writes; an edge reads its
//! replica and has writes applied by the primary (the host forwards them), then syncs.

use std::path::Path;

use libsql::params;

use crate::replication::{GenerationLog, Replica, ReplicaConfig};
use crate::{RegistryError, db};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv_entry (
    tenant_id      TEXT NOT NULL,
    extension_name TEXT NOT NULL,
    bucket         TEXT NOT NULL,
    key            TEXT NOT NULL,
    value          BLOB NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, extension_name, bucket, key)
) WITHOUT ROWID;
";

/// Whose keys: one tenant's install of one extension, one bucket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KvScope {
    /// Tenant.
    pub tenant: String,
    /// Extension name.
    pub extension: String,
    /// Bucket.
    pub bucket: String,
}

/// A refused key or value.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The key is empty or too long.
    #[error("invalid key: use 1-{MAX_KEY_BYTES} bytes")]
    BadKey,
    /// The value is too large.
    #[error("value of {0} bytes is over the {MAX_VALUE_BYTES}-byte limit")]
    ValueTooLarge(usize),
    /// A scope part is empty or too long.
    #[error("invalid {0}: use 1-128 bytes")]
    BadScope(&'static str),
}

/// The KV database.
pub struct KvStore {
    db: libsql::Database,
    read: libsql::Connection,
    write: Option<tokio::sync::Mutex<libsql::Connection>>,
    replica: Option<Replica>,
}

impl KvStore {
    /// Opens (creating) the primary's KV database at `path`.
    pub async fn open(path: &Path) -> Result<Self, RegistryError> {
        let (db, write) = db::open_plain(path).await?;
        write.execute_batch(SCHEMA).await?;
        let read = db::connect(&db).await?;
        Ok(Self {
            db,
            read,
            write: Some(tokio::sync::Mutex::new(write)),
            replica: None,
        })
    }

    /// Opens an edge's replica of the primary's KV database.
    pub async fn open_replica(
        path: &Path,
        config: ReplicaConfig,
        primary: String,
    ) -> Result<Self, RegistryError> {
        let replica = Replica::new(path, config, primary);
        let db = replica.open().await?;
        let read = db::connect(&db).await?;
        Ok(Self {
            db,
            read,
            write: None,
            replica: Some(replica),
        })
    }

    /// The replica state, on an edge.
    pub fn replica(&self) -> Option<&Replica> {
        self.replica.as_ref()
    }

    /// Pulls what the primary has (edges); `Ok(false)` when it was unreachable.
    pub async fn sync(&self) -> Result<bool, RegistryError> {
        match &self.replica {
            Some(replica) => Ok(replica.sync(&self.db).await?),
            None => Ok(true),
        }
    }

    /// Starts a new replication generation (primary), holding the writer.
    pub async fn rollover(&self, log: &GenerationLog) -> Result<(), RegistryError> {
        let _writer = self.writer().await?;
        log.rollover()?;
        Ok(())
    }

    /// The value of `key`.
    pub async fn get(&self, scope: &KvScope, key: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        check(scope, key, 0)?;
        let mut rows = self
            .read
            .query(
                "SELECT value FROM kv_entry
                 WHERE tenant_id = ?1 AND extension_name = ?2 AND bucket = ?3 AND key = ?4",
                params![
                    scope.tenant.clone(),
                    scope.extension.clone(),
                    scope.bucket.clone(),
                    key.to_owned()
                ],
            )
            .await?;
        Ok(match rows.next().await? {
            Some(row) => Some(row.get::<Vec<u8>>(0)?),
            None => None,
        })
    }

    /// Keys of the scope, sorted, at most `limit`.
    pub async fn keys(&self, scope: &KvScope, limit: u32) -> Result<Vec<String>, RegistryError> {
        check(scope, "k", 0)?;
        let mut rows = self
            .read
            .query(
                "SELECT key FROM kv_entry WHERE tenant_id = ?1 AND extension_name = ?2 AND bucket = ?3
                 ORDER BY key LIMIT ?4",
                params![
                    scope.tenant.clone(),
                    scope.extension.clone(),
                    scope.bucket.clone(),
                    i64::from(limit)
                ],
            )
            .await?;
        let mut keys = Vec::new();
        while let Some(row) = rows.next().await? {
            keys.push(row.get(0)?);
        }
        Ok(keys)
    }

    /// Sets `key` (primary only).
    pub async fn put(&self, scope: &KvScope, key: &str, value: &[u8]) -> Result<(), RegistryError> {
        check(scope, key, value.len())?;
        self.writer()
            .await?
            .execute(
                "INSERT INTO kv_entry (tenant_id, extension_name, bucket, key, value, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant_id, extension_name, bucket, key)
                 DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![
                    scope.tenant.clone(),
                    scope.extension.clone(),
                    scope.bucket.clone(),
                    key.to_owned(),
                    value.to_vec(),
                    db::now()
                ],
            )
            .await?;
        Ok(())
    }

    /// Removes `key` (primary only); whether it existed.
    pub async fn delete(&self, scope: &KvScope, key: &str) -> Result<bool, RegistryError> {
        check(scope, key, 0)?;
        let removed = self
            .writer()
            .await?
            .execute(
                "DELETE FROM kv_entry
                 WHERE tenant_id = ?1 AND extension_name = ?2 AND bucket = ?3 AND key = ?4",
                params![
                    scope.tenant.clone(),
                    scope.extension.clone(),
                    scope.bucket.clone(),
                    key.to_owned()
                ],
            )
            .await?;
        Ok(removed > 0)
    }

    async fn writer(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, libsql::Connection>, RegistryError> {
        match &self.write {
            Some(write) => Ok(write.lock().await),
            None => Err(RegistryError::ReadOnlyReplica {
                primary: self
                    .replica
                    .as_ref()
                    .map_or_else(|| "the primary".into(), |r| r.primary().to_owned()),
            }),
        }
    }
}

fn check(scope: &KvScope, key: &str, value_len: usize) -> Result<(), KvError> {
    for (name, part) in [
        ("tenant", &scope.tenant),
        ("extension", &scope.extension),
        ("bucket", &scope.bucket),
    ] {
        if part.is_empty() || part.len() > 128 {
            return Err(KvError::BadScope(name));
        }
    }
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(KvError::BadKey);
    }
    if value_len > MAX_VALUE_BYTES {
        return Err(KvError::ValueTooLarge(value_len));
    }
    Ok(())
}
