//! The registry database (libsql): opening, WAL mode, and schema migrations.
//!
//! Migrations are numbered; `PRAGMA user_version` records the last one applied, and each runs
//! in its own transaction so a crash never leaves a half-migrated schema.
//!
//! Locking: every database has one writer connection per process (behind a mutex), but other
//! connections take SQLite's write lock too (replication's WAL reader counts frames under it,
//! checkpoints). Write transactions therefore begin `IMMEDIATE` ([`begin_write`]): a deferred
//! transaction that reads first and then writes cannot wait for the lock (SQLite answers
//! `database is locked` at once instead of calling the busy handler), an immediate one waits
//! up to [`BUSY_TIMEOUT`].

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libsql::{Builder, Connection, Database, Transaction, TransactionBehavior};

use crate::RegistryError;

/// Schema migrations, in order; never edit one that has shipped, add a new one.
///
/// `extension_execution_log` and `extension_quota_usage` are no longer written here: they moved
/// to the node-local [`crate::ExecutionStore`], which adopts (and deletes) what older builds left.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE extension_registry (
    name        TEXT PRIMARY KEY,      -- reverse-domain manifest name, the route's extensionId
    publisher   TEXT NOT NULL,         -- first publisher owns the name
    created_at  INTEGER NOT NULL
);
CREATE TABLE extension_bundle (
    content_hash TEXT PRIMARY KEY,     -- sha256:<hex> of the archive
    size_bytes   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE TABLE extension_version (
    id                 TEXT PRIMARY KEY,
    extension_name     TEXT NOT NULL REFERENCES extension_registry(name),
    version            TEXT NOT NULL,
    content_hash       TEXT NOT NULL REFERENCES extension_bundle(content_hash),
    manifest_json      TEXT NOT NULL,  -- normalised manifest
    signature          TEXT NOT NULL,  -- compact JWS
    signer_fingerprint TEXT NOT NULL,
    deprecated         INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL,
    UNIQUE (extension_name, version)
);
CREATE TABLE tenant_extension_install (
    id                   TEXT PRIMARY KEY,
    tenant_id            TEXT NOT NULL,
    extension_name       TEXT NOT NULL REFERENCES extension_registry(name),
    version_id           TEXT NOT NULL REFERENCES extension_version(id),
    granted_capabilities TEXT NOT NULL,  -- JSON array of cap:* names
    config               TEXT NOT NULL,  -- JSON object of strings
    sealed_secrets       BLOB,           -- AEAD envelope, never plaintext
    enabled              INTEGER NOT NULL DEFAULT 1,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    UNIQUE (tenant_id, extension_name)
);
CREATE TABLE extension_execution_log (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id      TEXT NOT NULL,
    extension_name TEXT NOT NULL,
    version        TEXT NOT NULL,
    content_hash   TEXT NOT NULL,
    request_id     TEXT NOT NULL,
    status         INTEGER NOT NULL,
    duration_ms    INTEGER NOT NULL,
    error_class    TEXT,
    created_at     INTEGER NOT NULL
);
CREATE INDEX extension_execution_log_by_tenant ON extension_execution_log (tenant_id, created_at);
CREATE TABLE extension_quota_usage (
    tenant_id      TEXT NOT NULL,
    extension_name TEXT NOT NULL,
    window_start   INTEGER NOT NULL,
    requests       INTEGER NOT NULL DEFAULT 0,
    cpu_ms         INTEGER NOT NULL DEFAULT 0,
    egress_bytes   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, extension_name, window_start)
);
"#,
    r#"
-- Per-install overrides of the node's gateway policies (JSON object, see InstallPolicy).
ALTER TABLE tenant_extension_install ADD COLUMN policy TEXT NOT NULL DEFAULT '{}';
CREATE INDEX extension_execution_log_by_time ON extension_execution_log (created_at);
"#,
    r#"
-- What the guest logged (JSON array of lines) and its outbound HTTP bytes, per request.
ALTER TABLE extension_execution_log ADD COLUMN logs TEXT;
ALTER TABLE extension_execution_log ADD COLUMN egress_bytes INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- An extension name belongs to the key that first published it (not to the manifest's free-text
-- publisher). Existing names go to the signer of their oldest version.
ALTER TABLE extension_registry ADD COLUMN owner_fingerprint TEXT;
UPDATE extension_registry SET owner_fingerprint = (
    SELECT v.signer_fingerprint FROM extension_version v
    WHERE v.extension_name = extension_registry.name
    ORDER BY v.created_at, v.rowid LIMIT 1);
-- Other keys the owner let publish versions of the name.
CREATE TABLE extension_publisher_key (
    extension_name TEXT NOT NULL REFERENCES extension_registry(name),
    fingerprint    TEXT NOT NULL,
    delegation     TEXT NOT NULL,      -- the owner-signed compact JWS
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (extension_name, fingerprint)
);
-- Every change of who may publish a name, kept.
CREATE TABLE extension_key_audit (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    extension_name TEXT NOT NULL,
    action         TEXT NOT NULL,      -- claim, delegate, revoke
    fingerprint    TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);
-- /ext-ui serves a version's UI once some tenant installed it, or when an admin marked it
-- previewable (to look at before installing).
ALTER TABLE extension_version ADD COLUMN previewable INTEGER NOT NULL DEFAULT 0;
CREATE INDEX tenant_extension_install_by_version ON tenant_extension_install (version_id);
INSERT INTO extension_key_audit (extension_name, action, fingerprint, created_at)
    SELECT name, 'claim', owner_fingerprint, created_at FROM extension_registry
    WHERE owner_fingerprint IS NOT NULL;
"#,
    r#"
-- Cron schedules of installs (Alga's scheduler interface); uninstalling removes them.
CREATE TABLE extension_schedule (
    id              TEXT PRIMARY KEY,
    install_id      TEXT NOT NULL REFERENCES tenant_extension_install(id) ON DELETE CASCADE,
    tenant_id       TEXT NOT NULL,
    extension_name  TEXT NOT NULL,
    endpoint_method TEXT NOT NULL,
    endpoint_path   TEXT NOT NULL,
    name            TEXT,
    cron            TEXT NOT NULL,     -- five fields
    timezone        TEXT NOT NULL,     -- IANA name
    payload         TEXT,              -- JSON text
    enabled         INTEGER NOT NULL DEFAULT 1,
    next_run_at     INTEGER,           -- Unix seconds; NULL while disabled
    last_run_at     INTEGER,
    last_run_status TEXT,              -- running, success, error, interrupted
    last_error      TEXT,
    runs            INTEGER NOT NULL DEFAULT 0,
    run_holder      TEXT,              -- the process that claimed the last run
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (install_id, name)
);
CREATE INDEX extension_schedule_due ON extension_schedule (next_run_at) WHERE enabled = 1;
CREATE INDEX extension_schedule_by_owner ON extension_schedule (tenant_id, extension_name);
-- Which process fires due schedules: one row, held until it expires unless renewed.
CREATE TABLE scheduler_lease (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    holder        TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
-- What started a request: NULL for a caller's request, 'schedule' for a scheduled run.
ALTER TABLE extension_execution_log ADD COLUMN trigger TEXT;
"#,
    r#"
-- The OpenTelemetry trace a request was recorded under (32 hex digits), when traces are on.
ALTER TABLE extension_execution_log ADD COLUMN trace_id TEXT;
"#,
];

/// How long one statement waits for a lock another connection holds (SQLite's busy handler).
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens (creating if needed) the registry database at `path` and brings its schema up to date.
pub(crate) async fn open(path: &Path) -> Result<(Database, Connection), RegistryError> {
    let (db, conn) = open_plain(path).await?;
    migrate(&conn, MIGRATIONS).await?;
    Ok((db, conn))
}

/// Opens (creating if needed) a WAL-mode database at `path`, without the registry schema.
pub(crate) async fn open_plain(path: &Path) -> Result<(Database, Connection), RegistryError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| RegistryError::Open {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    let db = Builder::new_local(path)
        .build()
        .await
        .map_err(|e| RegistryError::Open {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    let conn = connect(&db).await?;
    // WAL: readers never block the writer, and the replication issue serves frames from it.
    pragma(&conn, "PRAGMA journal_mode=WAL").await?;
    Ok((db, conn))
}

/// A new connection with the per-connection settings every registry connection needs.
pub(crate) async fn connect(db: &Database) -> Result<Connection, RegistryError> {
    let conn = db.connect()?;
    pragma(&conn, "PRAGMA foreign_keys=ON").await?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Only replication checkpoints the WAL (at generation boundaries), never SQLite on its own:
    // frame numbers must stay stable within a generation.
    pragma(&conn, "PRAGMA wal_autocheckpoint=0").await?;
    Ok(conn)
}

/// Begins a write transaction holding the write lock from its first statement (waiting for it
/// up to [`BUSY_TIMEOUT`]), so its reads and writes never meet a lock taken in between.
pub(crate) async fn begin_write(conn: &Connection) -> Result<Transaction, libsql::Error> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .await
}

/// Whether `error` is SQLite's "database is busy" or "database is locked" (primary result
/// codes 5 and 6, extended codes included): worth retrying, the data is fine.
pub(crate) fn is_busy(error: &libsql::Error) -> bool {
    matches!(error, libsql::Error::SqliteFailure(code, _) if matches!(code & 0xff, 5 | 6))
}

/// Refuses a replica whose schema is newer than this build knows (its primary was upgraded
/// first); an older one is served with a warning (upgrade the primary).
pub(crate) async fn check_replica_schema(conn: &Connection) -> Result<(), RegistryError> {
    let mut rows = conn.query("PRAGMA user_version", ()).await?;
    let found: i64 = match rows.next().await? {
        Some(row) => row.get(0)?,
        None => 0,
    };
    let found = usize::try_from(found).unwrap_or(0);
    if found > MIGRATIONS.len() {
        return Err(RegistryError::SchemaTooNew {
            found,
            known: MIGRATIONS.len(),
        });
    }
    if found < MIGRATIONS.len() {
        tracing::warn!(
            found,
            known = MIGRATIONS.len(),
            "the primary's registry schema is older than this edge's; upgrade the primary"
        );
    }
    Ok(())
}

/// Runs a pragma; some answer with a row, which `execute` would refuse.
pub(crate) async fn pragma(conn: &Connection, sql: &str) -> Result<(), RegistryError> {
    let mut rows = conn.query(sql, ()).await?;
    while rows.next().await?.is_some() {}
    Ok(())
}

/// Applies the `migrations` `conn`'s database has not had yet.
pub(crate) async fn migrate(conn: &Connection, migrations: &[&str]) -> Result<(), RegistryError> {
    let current: i64 = {
        let mut rows = conn.query("PRAGMA user_version", ()).await?;
        match rows.next().await? {
            Some(row) => row.get(0)?,
            None => 0,
        }
    };
    let current = usize::try_from(current).unwrap_or(0);
    if current > migrations.len() {
        return Err(RegistryError::SchemaTooNew {
            found: current,
            known: migrations.len(),
        });
    }
    for (index, sql) in migrations.iter().enumerate().skip(current) {
        let tx = begin_write(conn).await?;
        tx.execute_batch(sql).await?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", index + 1))
            .await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Seconds since the Unix epoch, the registry's timestamp unit.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn count(conn: &Connection) -> i64 {
        let mut rows = conn.query("SELECT count(*) FROM t", ()).await.unwrap();
        rows.next().await.unwrap().unwrap().get(0).unwrap()
    }

    /// The race behind "database is locked" under load: another connection holds the write lock
    /// (as replication's frame counter briefly does) while a transaction that has already read
    /// wants to write. A deferred transaction fails at once; [`begin_write`] waits its turn.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn write_transactions_wait_for_a_lock_another_connection_holds() {
        let dir = tempfile::tempdir().unwrap();
        let (db, conn) = open_plain(&dir.path().join("t.db")).await.unwrap();
        conn.execute("CREATE TABLE t (v INTEGER)", ())
            .await
            .unwrap();
        let other = connect(&db).await.unwrap();

        let held = begin_write(&other).await.unwrap();
        held.execute("INSERT INTO t VALUES (1)", ()).await.unwrap();
        let deferred = conn.transaction().await.unwrap();
        assert_eq!(count(&deferred).await, 0);
        let refused = deferred
            .execute("INSERT INTO t VALUES (2)", ())
            .await
            .unwrap_err();
        assert!(is_busy(&refused), "{refused}");
        drop(deferred);

        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            held.commit().await.unwrap();
        });
        let tx = begin_write(&conn).await.unwrap();
        assert_eq!(count(&tx).await, 1, "began after the other commit");
        tx.execute("INSERT INTO t VALUES (2)", ()).await.unwrap();
        tx.commit().await.unwrap();
        release.await.unwrap();
        assert_eq!(count(&conn).await, 2);
    }
}
