//! The execution log (one row per request that reached an install) and per-tenant quota usage
//! per time window, in a node-local database of their own ([`ExecutionStore`]). The host
//! writes both in batches off the request path.
//!
//! Why not the registry database: the registry is replicated, and a primary's replication
//! writes the whole database file as each generation's base image (every
//! `--replication-max-wal-frames` frames). With the log inside it, a busy node started a
//! generation every few seconds, each copying every row logged so far, and edges fetched
//! rows they never read. The log is per node (each edge keeps its own), so it needs no
//! replication; being apart, it also commits without fsync (`synchronous=NORMAL`: a power
//! loss may lose the last commits, a process crash loses nothing) and checkpoints its WAL on
//! its own.

use std::collections::BTreeMap;
use std::path::Path;

use libsql::{Connection, Transaction, params};

use crate::{Registry, RegistryError};

/// Rows per multi-row INSERT (12 parameters each, far below SQLite's parameter limit).
const ROWS_PER_INSERT: usize = 200;

/// Length of a quota-usage window, in seconds.
pub const USAGE_WINDOW_SECS: i64 = 3600;

/// One request as the execution log records it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExecutionRecord {
    /// Tenant.
    pub tenant: String,
    /// Extension name.
    pub extension: String,
    /// Version that ran (or would have run).
    pub version: String,
    /// Its bundle's content hash.
    pub content_hash: String,
    /// The request id the caller saw.
    pub request_id: String,
    /// HTTP status answered.
    pub status: u16,
    /// Wall time from admission to the last response byte, in milliseconds.
    pub duration_ms: u64,
    /// The error class (the `error` field of the JSON error body), when the request failed.
    pub error_class: Option<String>,
    /// Unix seconds when the request started.
    pub at: i64,
    /// What the guest logged through `wasi:logging` (one line per call, bounded by the host).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
    /// Outbound HTTP bytes (sent + received) of the request.
    #[serde(default)]
    pub egress_bytes: u64,
    /// What started the request when it was not a caller: `schedule` for a scheduled run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// The OpenTelemetry trace id of the request (32 hex digits), when traces are on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// A logged row with its id.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LoggedExecution {
    /// Row id, increasing.
    pub id: i64,
    /// The record.
    #[serde(flatten)]
    pub record: ExecutionRecord,
}

/// A tenant's usage of one extension in one window.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Usage {
    /// Extension name.
    pub extension: String,
    /// Unix seconds the window starts at (a multiple of [`USAGE_WINDOW_SECS`]).
    pub window_start: i64,
    /// Requests in the window.
    pub requests: i64,
    /// Wall-clock milliseconds spent serving them (the CPU-time proxy the quota uses).
    pub cpu_ms: i64,
    /// Outbound HTTP bytes.
    pub egress_bytes: i64,
}

/// Values bound per execution-log row.
const COLUMNS: usize = 13;

/// The execution log's columns, in the order [`bind_row`] binds them.
const ROW_COLUMNS: &str = "tenant_id, extension_name, version, content_hash, request_id, status, \
     duration_ms, error_class, created_at, logs, egress_bytes, trigger, trace_id";

/// Rows moved per transaction when a log is adopted from an older layout.
const ADOPT_CHUNK: i64 = 2048;

/// The store's schema migrations, in order; never edit one that has shipped, add a new one.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE extension_execution_log (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after pruning
    tenant_id      TEXT NOT NULL,
    extension_name TEXT NOT NULL,
    version        TEXT NOT NULL,
    content_hash   TEXT NOT NULL,
    request_id     TEXT NOT NULL,
    status         INTEGER NOT NULL,
    duration_ms    INTEGER NOT NULL,
    error_class    TEXT,
    created_at     INTEGER NOT NULL,
    logs           TEXT,              -- JSON array of the guest's log lines
    egress_bytes   INTEGER NOT NULL DEFAULT 0,
    trigger        TEXT,              -- NULL for a caller's request, 'schedule' for a scheduled run
    trace_id       TEXT               -- 32 hex digits, when traces are on
);
-- A tenant's newest rows first, without sorting.
CREATE INDEX extension_execution_log_by_tenant ON extension_execution_log (tenant_id, id);
-- Pruning by age.
CREATE INDEX extension_execution_log_by_time ON extension_execution_log (created_at);
CREATE TABLE extension_quota_usage (
    tenant_id      TEXT NOT NULL,
    extension_name TEXT NOT NULL,
    window_start   INTEGER NOT NULL,
    requests       INTEGER NOT NULL DEFAULT 0,
    cpu_ms         INTEGER NOT NULL DEFAULT 0,
    egress_bytes   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, extension_name, window_start)
);
-- How far the log of an older layout's database (`source`) was moved here: the last old id
-- copied. Old ids are never reused, so rows at or below it are copies already.
CREATE TABLE adopted_log (
    source     TEXT PRIMARY KEY,
    through_id INTEGER NOT NULL
);
-- Usage windows being adopted from an older layout's database (see ExecutionStore::adopt):
-- a window listed here was already added, so a crash before its source row is deleted
-- does not add it twice. Empty between adoptions.
CREATE TABLE adopted_quota_usage (
    tenant_id      TEXT NOT NULL,
    extension_name TEXT NOT NULL,
    window_start   INTEGER NOT NULL,
    requests       INTEGER NOT NULL,
    cpu_ms         INTEGER NOT NULL,
    egress_bytes   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, extension_name, window_start)
);
"#];

/// The node-local database of the execution log and the quota-usage windows.
///
/// Reads use their own connection; writes (batches, pruning, adoption) take the writer.
pub struct ExecutionStore {
    /// Kept open for the connections' lifetime.
    _db: libsql::Database,
    read: Connection,
    write: tokio::sync::Mutex<Connection>,
}

impl ExecutionStore {
    /// Opens (creating and migrating if needed) the store at `path`.
    pub async fn open(path: &Path) -> Result<Self, RegistryError> {
        let (db, write) = crate::db::open_plain(path).await?;
        crate::db::migrate(&write, MIGRATIONS).await?;
        // Unlike the registry, nothing replicates this file's WAL frames, so SQLite may
        // checkpoint on its own (back to its default), and a commit need not wait for fsync.
        crate::db::pragma(&write, "PRAGMA wal_autocheckpoint=1000").await?;
        crate::db::pragma(&write, "PRAGMA synchronous=NORMAL").await?;
        let read = crate::db::connect(&db).await?;
        Ok(Self {
            _db: db,
            read,
            write: tokio::sync::Mutex::new(write),
        })
    }

    /// Appends `records` to the execution log and adds them to the usage windows, in one
    /// transaction (all or nothing).
    pub async fn record_executions(
        &self,
        records: &[ExecutionRecord],
    ) -> Result<(), RegistryError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut usage: BTreeMap<(&str, &str, i64), (i64, i64, i64)> = BTreeMap::new();
        for r in records {
            let window = r.at - r.at.rem_euclid(USAGE_WINDOW_SECS);
            let entry = usage.entry((&r.tenant, &r.extension, window)).or_default();
            entry.0 += 1;
            entry.1 += i64::try_from(r.duration_ms).unwrap_or(i64::MAX);
            entry.2 += i64::try_from(r.egress_bytes).unwrap_or(i64::MAX);
        }
        let writer = self.write.lock().await;
        let tx = crate::db::begin_write(&writer).await?;
        insert_rows(&tx, records.iter()).await?;
        for ((tenant, extension, window), (requests, ms, egress)) in usage {
            add_usage(&tx, tenant, extension, window, (requests, ms, egress)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The newest `limit` execution-log rows of `tenant` (optionally of one extension), newest
    /// first.
    pub async fn executions(
        &self,
        tenant: &str,
        extension: Option<&str>,
        limit: u32,
    ) -> Result<Vec<LoggedExecution>, RegistryError> {
        select_rows(
            &self.read,
            "WHERE tenant_id = ?1 AND (?2 IS NULL OR extension_name = ?2) ORDER BY id DESC LIMIT ?3",
            vec![
                libsql::Value::Text(tenant.to_owned()),
                extension.map_or(libsql::Value::Null, |e| libsql::Value::Text(e.to_owned())),
                libsql::Value::Integer(i64::from(limit)),
            ],
        )
        .await
    }

    /// `tenant`'s usage windows since `since` (Unix seconds), oldest first.
    pub async fn usage(&self, tenant: &str, since: i64) -> Result<Vec<Usage>, RegistryError> {
        let mut rows = self
            .read
            .query(
                "SELECT extension_name, window_start, requests, cpu_ms, egress_bytes
                 FROM extension_quota_usage WHERE tenant_id = ?1 AND window_start >= ?2
                 ORDER BY window_start, extension_name",
                params![tenant.to_owned(), since],
            )
            .await?;
        let mut found = Vec::new();
        while let Some(row) = rows.next().await? {
            found.push(Usage {
                extension: row.get(0)?,
                window_start: row.get(1)?,
                requests: row.get(2)?,
                cpu_ms: row.get(3)?,
                egress_bytes: row.get(4)?,
            });
        }
        Ok(found)
    }

    /// Deletes execution-log rows and usage windows older than `before` (Unix seconds);
    /// returns how many log rows went.
    pub async fn prune_executions(&self, before: i64) -> Result<u64, RegistryError> {
        let writer = self.write.lock().await;
        let removed = writer
            .execute(
                "DELETE FROM extension_execution_log WHERE created_at < ?1",
                params![before],
            )
            .await?;
        writer
            .execute(
                "DELETE FROM extension_quota_usage WHERE window_start + ?2 <= ?1",
                params![before, USAGE_WINDOW_SECS],
            )
            .await?;
        Ok(removed)
    }

    /// Moves the execution log and usage windows an older alga-edge kept in `legacy` (the
    /// registry database, or an edge's `local.db`; `source` names it) into this store, and
    /// deletes them there; returns how many log rows moved. Moved rows take new ids, in their
    /// old order. Safe to run again after a crash at any point: the store records, with each
    /// chunk it adds, the last old id it holds (old ids are never reused), and usage windows
    /// are journaled until their old rows are gone. Cheap when there is nothing to move.
    pub async fn adopt(&self, legacy: &Registry, source: &str) -> Result<u64, RegistryError> {
        let writer = self.write.lock().await;
        let mut through: i64 = {
            let mut rows = writer
                .query(
                    "SELECT through_id FROM adopted_log WHERE source = ?1",
                    params![source.to_owned()],
                )
                .await?;
            match rows.next().await? {
                Some(row) => row.get(0)?,
                None => 0,
            }
        };
        let mut moved = 0;
        loop {
            // Rows up to `through` are here already (a crash came before their deletion).
            if through > 0 {
                legacy
                    .log_writer()
                    .await?
                    .execute(
                        "DELETE FROM extension_execution_log WHERE id <= ?1",
                        params![through],
                    )
                    .await?;
            }
            let rows = select_rows(
                &legacy.read,
                "WHERE id > ?1 ORDER BY id LIMIT ?2",
                vec![
                    libsql::Value::Integer(through),
                    libsql::Value::Integer(ADOPT_CHUNK),
                ],
            )
            .await?;
            let Some(last) = rows.last().map(|r| r.id) else {
                break;
            };
            let tx = crate::db::begin_write(&writer).await?;
            insert_rows(&tx, rows.iter().map(|r| &r.record)).await?;
            tx.execute(
                "INSERT INTO adopted_log (source, through_id) VALUES (?1, ?2)
                 ON CONFLICT (source) DO UPDATE SET through_id = excluded.through_id",
                params![source.to_owned(), last],
            )
            .await?;
            tx.commit().await?;
            through = last;
            moved += rows.len() as u64;
        }

        let mut source = legacy
            .read
            .query(
                "SELECT tenant_id, extension_name, window_start, requests, cpu_ms, egress_bytes
                 FROM extension_quota_usage",
                (),
            )
            .await?;
        let mut windows = Vec::new();
        while let Some(row) = source.next().await? {
            let key: (String, String, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
            let counts: (i64, i64, i64) = (row.get(3)?, row.get(4)?, row.get(5)?);
            windows.push((key, counts));
        }
        if !windows.is_empty() {
            let tx = crate::db::begin_write(&writer).await?;
            for ((tenant, extension, window), counts) in &windows {
                let mut journaled = tx
                    .query(
                        "SELECT requests, cpu_ms, egress_bytes FROM adopted_quota_usage
                         WHERE tenant_id = ?1 AND extension_name = ?2 AND window_start = ?3",
                        params![tenant.clone(), extension.clone(), *window],
                    )
                    .await?;
                let already = match journaled.next().await? {
                    Some(row) => Some((row.get::<i64>(0)?, row.get::<i64>(1)?, row.get::<i64>(2)?)),
                    None => None,
                };
                drop(journaled);
                if already == Some(*counts) {
                    continue;
                }
                add_usage(&tx, tenant, extension, *window, *counts).await?;
                tx.execute(
                    "INSERT OR REPLACE INTO adopted_quota_usage
                       (tenant_id, extension_name, window_start, requests, cpu_ms, egress_bytes)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        tenant.clone(),
                        extension.clone(),
                        *window,
                        counts.0,
                        counts.1,
                        counts.2
                    ],
                )
                .await?;
            }
            tx.commit().await?;
            legacy
                .log_writer()
                .await?
                .execute("DELETE FROM extension_quota_usage", ())
                .await?;
        }
        writer
            .execute("DELETE FROM adopted_quota_usage", ())
            .await?;
        Ok(moved)
    }
}

/// Inserts `rows` in multi-row INSERTs of up to [`ROWS_PER_INSERT`] rows each. The full-size
/// statement is prepared once per call and reused for every full chunk: parsing a 200-row
/// INSERT cost about as much as running it.
async fn insert_rows<'a>(
    tx: &Transaction,
    rows: impl Iterator<Item = &'a ExecutionRecord>,
) -> Result<(), RegistryError> {
    let rows: Vec<&ExecutionRecord> = rows.collect();
    let mut full: Option<libsql::Statement> = None;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut values = Vec::with_capacity(chunk.len() * COLUMNS);
        for row in chunk {
            bind_row(&mut values, row)?;
        }
        if chunk.len() < ROWS_PER_INSERT {
            tx.execute(&insert_sql(chunk.len()), values).await?;
            continue;
        }
        let statement = match &full {
            Some(statement) => {
                statement.reset();
                statement
            }
            None => full.insert(tx.prepare(&insert_sql(ROWS_PER_INSERT)).await?),
        };
        statement.execute(values).await?;
    }
    Ok(())
}

/// The INSERT of `rows` execution-log rows (anonymous parameters, bound in order).
fn insert_sql(rows: usize) -> String {
    let tuple = format!("({})", vec!["?"; COLUMNS].join(", "));
    format!(
        "INSERT INTO extension_execution_log ({ROW_COLUMNS}) VALUES {}",
        vec![tuple.as_str(); rows].join(", ")
    )
}

/// Appends `r`'s values in [`ROW_COLUMNS`] order.
fn bind_row(values: &mut Vec<libsql::Value>, r: &ExecutionRecord) -> Result<(), RegistryError> {
    let text = |v: &Option<String>| v.clone().map_or(libsql::Value::Null, libsql::Value::Text);
    values.extend([
        libsql::Value::Text(r.tenant.clone()),
        libsql::Value::Text(r.extension.clone()),
        libsql::Value::Text(r.version.clone()),
        libsql::Value::Text(r.content_hash.clone()),
        libsql::Value::Text(r.request_id.clone()),
        libsql::Value::Integer(i64::from(r.status)),
        libsql::Value::Integer(i64::try_from(r.duration_ms).unwrap_or(i64::MAX)),
        text(&r.error_class),
        libsql::Value::Integer(r.at),
        if r.logs.is_empty() {
            libsql::Value::Null
        } else {
            libsql::Value::Text(
                serde_json::to_string(&r.logs)
                    .map_err(|e| RegistryError::Corrupt(e.to_string()))?,
            )
        },
        libsql::Value::Integer(i64::try_from(r.egress_bytes).unwrap_or(i64::MAX)),
        text(&r.trigger),
        text(&r.trace_id),
    ]);
    Ok(())
}

/// Adds `(requests, cpu_ms, egress_bytes)` to one usage window.
async fn add_usage(
    tx: &Transaction,
    tenant: &str,
    extension: &str,
    window: i64,
    (requests, ms, egress): (i64, i64, i64),
) -> Result<(), RegistryError> {
    tx.execute(
        "INSERT INTO extension_quota_usage (tenant_id, extension_name, window_start, requests, cpu_ms, egress_bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (tenant_id, extension_name, window_start)
         DO UPDATE SET requests = requests + excluded.requests, cpu_ms = cpu_ms + excluded.cpu_ms,
                       egress_bytes = egress_bytes + excluded.egress_bytes",
        params![tenant.to_owned(), extension.to_owned(), window, requests, ms, egress],
    )
    .await?;
    Ok(())
}

/// Execution-log rows of `conn` matching `tail` (a WHERE/ORDER/LIMIT clause over `params`).
/// The registry's old table and this store's have the same columns.
async fn select_rows(
    conn: &Connection,
    tail: &str,
    params: Vec<libsql::Value>,
) -> Result<Vec<LoggedExecution>, RegistryError> {
    let mut rows = conn
        .query(
            &format!("SELECT id, {ROW_COLUMNS} FROM extension_execution_log {tail}"),
            params,
        )
        .await?;
    let mut found = Vec::new();
    while let Some(row) = rows.next().await? {
        let status: i64 = row.get(6)?;
        let duration: i64 = row.get(7)?;
        found.push(LoggedExecution {
            id: row.get(0)?,
            record: ExecutionRecord {
                tenant: row.get(1)?,
                extension: row.get(2)?,
                version: row.get(3)?,
                content_hash: row.get(4)?,
                request_id: row.get(5)?,
                status: u16::try_from(status)
                    .map_err(|_| RegistryError::Corrupt(format!("status {status}")))?,
                duration_ms: u64::try_from(duration).unwrap_or(0),
                error_class: row.get(8)?,
                at: row.get(9)?,
                logs: match row.get::<Option<String>>(10)? {
                    Some(text) => serde_json::from_str(&text)
                        .map_err(|e| RegistryError::Corrupt(format!("execution logs: {e}")))?,
                    None => Vec::new(),
                },
                egress_bytes: u64::try_from(row.get::<i64>(11)?).unwrap_or(0),
                trigger: row.get(12)?,
                trace_id: row.get(13)?,
            },
        });
    }
    Ok(found)
}
