//! Registry replication (DESIGN §4): the primary serves the libsql sync protocol from its WAL
//! ([`primary`]), every edge holds a libsql synced replica pulled with libsql's own client
//! ([`replica`]). Edges never write their replica; [`client`] is their one client of the
//! primary's replication API.

pub mod client;
pub mod primary;
pub mod replica;
pub mod wal;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use client::{PrimaryCallError, PrimaryClient, REPLICATION_PREFIX};
pub use primary::{GenerationLog, Pull, ReplicationError};
pub use replica::{ReplicaConfig, ReplicaError, ReplicaStatus};

/// Shortest gap between two on-demand syncs (misses between them wait for the next one).
const ON_DEMAND_WINDOW: Duration = Duration::from_millis(250);

/// An edge's replica of one database: where it syncs from and how that goes.
pub struct Replica {
    path: PathBuf,
    config: ReplicaConfig,
    primary: String,
    http: reqwest::Client,
    status: ReplicaStatus,
    last_on_demand: Mutex<Option<Instant>>,
    syncing: tokio::sync::Mutex<()>,
}

impl Replica {
    /// A replica at `path` of the database behind `config`; `primary` names the primary in
    /// messages.
    pub fn new(path: &Path, config: ReplicaConfig, primary: String) -> Self {
        Self {
            path: path.to_owned(),
            config,
            primary,
            http: crate::http_client(),
            status: ReplicaStatus::default(),
            last_on_demand: Mutex::new(None),
            syncing: tokio::sync::Mutex::new(()),
        }
    }

    /// The primary's URL.
    pub fn primary(&self) -> &str {
        &self.primary
    }

    /// Sync health.
    pub fn status(&self) -> &ReplicaStatus {
        &self.status
    }

    /// The local replica's generation.
    pub fn generation(&self) -> Option<u32> {
        replica::local_generation(&self.path)
    }

    pub(crate) async fn open(&self) -> Result<libsql::Database, ReplicaError> {
        let db = replica::open(&self.path, &self.config, &self.http, &self.status).await?;
        // The first sync bootstraps the file from the primary (or, offline, keeps the local
        // one); connections must only be opened after it.
        match db.sync().await {
            Ok(_) => {
                if self.status.last_error().is_none() {
                    self.status.ok();
                }
            }
            Err(e) => {
                return Err(ReplicaError::Bootstrap {
                    path: self.path.display().to_string(),
                    url: self.config.sync_url.clone(),
                    reason: e.to_string(),
                });
            }
        }
        Ok(db)
    }

    pub(crate) async fn sync(&self, db: &libsql::Database) -> Result<bool, ReplicaError> {
        // One sync at a time: libsql's sync context is not meant to be driven concurrently.
        let _one = self.syncing.lock().await;
        replica::sync(db, &self.config, &self.http, &self.status).await
    }

    pub(crate) fn on_demand_allowed(&self) -> bool {
        let mut last = self
            .last_on_demand
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match *last {
            Some(at) if at.elapsed() < ON_DEMAND_WINDOW => false,
            _ => {
                *last = Some(Instant::now());
                true
            }
        }
    }
}
