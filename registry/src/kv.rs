//! Extension key-value data (DESIGN §4): its own libsql database, replicated like the registry.
//! Keys are scoped by tenant × extension × bucket. The primary writes; an edge reads its
//! replica and has writes applied by the primary (the host forwards them), then catches up.
//!
//! Writes on the primary are group-committed: each write is queued to one committer task,
//! which takes every write waiting and commits them in one transaction (each in its own
//! savepoint, so one write's refusal never touches the others) and answers each with its own
//! outcome. Under concurrency, many writes share one commit (one WAL sync on the primary, one
//! commit frame for edges to apply) instead of queueing for the writer one by one.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libsql::params;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::replication::{CatchUp, GenerationLog, Replica, ReplicaConfig, WalPosition};
use crate::{RegistryError, db};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// `revision`: the value of the `kv_revision` counter when the key was last written (0 for rows
/// written before revisions existed). The counter only grows, so a revision is never reused,
/// not even by a key deleted and written again.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv_entry (
    tenant_id      TEXT NOT NULL,
    extension_name TEXT NOT NULL,
    bucket         TEXT NOT NULL,
    key            TEXT NOT NULL,
    value          BLOB NOT NULL,
    updated_at     INTEGER NOT NULL,
    revision       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, extension_name, bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv_revision (
    id   INTEGER PRIMARY KEY CHECK (id = 0),
    last INTEGER NOT NULL
);
";

/// Creates the counter row; seeded past every stored revision, should it ever go missing.
const SEED_COUNTER: &str = "INSERT OR IGNORE INTO kv_revision (id, last)
    VALUES (0, (SELECT COALESCE(MAX(revision), 0) FROM kv_entry))";

/// Adds `kv_entry.revision` to a database created before revisions existed.
const ADD_REVISION: &str = "ALTER TABLE kv_entry ADD COLUMN revision INTEGER NOT NULL DEFAULT 0";

/// Most writes one transaction commits.
const MAX_BATCH: usize = 256;
/// Most value bytes one transaction commits (a value may be 1 MiB); a batch stops growing once
/// it is past this.
const MAX_BATCH_BYTES: usize = 8 << 20;
/// How long a write may wait for the database lock (SQLite's busy timeout, then retries)
/// before it is answered busy; callers with a shorter deadline give up sooner.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// First pause before trying a batch again after the database was locked (doubling to 100 ms).
const BUSY_PAUSE: Duration = Duration::from_millis(5);

/// A change to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOp {
    /// Store this value.
    Set(Vec<u8>),
    /// Remove the key.
    Delete,
    /// Add to the decimal counter at the key.
    Increment(i128),
    /// Store `value` only if the key holds `expected` (`None`: only if absent).
    Swap {
        /// The value the key must hold.
        expected: Option<Vec<u8>>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Store `value` and give the key a new revision (Alga's `storage.put`); with
    /// `if_revision: Some(r)`, only if the key currently has revision `r`.
    Put {
        /// The new value.
        value: Vec<u8>,
        /// The revision the key must have (`None`: write unconditionally).
        if_revision: Option<u64>,
    },
}

impl KvOp {
    /// Bytes of the value it stores.
    fn value_len(&self) -> usize {
        match self {
            Self::Set(value) | Self::Swap { value, .. } | Self::Put { value, .. } => value.len(),
            Self::Delete | Self::Increment(_) => 0,
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvOutcome {
    /// The value was stored.
    Stored,
    /// The key was removed (`true`) or was not there.
    Deleted(bool),
    /// The counter's new value.
    Counter(i128),
    /// Whether a compare-and-swap stored its value.
    Swapped(bool),
    /// A revisioned put's new revision, or `None` when its `if_revision` did not match (a
    /// conflict: nothing was written).
    Revision(Option<u64>),
}

/// A write the primary committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// What it did.
    pub outcome: KvOutcome,
    /// Where the database's replication history stood once it was committed (when the store
    /// reports positions, see [`KvStore::report_positions`]): a replica at this position has
    /// the write.
    pub position: Option<WalPosition>,
}

/// A write waiting for the committer.
struct Pending {
    scope: KvScope,
    key: String,
    op: KvOp,
    max_keys: Option<u64>,
    deadline: Instant,
    reply: oneshot::Sender<Result<Applied, RegistryError>>,
}

/// The primary's write side: the writer connection and the committer's queue.
struct Primary {
    /// Held by the committer for each batch and by rollovers.
    conn: Arc<tokio::sync::Mutex<libsql::Connection>>,
    queue: mpsc::UnboundedSender<Pending>,
    /// The database's generations, once the node reports positions.
    log: Arc<OnceLock<Arc<GenerationLog>>>,
}

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
    /// The key is empty, too long, or holds a NUL (which listing would cut it at).
    #[error("invalid key: use 1-{MAX_KEY_BYTES} bytes, without NUL")]
    BadKey,
    /// The value is too large.
    #[error("value of {0} bytes is over the {MAX_VALUE_BYTES}-byte limit")]
    ValueTooLarge(usize),
    /// A scope part is empty, too long, or holds a NUL.
    #[error("invalid {0}: use 1-128 bytes, without NUL")]
    BadScope(&'static str),
    /// A new key would pass the install's key limit.
    #[error("the install already holds its limit of {0} keys; delete some first")]
    TooManyKeys(u64),
    /// `increment` on a value that is not a decimal integer, or past the counter range.
    #[error("cannot increment: {0}")]
    NotACounter(String),
}

/// One key of a scope as [`KvStore::list_entries`] returns it: key, value, revision.
pub type KvEntry = (String, Vec<u8>, u64);

/// The KV database.
pub struct KvStore {
    db: libsql::Database,
    read: libsql::Connection,
    write: Option<Primary>,
    replica: Option<Replica>,
}

impl KvStore {
    /// Opens (creating) the primary's KV database at `path`, and starts its committer (on the
    /// current Tokio runtime; it stops when the store is dropped).
    pub async fn open(path: &Path) -> Result<Self, RegistryError> {
        let (db, write) = db::open_plain(path).await?;
        migrate(&write).await?;
        let read = db::connect(&db).await?;
        let conn = Arc::new(tokio::sync::Mutex::new(write));
        let log = Arc::new(OnceLock::new());
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(commit_loop(conn.clone(), log.clone(), pending));
        Ok(Self {
            db,
            read,
            write: Some(Primary { conn, queue, log }),
            replica: None,
        })
    }

    /// From now on, answers every write with the position `log` (this database's generations)
    /// had once it was committed ([`Applied::position`]). Primary only; the first log given
    /// stays.
    pub fn report_positions(&self, log: Arc<GenerationLog>) {
        if let Some(primary) = &self.write {
            let _ = primary.log.set(log);
        }
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

    /// Waits (until `deadline`) for the edge's replica to catch up with `target`; a no-op on
    /// the primary.
    pub async fn catch_up(&self, target: CatchUp, deadline: Instant) -> Result<(), RegistryError> {
        match &self.replica {
            Some(replica) => Ok(replica.catch_up(&self.db, target, deadline).await?),
            None => Ok(()),
        }
    }

    /// Starts a new replication generation (primary), holding the writer; the file work runs
    /// on a blocking thread (see [`crate::Registry::rollover`]).
    pub async fn rollover(&self, log: &Arc<GenerationLog>) -> Result<(), RegistryError> {
        let _writer = self.primary()?.conn.lock().await;
        crate::replication::rollover_blocking(log).await?;
        Ok(())
    }

    /// The value of `key`.
    pub async fn get(&self, scope: &KvScope, key: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        check(scope, key, 0)?;
        read_in(&self.read, scope, key).await
    }

    /// The value of `key` and its revision.
    pub async fn get_entry(
        &self,
        scope: &KvScope,
        key: &str,
    ) -> Result<Option<(Vec<u8>, u64)>, RegistryError> {
        check(scope, key, 0)?;
        read_entry_in(&self.read, scope, key).await
    }

    /// Entries of the scope sorted by key, starting after `after_key` (keyset pagination: pass
    /// the last key of the previous page), at most `limit`.
    pub async fn list_entries(
        &self,
        scope: &KvScope,
        after_key: Option<&str>,
        limit: u32,
    ) -> Result<Vec<KvEntry>, RegistryError> {
        check(scope, "k", 0)?;
        // Keys are never empty, so every key sorts after "".
        let mut rows = self
            .read
            .query(
                "SELECT key, value, revision FROM kv_entry
                 WHERE tenant_id = ?1 AND extension_name = ?2 AND bucket = ?3 AND key > ?4
                 ORDER BY key LIMIT ?5",
                params![
                    scope.tenant.clone(),
                    scope.extension.clone(),
                    scope.bucket.clone(),
                    after_key.unwrap_or("").to_owned(),
                    i64::from(limit)
                ],
            )
            .await?;
        let mut entries = Vec::new();
        while let Some(row) = rows.next().await? {
            entries.push((row.get(0)?, row.get(1)?, revision_of(row.get(2)?)));
        }
        Ok(entries)
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

    /// Applies `op` to `key` (primary only), committed together with whatever other writes
    /// are waiting at the time. A key the scope's tenant × extension does not hold yet is
    /// refused once it holds `max_keys` (across its buckets).
    pub async fn apply(
        &self,
        scope: &KvScope,
        key: &str,
        op: KvOp,
        max_keys: Option<u64>,
    ) -> Result<Applied, RegistryError> {
        check(scope, key, op.value_len())?;
        let primary = self.primary()?;
        let (reply, answer) = oneshot::channel();
        primary
            .queue
            .send(Pending {
                scope: scope.clone(),
                key: key.to_owned(),
                op,
                max_keys,
                deadline: Instant::now() + WRITE_DEADLINE,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Sets `key` (primary only); the key limit applies as in [`apply`](Self::apply).
    pub async fn put(
        &self,
        scope: &KvScope,
        key: &str,
        value: &[u8],
        max_keys: Option<u64>,
    ) -> Result<(), RegistryError> {
        self.apply(scope, key, KvOp::Set(value.to_vec()), max_keys)
            .await?;
        Ok(())
    }

    /// Sets `key` (primary only) and returns its new revision, or `None` (a conflict, nothing
    /// written) when `if_revision` is `Some(r)` and the key does not currently have revision
    /// `r` (an absent key has no revision). `if_revision: None` writes unconditionally. The key
    /// limit applies as in [`apply`](Self::apply).
    pub async fn put_revised(
        &self,
        scope: &KvScope,
        key: &str,
        value: &[u8],
        if_revision: Option<u64>,
        max_keys: Option<u64>,
    ) -> Result<Option<u64>, RegistryError> {
        let op = KvOp::Put {
            value: value.to_vec(),
            if_revision,
        };
        match self.apply(scope, key, op, max_keys).await?.outcome {
            KvOutcome::Revision(revision) => Ok(revision),
            other => Err(unexpected(other)),
        }
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
        match self
            .apply(scope, key, KvOp::Increment(delta), max_keys)
            .await?
            .outcome
        {
            KvOutcome::Counter(value) => Ok(value),
            other => Err(unexpected(other)),
        }
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
        let op = KvOp::Swap {
            expected: expected.map(<[u8]>::to_vec),
            value: value.to_vec(),
        };
        match self.apply(scope, key, op, max_keys).await?.outcome {
            KvOutcome::Swapped(swapped) => Ok(swapped),
            other => Err(unexpected(other)),
        }
    }

    /// Removes `key` (primary only); whether it existed.
    pub async fn delete(&self, scope: &KvScope, key: &str) -> Result<bool, RegistryError> {
        match self.apply(scope, key, KvOp::Delete, None).await?.outcome {
            KvOutcome::Deleted(existed) => Ok(existed),
            other => Err(unexpected(other)),
        }
    }

    fn primary(&self) -> Result<&Primary, RegistryError> {
        self.write
            .as_ref()
            .ok_or_else(|| RegistryError::ReadOnlyReplica {
                primary: self
                    .replica
                    .as_ref()
                    .map_or_else(|| "the primary".into(), |r| r.primary().to_owned()),
            })
    }
}

/// The committer went away (only when the runtime shuts down).
fn stopped() -> RegistryError {
    RegistryError::Unavailable("the KV writer has stopped".into())
}

fn unexpected(outcome: KvOutcome) -> RegistryError {
    RegistryError::Corrupt(format!("unexpected KV outcome {outcome:?}"))
}

/// The committer: takes every write waiting (up to a batch's bounds) and commits them together,
/// until the store is dropped.
async fn commit_loop(
    conn: Arc<tokio::sync::Mutex<libsql::Connection>>,
    log: Arc<OnceLock<Arc<GenerationLog>>>,
    mut queue: mpsc::UnboundedReceiver<Pending>,
) {
    while let Some(first) = queue.recv().await {
        let mut bytes = first.op.value_len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match queue.try_recv() {
                Ok(next) => {
                    bytes += next.op.value_len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let conn = conn.lock().await;
        commit_batch(&conn, log.get(), batch).await;
    }
}

/// Commits `batch` in one transaction and answers each write; while the database is locked
/// (beyond SQLite's busy timeout), tries again until each write's deadline.
async fn commit_batch(
    conn: &libsql::Connection,
    log: Option<&Arc<GenerationLog>>,
    mut batch: Vec<Pending>,
) {
    let mut pause = BUSY_PAUSE;
    loop {
        let error = match try_commit(conn, &batch).await {
            Ok(outcomes) => {
                // Still holding the writer: no rollover between the commit and this read.
                let position = log.and_then(|log| match log.position() {
                    Ok(position) => Some(position),
                    Err(e) => {
                        tracing::warn!("KV: cannot read the replication position: {e}");
                        None
                    }
                });
                for (write, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = write
                        .reply
                        .send(outcome.map(|outcome| Applied { outcome, position }));
                }
                return;
            }
            Err(error) => error,
        };
        if !db::is_busy(&error) {
            let (code, message) = match &error {
                libsql::Error::SqliteFailure(code, message) => (*code, message.clone()),
                other => (1, other.to_string()),
            };
            tracing::error!("KV: a batch of {} writes failed: {error}", batch.len());
            for write in batch {
                let copy = libsql::Error::SqliteFailure(code, message.clone());
                let _ = write.reply.send(Err(RegistryError::Db(copy)));
            }
            return;
        }
        let retry_at = Instant::now() + pause;
        let (late, waiting): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|w| w.deadline <= retry_at);
        for write in late {
            let _ = write.reply.send(Err(RegistryError::Unavailable(format!(
                "the KV database stayed locked for {} s: {error}",
                WRITE_DEADLINE.as_secs()
            ))));
        }
        if waiting.is_empty() {
            return;
        }
        tracing::warn!(
            "KV: the database is locked ({error}); trying {} writes again",
            waiting.len()
        );
        batch = waiting;
        tokio::time::sleep_until(retry_at).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// One attempt at `batch`: each write's outcome (or refusal), or the error that failed the
/// whole transaction (nothing committed).
async fn try_commit(
    conn: &libsql::Connection,
    batch: &[Pending],
) -> Result<Vec<Result<KvOutcome, RegistryError>>, libsql::Error> {
    let tx = db::begin_write(conn).await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for write in batch {
        tx.execute("SAVEPOINT kv_write", ()).await?;
        match apply_in(&tx, write).await {
            Ok(outcome) => outcomes.push(Ok(outcome)),
            Err(RegistryError::Db(e)) if db::is_busy(&e) => return Err(e),
            Err(e) => {
                tx.execute("ROLLBACK TO kv_write", ()).await?;
                outcomes.push(Err(e));
            }
        }
        tx.execute("RELEASE kv_write", ()).await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// One write inside the batch's transaction.
async fn apply_in(tx: &libsql::Transaction, write: &Pending) -> Result<KvOutcome, RegistryError> {
    let (scope, key, max_keys) = (&write.scope, write.key.as_str(), write.max_keys);
    Ok(match &write.op {
        KvOp::Set(value) => {
            if let Some(max) = max_keys {
                check_room(tx, scope, key, max).await?;
            }
            upsert(tx, scope, key, value.clone()).await?;
            KvOutcome::Stored
        }
        KvOp::Delete => {
            let removed = tx
                .execute(
                    "DELETE FROM kv_entry
                     WHERE tenant_id = ?1 AND extension_name = ?2 AND bucket = ?3 AND key = ?4",
                    key_params(scope, key),
                )
                .await?;
            KvOutcome::Deleted(removed > 0)
        }
        KvOp::Increment(delta) => {
            let range = i128::from(i64::MIN)..=i128::from(u64::MAX);
            let current = match read_in(tx, scope, key).await? {
                Some(bytes) => std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|text| text.parse::<i128>().ok())
                    .filter(|value| range.contains(value))
                    .ok_or_else(|| {
                        KvError::NotACounter("the value is not a decimal integer".into())
                    })?,
                None => {
                    if let Some(max) = max_keys {
                        check_room(tx, scope, key, max).await?;
                    }
                    0
                }
            };
            let next = current
                .checked_add(*delta)
                .filter(|next| range.contains(next))
                .ok_or_else(|| {
                    KvError::NotACounter(format!(
                        "the result would leave {}..={}",
                        i64::MIN,
                        u64::MAX
                    ))
                })?;
            upsert(tx, scope, key, next.to_string().into_bytes()).await?;
            KvOutcome::Counter(next)
        }
        KvOp::Swap { expected, value } => {
            let current = read_in(tx, scope, key).await?;
            if current != *expected {
                return Ok(KvOutcome::Swapped(false));
            }
            if let (None, Some(max)) = (&current, max_keys) {
                check_room(tx, scope, key, max).await?;
            }
            upsert(tx, scope, key, value.clone()).await?;
            KvOutcome::Swapped(true)
        }
        KvOp::Put { value, if_revision } => {
            let current = read_entry_in(tx, scope, key).await?.map(|(_, r)| r);
            if let Some(wanted) = if_revision
                && current != Some(*wanted)
            {
                return Ok(KvOutcome::Revision(None));
            }
            if let (None, Some(max)) = (current, max_keys) {
                check_room(tx, scope, key, max).await?;
            }
            KvOutcome::Revision(Some(upsert(tx, scope, key, value.clone()).await?))
        }
    })
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

/// Creates the schema, or brings a database of an older schema up to date (primary only:
/// an edge's replica receives the primary's schema with its data).
async fn migrate(write: &libsql::Connection) -> Result<(), RegistryError> {
    write.execute_batch(SCHEMA).await?;
    let mut rows = write.query("PRAGMA table_info(kv_entry)", ()).await?;
    let mut has_revision = false;
    while let Some(row) = rows.next().await? {
        has_revision |= row.get::<String>(1)? == "revision";
    }
    drop(rows);
    if !has_revision {
        write.execute(ADD_REVISION, ()).await?;
    }
    write.execute(SEED_COUNTER, ()).await?;
    Ok(())
}

/// The value of `key` as `connection` (or a transaction on it) sees it.
async fn read_in(
    connection: &libsql::Connection,
    scope: &KvScope,
    key: &str,
) -> Result<Option<Vec<u8>>, RegistryError> {
    Ok(read_entry_in(connection, scope, key)
        .await?
        .map(|(value, _)| value))
}

/// The value and revision of `key` as `connection` (or a transaction on it) sees it.
async fn read_entry_in(
    connection: &libsql::Connection,
    scope: &KvScope,
    key: &str,
) -> Result<Option<(Vec<u8>, u64)>, RegistryError> {
    let mut rows = connection
        .query(
            "SELECT value, revision FROM kv_entry
             WHERE tenant_id = ?1 AND extension_name = ?2 AND bucket = ?3 AND key = ?4",
            key_params(scope, key),
        )
        .await?;
    Ok(match rows.next().await? {
        Some(row) => Some((row.get::<Vec<u8>>(0)?, revision_of(row.get(1)?))),
        None => None,
    })
}

/// A stored revision (never negative; a corrupt one reads as 0, which no write ever gives).
fn revision_of(stored: i64) -> u64 {
    u64::try_from(stored).unwrap_or(0)
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

/// Writes `key` with a new revision, taken from the database-wide counter inside `tx` (one
/// committer writes, so no two writes see the same counter value); returns it.
async fn upsert(
    tx: &libsql::Transaction,
    scope: &KvScope,
    key: &str,
    value: Vec<u8>,
) -> Result<u64, RegistryError> {
    let mut rows = tx
        .query(
            "UPDATE kv_revision SET last = last + 1 WHERE id = 0 RETURNING last",
            (),
        )
        .await?;
    let revision: i64 = rows
        .next()
        .await?
        .ok_or_else(|| RegistryError::Corrupt("the kv_revision counter row is missing".into()))?
        .get(0)?;
    drop(rows);
    tx.execute(
        "INSERT INTO kv_entry (tenant_id, extension_name, bucket, key, value, updated_at, revision)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (tenant_id, extension_name, bucket, key)
         DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at,
                       revision = excluded.revision",
        params![
            scope.tenant.clone(),
            scope.extension.clone(),
            scope.bucket.clone(),
            key.to_owned(),
            value,
            db::now(),
            revision
        ],
    )
    .await?;
    Ok(revision_of(revision))
}

fn check(scope: &KvScope, key: &str, value_len: usize) -> Result<(), KvError> {
    for (name, part) in [
        ("tenant", &scope.tenant),
        ("extension", &scope.extension),
        ("bucket", &scope.bucket),
    ] {
        if part.is_empty() || part.len() > 128 || part.contains('\0') {
            return Err(KvError::BadScope(name));
        }
    }
    // SQLite stores text with a NUL, but it reads back cut at the NUL: a listed key would
    // not be the key written (found by fuzzing, fuzz/regressions/kv).
    if key.is_empty() || key.len() > MAX_KEY_BYTES || key.contains('\0') {
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

    /// Writes arriving together share commits, yet each gets its own outcome: a refused write
    /// (key limit, not a counter) or a lost race (compare-and-swap, conditional put) touches
    /// nothing else in its batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_committed_together_each_with_its_own_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let kv = std::sync::Arc::new(store(&dir).await);
        let s = scope();
        kv.put(&s, "text", b"hello", None).await.unwrap();
        let base = kv
            .put_revised(&s, "doc", b"v0", None, None)
            .await
            .unwrap()
            .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..50 {
            let (kv, s) = (kv.clone(), s.clone());
            tasks.spawn(async move {
                let counted = kv.increment(&s, "n", 1, None).await.unwrap();
                let key = format!("k{i}");
                // Within the limit: text, doc, n, flag and these 50.
                kv.put(&s, &key, key.as_bytes(), Some(54)).await.unwrap();
                let swapped = kv
                    .compare_and_swap(&s, "flag", None, format!("{i}").as_bytes(), None)
                    .await
                    .unwrap();
                let revised = kv
                    .put_revised(&s, "doc", format!("v{i}").as_bytes(), Some(base), None)
                    .await
                    .unwrap();
                let refused = kv.increment(&s, "text", 1, None).await.is_err();
                (counted, swapped, revised, refused)
            });
        }
        let mut results = Vec::new();
        while let Some(result) = tasks.join_next().await {
            results.push(result.unwrap());
        }
        let mut counts: Vec<i128> = results.iter().map(|r| r.0).collect();
        counts.sort_unstable();
        assert_eq!(counts, (1..=50).collect::<Vec<i128>>());
        assert_eq!(results.iter().filter(|r| r.1).count(), 1, "one swap wins");
        let revised: Vec<u64> = results.iter().filter_map(|r| r.2).collect();
        assert_eq!(revised.len(), 1, "one conditional put wins");
        assert!(results.iter().all(|r| r.3), "text is never a counter");
        assert_eq!(kv.get(&s, "text").await.unwrap().unwrap(), b"hello");
        assert_eq!(kv.get(&s, "n").await.unwrap().unwrap(), b"50");
        assert_eq!(
            kv.get_entry(&s, "doc").await.unwrap().unwrap().1,
            revised[0]
        );
        // The limit counts what the batches committed: one more new key is refused.
        assert_eq!(kv.keys(&s, 1000).await.unwrap().len(), 54);
        assert!(kv.put(&s, "one-too-many", b"x", Some(54)).await.is_err());
    }

    #[tokio::test]
    async fn keys_and_scopes_with_nul_are_refused() {
        // Found by fuzzing (fuzz/regressions/kv): a key with a NUL was stored, then listed
        // cut at the NUL ("a\0b" as "a"), a name no read or delete could reach.
        let dir = tempfile::tempdir().unwrap();
        let kv = store(&dir).await;
        assert!(matches!(
            kv.put(&scope(), "a\0b", b"v", None).await,
            Err(RegistryError::Kv(KvError::BadKey))
        ));
        let bucket = KvScope {
            bucket: "b\0".into(),
            ..scope()
        };
        assert!(matches!(
            kv.put(&bucket, "k", b"v", None).await,
            Err(RegistryError::Kv(KvError::BadScope("bucket")))
        ));
        kv.put(&scope(), "a", b"v", None).await.unwrap();
        assert_eq!(kv.keys(&scope(), 10).await.unwrap(), ["a"]);
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

    #[tokio::test]
    async fn every_write_gets_a_new_higher_revision() {
        let dir = tempfile::tempdir().unwrap();
        let kv = store(&dir).await;
        let s = scope();
        let r1 = kv
            .put_revised(&s, "k", b"1", None, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            kv.get_entry(&s, "k").await.unwrap(),
            Some((b"1".to_vec(), r1))
        );
        kv.put(&s, "k", b"2", None).await.unwrap();
        let (_, r2) = kv.get_entry(&s, "k").await.unwrap().unwrap();
        assert!(r2 > r1, "put bumps: {r1} then {r2}");
        kv.increment(&s, "n", 1, None).await.unwrap();
        let (_, r3) = kv.get_entry(&s, "n").await.unwrap().unwrap();
        assert!(r3 > r2, "increment bumps: {r2} then {r3}");
        assert!(
            kv.compare_and_swap(&s, "k", Some(b"2"), b"3", None)
                .await
                .unwrap()
        );
        let (_, r4) = kv.get_entry(&s, "k").await.unwrap().unwrap();
        assert!(r4 > r3, "compare-and-swap bumps: {r3} then {r4}");
        // A refused swap changes nothing, revision included.
        assert!(
            !kv.compare_and_swap(&s, "k", Some(b"x"), b"y", None)
                .await
                .unwrap()
        );
        assert_eq!(
            kv.get_entry(&s, "k").await.unwrap(),
            Some((b"3".to_vec(), r4))
        );
        let r5 = kv
            .put_revised(&s, "k", b"4", Some(r4), None)
            .await
            .unwrap()
            .unwrap();
        assert!(r5 > r4);
        assert_eq!(kv.get_entry(&s, "absent").await.unwrap(), None);
    }

    #[tokio::test]
    async fn conditional_puts_conflict_on_stale_or_absent_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let kv = store(&dir).await;
        let s = scope();
        let first = kv
            .put_revised(&s, "k", b"a", None, None)
            .await
            .unwrap()
            .unwrap();
        let second = kv
            .put_revised(&s, "k", b"b", Some(first), None)
            .await
            .unwrap()
            .unwrap();
        // The revision the caller read is stale now: conflict, nothing written.
        assert_eq!(
            kv.put_revised(&s, "k", b"c", Some(first), None)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            kv.get_entry(&s, "k").await.unwrap(),
            Some((b"b".to_vec(), second))
        );
        // A revision on a key that does not exist is a conflict too.
        assert_eq!(
            kv.put_revised(&s, "new", b"x", Some(second), None)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            kv.put_revised(&s, "new", b"x", Some(0), None)
                .await
                .unwrap(),
            None
        );
        assert_eq!(kv.get(&s, "new").await.unwrap(), None);
        // The key limit holds for keys an unconditional put would create.
        assert!(
            kv.put_revised(&s, "other", b"x", None, Some(1))
                .await
                .is_err()
        );
        // Validation still applies.
        assert!(kv.put_revised(&s, "", b"x", None, None).await.is_err());
    }

    #[tokio::test]
    async fn a_deleted_and_recreated_key_never_gets_a_stale_revision() {
        let dir = tempfile::tempdir().unwrap();
        let kv = store(&dir).await;
        let s = scope();
        let old = kv
            .put_revised(&s, "k", b"a", None, None)
            .await
            .unwrap()
            .unwrap();
        assert!(kv.delete(&s, "k").await.unwrap());
        assert_eq!(
            kv.put_revised(&s, "k", b"b", Some(old), None)
                .await
                .unwrap(),
            None
        );
        let recreated = kv
            .put_revised(&s, "k", b"b", None, None)
            .await
            .unwrap()
            .unwrap();
        assert_ne!(recreated, old);
        assert!(recreated > old);
        // Nor after reopening the database (the counter is stored, not in memory).
        drop(kv);
        let kv = store(&dir).await;
        assert!(kv.delete(&s, "k").await.unwrap());
        let again = kv
            .put_revised(&s, "k", b"c", None, None)
            .await
            .unwrap()
            .unwrap();
        assert!(again > recreated, "{again} after {recreated}");
        // Revisions are database-wide: another scope's write never repeats one either.
        let other = KvScope {
            tenant: "t2".into(),
            ..scope()
        };
        let elsewhere = kv
            .put_revised(&other, "k", b"z", None, None)
            .await
            .unwrap()
            .unwrap();
        assert!(elsewhere > again);
    }

    #[tokio::test]
    async fn entries_page_by_key_within_their_scope() {
        let dir = tempfile::tempdir().unwrap();
        let kv = store(&dir).await;
        let s = scope();
        let mut revisions = Vec::new();
        for key in ["e", "a", "d", "b", "c"] {
            let value = key.repeat(2).into_bytes();
            revisions.push((
                key,
                kv.put_revised(&s, key, &value, None, None).await.unwrap(),
            ));
        }
        let other_bucket = KvScope {
            bucket: "other".into(),
            ..scope()
        };
        kv.put(&other_bucket, "aa", b"x", None).await.unwrap();

        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = kv.list_entries(&s, after.as_deref(), 2).await.unwrap();
            if page.is_empty() {
                break;
            }
            pages += 1;
            assert!(page.len() <= 2);
            after = page.last().map(|(key, _, _)| key.clone());
            seen.extend(page);
        }
        assert_eq!(pages, 3);
        let keys: Vec<&str> = seen.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c", "d", "e"]);
        for (key, value, revision) in &seen {
            assert_eq!(value, &key.repeat(2).into_bytes());
            let written = revisions.iter().find(|(k, _)| k == key).unwrap().1;
            assert_eq!(Some(*revision), written);
        }
        assert_eq!(
            kv.list_entries(&s, Some("e"), 10).await.unwrap(),
            Vec::<KvEntry>::new()
        );
        assert_eq!(kv.list_entries(&s, None, 0).await.unwrap().len(), 0);
        assert_eq!(
            kv.list_entries(&other_bucket, None, 10)
                .await
                .unwrap()
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn a_database_of_the_old_schema_is_migrated_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        {
            // The schema before revisions, with a row written by the old code.
            let db = libsql::Builder::new_local(&path).build().await.unwrap();
            let conn = db.connect().unwrap();
            conn.execute_batch(
                "CREATE TABLE kv_entry (
                    tenant_id      TEXT NOT NULL,
                    extension_name TEXT NOT NULL,
                    bucket         TEXT NOT NULL,
                    key            TEXT NOT NULL,
                    value          BLOB NOT NULL,
                    updated_at     INTEGER NOT NULL,
                    PRIMARY KEY (tenant_id, extension_name, bucket, key)
                ) WITHOUT ROWID;
                INSERT INTO kv_entry VALUES ('t', 'e', 'b', 'old', x'6869', 1);",
            )
            .await
            .unwrap();
        }
        let kv = KvStore::open(&path).await.unwrap();
        let s = scope();
        assert_eq!(
            kv.get_entry(&s, "old").await.unwrap(),
            Some((b"hi".to_vec(), 0))
        );
        // The old row's revision is usable, and its next write gets a real one.
        let next = kv
            .put_revised(&s, "old", b"ho", Some(0), None)
            .await
            .unwrap()
            .unwrap();
        assert!(next > 0);
        assert_eq!(
            kv.put_revised(&s, "old", b"hu", Some(0), None)
                .await
                .unwrap(),
            None
        );
        // Opening again is a no-op: the column is there and the counter keeps its value.
        drop(kv);
        let kv = KvStore::open(&path).await.unwrap();
        let later = kv
            .put_revised(&s, "new", b"x", None, None)
            .await
            .unwrap()
            .unwrap();
        assert!(later > next);
        assert_eq!(kv.list_entries(&s, None, 10).await.unwrap().len(), 2);
    }
}
