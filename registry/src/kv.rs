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
    /// A new key would pass the install's key limit.
    #[error("the install already holds its limit of {0} keys; delete some first")]
    TooManyKeys(u64),
    /// `increment` on a value that is not a decimal integer, or past the counter range.
    #[error("cannot increment: {0}")]
    NotACounter(String),
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
        read_in(&self.read, scope, key).await
    }

    /// Keys of the scope, sorted, at most `limit`.
    pub async fn keys(&self, scope: &KvScope, limit: u32) -> Result<Vec<String>, RegistryError> {
        self.list(scope, 0, limit).await
    }

    /// Keys of the scope, sorted, skipping the first `offset`, at most `limit`.
    pub async fn list(
        &self,
        scope: &KvScope,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<String>, RegistryError> {
        check(scope, "k", 0)?;
        let mut rows = self
            .read
            .query(
                "SELECT key FROM kv_entry WHERE tenant_id = ?1 AND extension_name = ?2 AND bucket = ?3
                 ORDER BY key LIMIT ?4 OFFSET ?5",
                params![
                    scope.tenant.clone(),
                    scope.extension.clone(),
                    scope.bucket.clone(),
                    i64::from(limit),
                    i64::try_from(offset).unwrap_or(i64::MAX)
                ],
            )
            .await?;
        let mut keys = Vec::new();
        while let Some(row) = rows.next().await? {
            keys.push(row.get(0)?);
        }
        Ok(keys)
    }

    /// Sets `key` (primary only). A key the scope's tenant × extension does not hold yet is
    /// refused once it holds `max_keys` (across its buckets).
    pub async fn put(
        &self,
        scope: &KvScope,
        key: &str,
        value: &[u8],
        max_keys: Option<u64>,
    ) -> Result<(), RegistryError> {
        check(scope, key, value.len())?;
        let writer = self.writer().await?;
        let tx = writer.transaction().await?;
        if let Some(max) = max_keys {
            check_room(&tx, scope, key, max).await?;
        }
        upsert(&tx, scope, key, value.to_vec()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds `delta` to the decimal counter at `key` (absent counts as 0) and returns the new
    /// value (primary only); the read and the write are one transaction. Counters range over
    /// `i64::MIN..=u64::MAX`, the union of what the `wasi:keyvalue` drafts count in (u64 deltas
    /// in `0.2.0-draft`, s64 in `0.2.0-draft2`); each caller narrows the result to its type.
    pub async fn increment(
        &self,
        scope: &KvScope,
        key: &str,
        delta: i128,
        max_keys: Option<u64>,
    ) -> Result<i128, RegistryError> {
        check(scope, key, 0)?;
        let range = i128::from(i64::MIN)..=i128::from(u64::MAX);
        let writer = self.writer().await?;
        let tx = writer.transaction().await?;
        let current = match read_in(&tx, scope, key).await? {
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| text.parse::<i128>().ok())
                .filter(|value| range.contains(value))
                .ok_or_else(|| KvError::NotACounter("the value is not a decimal integer".into()))?,
            None => {
                if let Some(max) = max_keys {
                    check_room(&tx, scope, key, max).await?;
                }
                0
            }
        };
        let next = current
            .checked_add(delta)
            .filter(|next| range.contains(next))
            .ok_or_else(|| {
                KvError::NotACounter(format!(
                    "the result would leave {}..={}",
                    i64::MIN,
                    u64::MAX
                ))
            })?;
        upsert(&tx, scope, key, next.to_string().into_bytes()).await?;
        tx.commit().await?;
        Ok(next)
    }

    /// Sets `key` to `value` only if its current value is `expected` (`None`: the key is
    /// absent), in one transaction (primary only); whether it was set.
    pub async fn compare_and_swap(
        &self,
        scope: &KvScope,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        max_keys: Option<u64>,
    ) -> Result<bool, RegistryError> {
        check(scope, key, value.len())?;
        let writer = self.writer().await?;
        let tx = writer.transaction().await?;
        let current = read_in(&tx, scope, key).await?;
        if current.as_deref() != expected {
            return Ok(false);
        }
        if let (None, Some(max)) = (&current, max_keys) {
            check_room(&tx, scope, key, max).await?;
        }
        upsert(&tx, scope, key, value.to_vec()).await?;
        tx.commit().await?;
        Ok(true)
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
                key_params(scope, key),
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

/// `?1..?4` of a statement naming one key: tenant, extension, bucket, key.
fn key_params(scope: &KvScope, key: &str) -> Vec<libsql::Value> {
    vec![
        scope.tenant.clone().into(),
        scope.extension.clone().into(),
        scope.bucket.clone().into(),
        key.to_owned().into(),
    ]
}

/// The value of `key` as `connection` (or a transaction on it) sees it.
async fn read_in(
    connection: &libsql::Connection,
    scope: &KvScope,
    key: &str,
) -> Result<Option<Vec<u8>>, RegistryError> {
    let mut rows = connection
        .query(
            "SELECT value FROM kv_entry
             WHERE tenant_id = ?1 AND extension_name = ?2 AND bucket = ?3 AND key = ?4",
            key_params(scope, key),
        )
        .await?;
    Ok(match rows.next().await? {
        Some(row) => Some(row.get::<Vec<u8>>(0)?),
        None => None,
    })
}

/// Refuses a new `key` when the tenant × extension already holds `max` keys.
async fn check_room(
    tx: &libsql::Transaction,
    scope: &KvScope,
    key: &str,
    max: u64,
) -> Result<(), RegistryError> {
    let mut rows = tx
        .query(
            "SELECT EXISTS (SELECT 1 FROM kv_entry WHERE tenant_id = ?1 AND extension_name = ?2
                                                   AND bucket = ?3 AND key = ?4),
                    (SELECT COUNT(*) FROM kv_entry WHERE tenant_id = ?1 AND extension_name = ?2)",
            key_params(scope, key),
        )
        .await?;
    let row = rows
        .next()
        .await?
        .ok_or_else(|| RegistryError::Corrupt("count returned no row".into()))?;
    let (exists, held): (i64, i64) = (row.get(0)?, row.get(1)?);
    if exists == 0 && u64::try_from(held).unwrap_or(0) >= max {
        return Err(KvError::TooManyKeys(max).into());
    }
    Ok(())
}

async fn upsert(
    tx: &libsql::Transaction,
    scope: &KvScope,
    key: &str,
    value: Vec<u8>,
) -> Result<(), RegistryError> {
    tx.execute(
        "INSERT INTO kv_entry (tenant_id, extension_name, bucket, key, value, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (tenant_id, extension_name, bucket, key)
         DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        params![
            scope.tenant.clone(),
            scope.extension.clone(),
            scope.bucket.clone(),
            key.to_owned(),
            value,
            db::now()
        ],
    )
    .await?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> KvScope {
        KvScope {
            tenant: "t".into(),
            extension: "e".into(),
            bucket: "b".into(),
        }
    }

    async fn store(dir: &tempfile::TempDir) -> KvStore {
        KvStore::open(&dir.path().join("kv.db")).await.unwrap()
    }

    #[tokio::test]
    async fn counters_span_both_drafts_ranges_and_refuse_to_leave_them() {
        let dir = tempfile::tempdir().unwrap();
        let kv = store(&dir).await;
        let s = scope();
        assert_eq!(kv.increment(&s, "c", 5, None).await.unwrap(), 5);
        assert_eq!(kv.increment(&s, "c", -8, None).await.unwrap(), -3);
        assert_eq!(kv.get(&s, "c").await.unwrap().unwrap(), b"-3");
        let top = i128::from(u64::MAX);
        assert_eq!(kv.increment(&s, "u", top, None).await.unwrap(), top);
        assert!(
            kv.increment(&s, "u", 1, None).await.is_err(),
            "past u64::MAX"
        );
        let bottom = i128::from(i64::MIN);
        assert_eq!(kv.increment(&s, "i", bottom, None).await.unwrap(), bottom);
        assert!(
            kv.increment(&s, "i", -1, None).await.is_err(),
            "below i64::MIN"
        );
        kv.put(&s, "text", b"hello", None).await.unwrap();
        assert!(kv.increment(&s, "text", 1, None).await.is_err());
        assert_eq!(kv.get(&s, "text").await.unwrap().unwrap(), b"hello");
    }

    #[tokio::test]
    async fn compare_and_swap_sets_only_over_the_expected_value() {
        let dir = tempfile::tempdir().unwrap();
        let kv = store(&dir).await;
        let s = scope();
        // Absent expected: creates once, then the key exists and the same swap fails.
        assert!(
            kv.compare_and_swap(&s, "k", None, b"one", None)
                .await
                .unwrap()
        );
        assert!(
            !kv.compare_and_swap(&s, "k", None, b"two", None)
                .await
                .unwrap()
        );
        assert_eq!(kv.get(&s, "k").await.unwrap().unwrap(), b"one");
        // A stale expected value changes nothing; the current one swaps.
        assert!(
            !kv.compare_and_swap(&s, "k", Some(b"zero"), b"two", None)
                .await
                .unwrap()
        );
        assert!(
            kv.compare_and_swap(&s, "k", Some(b"one"), b"two", None)
                .await
                .unwrap()
        );
        assert_eq!(kv.get(&s, "k").await.unwrap().unwrap(), b"two");
        // The key limit holds for keys a swap would create.
        assert!(
            kv.compare_and_swap(&s, "new", None, b"x", Some(1))
                .await
                .is_err()
        );
        assert_eq!(kv.get(&s, "new").await.unwrap(), None);
    }
}
