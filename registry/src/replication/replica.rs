//! The edge side of replication: a libsql synced database pulling the primary's frames with
//! libsql's own client, plus what libsql does not track: whether the last sync reached the
//! primary, and since when the replica is stale.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::WalPosition;

/// How an edge reaches its primary's sync endpoint for one database.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// Base URL of the database's sync endpoint (`…/replication/v1/registry`).
    pub sync_url: String,
    /// Bearer token the primary expects.
    pub token: String,
}

/// Why a replica could not be opened or synced.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The first sync (bootstrap) needs the primary, which did not answer.
    #[error("cannot bootstrap the replica {path} from {url}: {reason}")]
    Bootstrap {
        /// The local file.
        path: String,
        /// The sync endpoint.
        url: String,
        /// Why.
        reason: String,
    },
    /// libsql refused to sync.
    #[error("sync from {url} failed: {reason}")]
    Sync {
        /// The sync endpoint.
        url: String,
        /// Why.
        reason: String,
    },
    /// A writer's deadline passed before the replica caught up with its write.
    #[error("the replica did not reach {target} of {url} in time (it is at {at}): {reason}")]
    CatchUp {
        /// The sync endpoint.
        url: String,
        /// What it waited for.
        target: String,
        /// Where the replica is.
        at: String,
        /// The last sync error, if any.
        reason: String,
    },
}

/// What the primary's `/info` says.
#[derive(Debug, Deserialize)]
pub struct PrimaryInfo {
    /// Current generation.
    pub current_generation: u32,
    /// Oldest generation whose frames it still serves.
    #[serde(default)]
    pub oldest_generation: u32,
}

/// Sync health of a replica.
#[derive(Debug, Default)]
pub struct ReplicaStatus {
    last_ok: Mutex<Option<(Instant, SystemTime)>>,
    last_error: Mutex<Option<String>>,
}

impl ReplicaStatus {
    /// Records a sync that reached the primary.
    pub fn ok(&self) {
        *lock(&self.last_ok) = Some((Instant::now(), SystemTime::now()));
        *lock(&self.last_error) = None;
    }

    /// Records a failed sync.
    pub fn failed(&self, error: String) {
        *lock(&self.last_error) = Some(error);
    }

    /// Time since the last sync that reached the primary (`None`: never in this process).
    pub fn staleness(&self) -> Option<Duration> {
        lock(&self.last_ok).map(|(at, _)| at.elapsed())
    }

    /// Unix milliseconds of the last successful sync.
    pub fn last_ok_unix_ms(&self) -> Option<u64> {
        lock(&self.last_ok).map(|(_, at)| {
            at.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        })
    }

    /// The last sync error, while the replica has not synced since.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The local files of a replica at `path` (database, WAL, shared memory, libsql's sync
/// metadata).
pub fn replica_files(path: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm", "-info"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{}{suffix}", path.display())))
        .collect()
}

/// The generation the local replica at `path` is at, from libsql's metadata file.
pub fn local_generation(path: &Path) -> Option<u32> {
    local_position(path).map(|p| p.generation)
}

/// Where the local replica at `path` is, from libsql's metadata file: its generation and the
/// last commit frame applied (libsql writes the file after each commit frame it applies).
pub fn local_position(path: &Path) -> Option<WalPosition> {
    #[derive(Deserialize)]
    struct Metadata {
        generation: u32,
        #[serde(default)]
        durable_frame_num: u32,
    }
    let text = std::fs::read(format!("{}-info", path.display())).ok()?;
    serde_json::from_slice::<Metadata>(&text)
        .ok()
        .map(|m| WalPosition {
            generation: m.generation,
            frame: m.durable_frame_num,
        })
}

/// Asks the primary for its generations (a reachability probe too).
pub async fn primary_info(
    http: &reqwest::Client,
    config: &ReplicaConfig,
) -> Result<PrimaryInfo, String> {
    let response = http
        .get(format!("{}/info", config.sync_url))
        .bearer_auth(&config.token)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map_err(|e| format!("primary unreachable: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(format!("primary answered {status}: {body}"));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("reading the primary's /info: {e}"))?;
    serde_json::from_slice(&body).map_err(|e| format!("primary sent a bad /info: {e}"))
}

/// Opens the synced database at `path`: bootstraps it from the primary when there is no local
/// replica (or when the local one is older than anything the primary still serves), otherwise
/// starts from the local file even when the primary is unreachable.
pub async fn open(
    path: &Path,
    config: &ReplicaConfig,
    http: &reqwest::Client,
    status: &ReplicaStatus,
) -> Result<libsql::Database, ReplicaError> {
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let bootstrap_error = |reason: String| ReplicaError::Bootstrap {
        path: path.display().to_string(),
        url: config.sync_url.clone(),
        reason,
    };
    let local = local_generation(path);
    match (local, primary_info(http, config).await) {
        (Some(generation), Ok(info)) if generation < info.oldest_generation => {
            tracing::warn!(
                local = generation,
                oldest_served = info.oldest_generation,
                "replica is older than what the primary still serves: bootstrapping again"
            );
            for file in replica_files(path) {
                let _ = std::fs::remove_file(file);
            }
        }
        (None, Err(reason)) => return Err(bootstrap_error(reason)),
        (Some(_), Err(reason)) => {
            tracing::warn!("primary unreachable at startup, serving the local replica: {reason}");
            status.failed(reason);
        }
        _ => {}
    }
    if local.is_none() {
        // A partial earlier bootstrap leaves files libsql refuses to start from.
        for file in replica_files(path) {
            let _ = std::fs::remove_file(file);
        }
    }
    let db =
        libsql::Builder::new_synced_database(path, config.sync_url.clone(), config.token.clone())
            .connector(http_connector())
            .build()
            .await
            .map_err(|e| bootstrap_error(e.to_string()))?;
    Ok(db)
}

/// One sync; `Ok(true)` when it reached the primary and applied everything it had.
pub async fn sync(
    db: &libsql::Database,
    config: &ReplicaConfig,
    http: &reqwest::Client,
    status: &ReplicaStatus,
) -> Result<bool, ReplicaError> {
    // libsql reports success even when the primary is unreachable, so ask it first.
    if let Err(reason) = primary_info(http, config).await {
        status.failed(reason);
        return Ok(false);
    }
    pull(db, config, status).await?;
    status.ok();
    Ok(true)
}

/// One libsql sync, without asking whether the primary is reachable (libsql then reports
/// success having pulled nothing): for callers that check where the replica got to.
pub async fn pull(
    db: &libsql::Database,
    config: &ReplicaConfig,
    status: &ReplicaStatus,
) -> Result<(), ReplicaError> {
    match db.sync().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let reason = e.to_string();
            status.failed(reason.clone());
            Err(ReplicaError::Sync {
                url: config.sync_url.clone(),
                reason,
            })
        }
    }
}

/// Plain-HTTP connector for libsql's sync client (the crate's TLS feature is off; see the
/// README on securing replication traffic).
fn http_connector() -> hyper014::client::HttpConnector {
    let mut connector = hyper014::client::HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    connector
}
