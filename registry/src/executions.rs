//! The execution log (one row per request that reached an install) and per-tenant quota usage
//! per time window. The host writes both in batches off the request path.

use std::collections::BTreeMap;

use libsql::params;

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

impl Registry {
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
        let writer = self.log_writer().await?;
        let tx = crate::db::begin_write(&writer).await?;
        // Multi-row inserts: one statement to parse per chunk instead of per row.
        for chunk in records.chunks(ROWS_PER_INSERT) {
            let placeholders = (0..chunk.len())
                .map(|i| {
                    let p = i * COLUMNS;
                    let marks: Vec<String> = (1..=COLUMNS).map(|c| format!("?{}", p + c)).collect();
                    format!("({})", marks.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", ");
            let mut values = Vec::with_capacity(chunk.len() * COLUMNS);
            for r in chunk {
                values.extend([
                    libsql::Value::Text(r.tenant.clone()),
                    libsql::Value::Text(r.extension.clone()),
                    libsql::Value::Text(r.version.clone()),
                    libsql::Value::Text(r.content_hash.clone()),
                    libsql::Value::Text(r.request_id.clone()),
                    libsql::Value::Integer(i64::from(r.status)),
                    libsql::Value::Integer(i64::try_from(r.duration_ms).unwrap_or(i64::MAX)),
                    r.error_class
                        .clone()
                        .map_or(libsql::Value::Null, libsql::Value::Text),
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
                    r.trigger
                        .clone()
                        .map_or(libsql::Value::Null, libsql::Value::Text),
                    r.trace_id
                        .clone()
                        .map_or(libsql::Value::Null, libsql::Value::Text),
                ]);
            }
            tx.execute(
                &format!(
                    "INSERT INTO extension_execution_log
                       (tenant_id, extension_name, version, content_hash, request_id, status, duration_ms, error_class, created_at, logs, egress_bytes, trigger, trace_id)
                     VALUES {placeholders}"
                ),
                values,
            )
            .await?;
        }
        for ((tenant, extension, window), (requests, ms, egress)) in usage {
            tx.execute(
                "INSERT INTO extension_quota_usage (tenant_id, extension_name, window_start, requests, cpu_ms, egress_bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant_id, extension_name, window_start)
                 DO UPDATE SET requests = requests + excluded.requests, cpu_ms = cpu_ms + excluded.cpu_ms,
                               egress_bytes = egress_bytes + excluded.egress_bytes",
                params![tenant.to_owned(), extension.to_owned(), window, requests, ms, egress],
            )
            .await?;
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
        let mut rows = self
            .read
            .query(
                "SELECT id, tenant_id, extension_name, version, content_hash, request_id, status,
                        duration_ms, error_class, created_at, logs, egress_bytes, trigger, trace_id
                 FROM extension_execution_log
                 WHERE tenant_id = ?1 AND (?2 IS NULL OR extension_name = ?2)
                 ORDER BY id DESC LIMIT ?3",
                params![
                    tenant.to_owned(),
                    extension.map_or(libsql::Value::Null, |e| libsql::Value::Text(e.to_owned())),
                    i64::from(limit)
                ],
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
        let writer = self.log_writer().await?;
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
}
