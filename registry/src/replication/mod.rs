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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use client::{
    ForwardedWrite, POSITION_HEADER, PrimaryCallError, PrimaryClient, REPLICATION_PREFIX,
};
pub use primary::{GenerationLog, Pull, ReplicationError};
pub use replica::{ReplicaConfig, ReplicaError, ReplicaStatus};

/// Shortest gap between two on-demand syncs (misses between them wait for the next one).
const ON_DEMAND_WINDOW: Duration = Duration::from_millis(250);

/// Pause after a catch-up sync that did not get there (primary unreachable, or a checkpoint at
/// a generation change that met a reader), doubling up to [`CATCH_UP_PAUSE_MAX`].
const CATCH_UP_PAUSE: Duration = Duration::from_millis(5);
const CATCH_UP_PAUSE_MAX: Duration = Duration::from_millis(100);

/// A point in a primary database's history: a generation and a committed WAL frame of it.
/// Positions order by generation, then frame; a replica at a position has every commit made
/// up to it (a newer generation's base image holds all of the older ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WalPosition {
    /// The generation.
    pub generation: u32,
    /// Committed frames of the generation (0: its base image).
    pub frame: u32,
}

impl std::fmt::Display for WalPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.generation, self.frame)
    }
}

impl std::str::FromStr for WalPosition {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("not a replication position (generation:frame): {text:?}");
        let (generation, frame) = text.split_once(':').ok_or_else(bad)?;
        Ok(Self {
            generation: generation.parse().map_err(|_| bad())?,
            frame: frame.parse().map_err(|_| bad())?,
        })
    }
}

/// What a writer at an edge waits for before it answers (read-your-writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// The replica at this position of the primary's history (the primary said where its
    /// write landed).
    Position(WalPosition),
    /// A sync that started after this ticket ([`Replica::ticket`]) and reached the primary
    /// (for primaries that do not say where a write landed).
    SyncAfter(u64),
}

/// An edge's replica of one database: where it syncs from and how that goes.
pub struct Replica {
    path: PathBuf,
    config: ReplicaConfig,
    primary: String,
    http: reqwest::Client,
    status: ReplicaStatus,
    last_on_demand: Mutex<Option<Instant>>,
    syncing: tokio::sync::Mutex<()>,
    /// Syncs started so far (each sync's number is the count after it started).
    started: AtomicU64,
    /// The number of the last sync that reached the primary and applied everything it had.
    reached: AtomicU64,
    /// Where the local replica is, as of the end of the last sync.
    position: Mutex<Option<WalPosition>>,
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
            started: AtomicU64::new(0),
            reached: AtomicU64::new(0),
            position: Mutex::new(None),
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
        self.note_position();
        Ok(db)
    }

    pub(crate) async fn sync(&self, db: &libsql::Database) -> Result<bool, ReplicaError> {
        // One sync at a time: libsql's sync context is not meant to be driven concurrently.
        let _one = self.syncing.lock().await;
        let number = self.started.fetch_add(1, Ordering::AcqRel) + 1;
        let result = replica::sync(db, &self.config, &self.http, &self.status).await;
        self.note_position();
        if matches!(result, Ok(true)) {
            self.reached.fetch_max(number, Ordering::AcqRel);
        }
        result
    }

    /// A ticket for [`CatchUp::SyncAfter`]: only syncs started after this call satisfy it.
    pub fn ticket(&self) -> u64 {
        self.started.load(Ordering::Acquire)
    }

    /// Where the local replica is (as of the last sync).
    pub fn position(&self) -> Option<WalPosition> {
        *self.position.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn caught_up(&self, target: CatchUp) -> bool {
        match target {
            CatchUp::Position(wanted) => self.position().is_some_and(|at| at >= wanted),
            CatchUp::SyncAfter(ticket) => self.reached.load(Ordering::Acquire) > ticket,
        }
    }

    /// Waits until the replica has caught up with `target`, syncing when no sync already under
    /// way gets it there: writers waiting together share syncs (each waiter checks again once
    /// the sync before it is done), and a writer whose position an earlier sync already
    /// reached does not sync at all. Syncs that fail (primary briefly unreachable, a
    /// checkpoint at a generation change meeting a reader) are retried until `deadline`.
    pub(crate) async fn catch_up(
        &self,
        db: &libsql::Database,
        target: CatchUp,
        deadline: tokio::time::Instant,
    ) -> Result<(), ReplicaError> {
        let mut pause = CATCH_UP_PAUSE;
        let mut last_error = None;
        loop {
            if self.caught_up(target) {
                return Ok(());
            }
            let Ok(one) = tokio::time::timeout_at(deadline, self.syncing.lock()).await else {
                break;
            };
            if self.caught_up(target) {
                return Ok(());
            }
            let number = self.started.fetch_add(1, Ordering::AcqRel) + 1;
            let result = match target {
                // Reaching the position proves the primary answered: no probe needed.
                CatchUp::Position(_) => replica::pull(db, &self.config, &self.status)
                    .await
                    .map(|()| false),
                CatchUp::SyncAfter(_) => {
                    replica::sync(db, &self.config, &self.http, &self.status).await
                }
            };
            self.note_position();
            match result {
                Ok(true) => {
                    self.reached.fetch_max(number, Ordering::AcqRel);
                }
                Ok(false) => {}
                Err(e) => last_error = Some(e.to_string()),
            }
            drop(one);
            if self.caught_up(target) {
                if matches!(target, CatchUp::Position(_)) {
                    self.status.ok();
                }
                return Ok(());
            }
            if tokio::time::Instant::now() + pause >= deadline {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(CATCH_UP_PAUSE_MAX);
        }
        Err(ReplicaError::CatchUp {
            url: self.config.sync_url.clone(),
            target: match target {
                CatchUp::Position(p) => format!("position {p}"),
                CatchUp::SyncAfter(_) => "a fresh sync".into(),
            },
            at: self
                .position()
                .map_or_else(|| "nowhere".into(), |p| p.to_string()),
            reason: last_error.unwrap_or_else(|| self.status.last_error().unwrap_or_default()),
        })
    }

    fn note_position(&self) {
        let at = replica::local_position(&self.path);
        *self.position.lock().unwrap_or_else(|p| p.into_inner()) = at;
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

/// Runs [`GenerationLog::rollover`] on a blocking thread: it reads and writes the whole
/// database file, which on a runtime worker would stall every task queued there for as long.
pub async fn rollover_blocking(
    log: &std::sync::Arc<GenerationLog>,
) -> Result<(), ReplicationError> {
    let log = log.clone();
    tokio::task::spawn_blocking(move || log.rollover())
        .await
        .map_err(|e| ReplicationError::Io {
            path: "rollover".into(),
            source: std::io::Error::other(e.to_string()),
        })?
}
