//! Alga Edge registry: what extensions exist, which versions were published, the signed,
//! content-addressed bundles behind them, and what each tenant installed (DESIGN §4).
//!
//! - [`manifest`]: manifest v2, its validation rules and normalisation.
//! - [`bundle`]: tar + zstd bundles, content hashes, safe unpacking.
//! - [`signing`]: Ed25519 compact-JWS bundle signatures and the trust bundle that verifies them.
//! - [`store`]: the content-addressed bundle store (local directory or object store).
//! - [`imports`]: a component's imports checked against its manifest's capabilities.
//! - [`ownership`]: which keys may publish an extension name (owner and delegates).
//! - [`secrets`]: install secrets sealed at rest with the node key.
//! - [`install_policy`]: per-install overrides of the gateway policies.
//! - [`schedules`]: cron schedules of installs and the state that fires each exactly once.
//! - [`ExecutionStore`]: the node-local execution log and quota usage (not replicated).
//! - [`Registry`]: the libsql database with [`publish`](Registry::publish) and the per-tenant
//!   install lifecycle ([`installs`]).

pub mod bundle;
mod db;
mod executions;
pub mod imports;
pub mod install_policy;
pub mod installs;
pub mod kv;
pub mod manifest;
pub mod ownership;
mod publish;
pub mod replication;
pub mod schedules;
pub mod secrets;
pub mod signing;
pub mod store;

use std::path::Path;

pub use executions::{ExecutionRecord, ExecutionStore, LoggedExecution, USAGE_WINDOW_SECS, Usage};
pub use install_policy::InstallPolicy;
pub use installs::{Install, InstallRequest, ResolvedInstall, is_valid_tenant_id};
pub use publish::{Published, VersionInfo};

/// The registry database.
///
/// Reads use their own connection; every write operation holds the writer connection for its
/// whole check-then-write sequence, so concurrent admin calls cannot interleave inside one
/// transaction or race past each other's checks, and readers only ever see committed state.
pub struct Registry {
    db: libsql::Database,
    read: libsql::Connection,
    /// `None` on an edge replica: every write goes to the primary.
    write: Option<tokio::sync::Mutex<libsql::Connection>>,
    sealer: Option<secrets::SecretSealer>,
    changes: std::sync::atomic::AtomicU64,
    replica: Option<replication::Replica>,
}

/// The writer connection, held for one catalog write; counts a change when released so
/// readers' caches see it.
pub(crate) struct Writer<'a> {
    guard: tokio::sync::MutexGuard<'a, libsql::Connection>,
    changes: &'a std::sync::atomic::AtomicU64,
}

impl std::ops::Deref for Writer<'_> {
    type Target = libsql::Connection;
    fn deref(&self) -> &libsql::Connection {
        &self.guard
    }
}

impl Writer<'_> {
    /// A write transaction on the writer connection, holding SQLite's write lock from its
    /// start (see [`db::begin_write`]); shadows the connection's deferred `transaction`.
    pub(crate) async fn transaction(&self) -> Result<libsql::Transaction, libsql::Error> {
        db::begin_write(&self.guard).await
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }
}

impl Registry {
    /// Opens (creating and migrating if needed) the registry at `path`.
    pub async fn open(path: &Path) -> Result<Self, RegistryError> {
        let (db, write) = db::open(path).await?;
        let read = db::connect(&db).await?;
        Ok(Self {
            db,
            read,
            write: Some(tokio::sync::Mutex::new(write)),
            sealer: None,
            changes: std::sync::atomic::AtomicU64::new(0),
            replica: None,
        })
    }

    /// Opens the edge replica at `path` of the primary's registry (bootstrapping it from the
    /// primary when there is no local copy). The replica is read-only: writes fail with
    /// [`RegistryError::ReadOnlyReplica`].
    pub async fn open_replica(
        path: &Path,
        config: replication::ReplicaConfig,
        primary: String,
    ) -> Result<Self, RegistryError> {
        let replica = replication::Replica::new(path, config, primary);
        let db = replica.open().await?;
        let read = db::connect(&db).await?;
        db::check_replica_schema(&read).await?;
        Ok(Self {
            db,
            read,
            write: None,
            sealer: None,
            changes: std::sync::atomic::AtomicU64::new(0),
            replica: Some(replica),
        })
    }

    /// The replica state, on an edge.
    pub fn replica(&self) -> Option<&replication::Replica> {
        self.replica.as_ref()
    }

    /// Pulls what the primary has (edges only); `Ok(false)` when the primary was unreachable.
    pub async fn sync(&self) -> Result<bool, RegistryError> {
        let Some(replica) = &self.replica else {
            return Ok(true);
        };
        let reached = replica.sync(&self.db).await?;
        if reached {
            self.changes
                .fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        Ok(reached)
    }

    /// [`Registry::sync`], at most once per short window (a miss storm must not hammer the
    /// primary); returns whether a sync ran and reached the primary.
    pub async fn sync_on_demand(&self) -> Result<bool, RegistryError> {
        match &self.replica {
            Some(replica) if replica.on_demand_allowed() => self.sync().await,
            _ => Ok(false),
        }
    }

    /// Starts a new replication generation (primary): archives the WAL's frames, checkpoints,
    /// saves the next base image. Holds the writer so nothing commits meanwhile. The file work
    /// (the whole database is read and written) runs on a blocking thread, not on the caller's
    /// runtime worker, whose other tasks (requests) would stall for as long as it lasts.
    pub async fn rollover(
        &self,
        log: &std::sync::Arc<replication::GenerationLog>,
    ) -> Result<(), RegistryError> {
        let _writer = self.writer().await?;
        replication::rollover_blocking(log).await?;
        Ok(())
    }

    /// A counter that moves whenever the catalog (extensions, versions, installs) may have
    /// changed; a cache of resolutions is valid while it stays the same.
    pub fn change_count(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) async fn writer(&self) -> Result<Writer<'_>, RegistryError> {
        let write = self.write.as_ref().ok_or_else(|| self.read_only())?;
        Ok(Writer {
            guard: write.lock().await,
            changes: &self.changes,
        })
    }

    /// The writer connection without counting a catalog change (schedule run state, leases).
    pub(crate) async fn log_writer(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, libsql::Connection>, RegistryError> {
        let write = self.write.as_ref().ok_or_else(|| self.read_only())?;
        Ok(write.lock().await)
    }

    fn read_only(&self) -> RegistryError {
        RegistryError::ReadOnlyReplica {
            primary: self
                .replica
                .as_ref()
                .map_or_else(|| "the primary".to_owned(), |r| r.primary().to_owned()),
        }
    }

    /// Checks the database answers (readiness probes).
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let mut rows = self.read.query("SELECT 1", ()).await?;
        while rows.next().await?.is_some() {}
        Ok(())
    }

    /// Lets installs carry secrets, sealed and opened with `sealer`'s node key.
    pub fn with_secret_sealer(mut self, sealer: secrets::SecretSealer) -> Self {
        self.sealer = Some(sealer);
        self
    }
}

/// An HTTP client for node-to-node calls (rustls with the ring provider, installed once).
pub fn http_client() -> reqwest::Client {
    store::object::install_tls_provider();
    reqwest::Client::new()
}

/// Everything the registry can refuse or fail with. [`RegistryError::status`] gives the HTTP
/// status an API should answer with.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The bundle archive is malformed or unsafe.
    #[error(transparent)]
    Bundle(#[from] bundle::BundleError),
    /// The manifest breaks a rule.
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    /// The component imports what its manifest does not declare, or is no component.
    #[error(transparent)]
    Imports(#[from] imports::ImportError),
    /// The signature is not trusted or not for this bundle.
    #[error("signature rejected: {0}")]
    Signature(#[from] signing::SigningError),
    /// The name belongs to another publisher.
    #[error("extension '{name}' belongs to publisher '{owner}', not '{publisher}'")]
    PublisherMismatch {
        /// Extension name.
        name: String,
        /// Its registered publisher.
        owner: String,
        /// The publisher that tried.
        publisher: String,
    },
    /// The signing key may not publish this name.
    #[error(
        "extension '{name}' belongs to key {owner}; key {signer} may not publish it (the owner can delegate: alga-edge keys delegate)"
    )]
    KeyNotAllowed {
        /// Extension name.
        name: String,
        /// The key that signed.
        signer: String,
        /// The owner key.
        owner: String,
    },
    /// A delegation names something that is not a key fingerprint.
    #[error("'{0}' is not a key fingerprint (sha256:<64 hex digits>)")]
    BadFingerprint(String),
    /// The owner key's rights cannot be revoked.
    #[error("the owner key of '{name}' cannot be revoked")]
    OwnerKeyRevoke {
        /// Extension name.
        name: String,
    },
    /// Revoking a key that was never delegated.
    #[error("key {fingerprint} holds no delegation for '{name}'")]
    NotDelegated {
        /// Extension name.
        name: String,
        /// The key.
        fingerprint: String,
    },
    /// The version exists with different content.
    #[error(
        "{name}@{version} is already published with bundle {existing}; publish a new version instead"
    )]
    VersionConflict {
        /// Extension name.
        name: String,
        /// Version.
        version: String,
        /// The content hash already published.
        existing: String,
    },
    /// No such extension.
    #[error("extension '{0}' is not published")]
    UnknownExtension(String),
    /// No such version.
    #[error("{name}@{version} is not published")]
    UnknownVersion {
        /// Extension name.
        name: String,
        /// Version.
        version: String,
    },
    /// The version is deprecated and cannot be newly installed.
    #[error("{name}@{version} is deprecated; install a newer version")]
    Deprecated {
        /// Extension name.
        name: String,
        /// Version.
        version: String,
    },
    /// The tenant has no install of the extension.
    #[error("tenant '{tenant}' has no install of '{name}'")]
    NotInstalled {
        /// Tenant.
        tenant: String,
        /// Extension name.
        name: String,
    },
    /// The tenant already installed the extension.
    #[error("tenant '{tenant}' already installed '{name}'; use update to change its version")]
    AlreadyInstalled {
        /// Tenant.
        tenant: String,
        /// Extension name.
        name: String,
    },
    /// A grant names a capability the installed version's manifest does not request.
    #[error(
        "cannot grant '{capability}': {name}@{version} does not request it (requested: {requested})"
    )]
    GrantNotRequested {
        /// The capability.
        capability: String,
        /// Extension name.
        name: String,
        /// Version.
        version: String,
        /// What the manifest requests.
        requested: String,
    },
    /// Secrets were given but this node has no secrets key.
    #[error("this node has no secrets key configured, so it cannot store install secrets")]
    NoSecretsKey,
    /// An install policy value is out of range.
    #[error(transparent)]
    Policy(#[from] install_policy::PolicyError),
    /// Sealing or opening secrets failed.
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsError),
    /// A tenant id is empty or too long.
    #[error("invalid tenant id '{0}': use 1-128 characters of A-Z a-z 0-9 . _ -")]
    BadTenant(String),
    /// The bundle store failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The database file could not be opened.
    #[error("cannot open the registry database {path}: {reason}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The database was migrated by a newer alga-edge.
    #[error(
        "the registry schema is at version {found}, newer than this alga-edge knows ({known}); upgrade alga-edge"
    )]
    SchemaTooNew {
        /// Schema version found.
        found: usize,
        /// Newest this build knows.
        known: usize,
    },
    /// A schedule change broke a rule (field by field); nothing was stored.
    #[error(transparent)]
    ScheduleRefused(#[from] schedules::ScheduleRefused),
    /// A KV key or value was refused.
    #[error(transparent)]
    Kv(#[from] kv::KvError),
    /// A write reached an edge node, whose registry is a read-only replica.
    #[error(
        "this node is an edge: its registry is a read-only replica; send writes to the primary at {primary}"
    )]
    ReadOnlyReplica {
        /// The primary's URL.
        primary: String,
    },
    /// Replication failed.
    #[error(transparent)]
    Replication(#[from] replication::ReplicationError),
    /// The edge replica could not be opened or synced.
    #[error(transparent)]
    Replica(#[from] replication::ReplicaError),
    /// A database operation failed.
    #[error("registry database: {0}")]
    Db(#[from] libsql::Error),
    /// The database stayed locked (or its writer was gone) past the write's deadline; nothing
    /// was written, the write may be tried again.
    #[error("the database is busy: {0}")]
    Unavailable(String),
    /// A stored value could not be decoded.
    #[error("registry data is corrupt: {0}")]
    Corrupt(String),
}

impl RegistryError {
    /// The HTTP status an API answers this error with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Bundle(_)
            | Self::Manifest(_)
            | Self::Imports(_)
            | Self::GrantNotRequested { .. }
            | Self::Policy(_)
            | Self::Kv(_)
            | Self::ScheduleRefused(_)
            | Self::BadTenant(_)
            | Self::BadFingerprint(_) => 400,
            Self::Signature(_)
            | Self::PublisherMismatch { .. }
            | Self::KeyNotAllowed { .. }
            | Self::OwnerKeyRevoke { .. } => 403,
            Self::UnknownExtension(_)
            | Self::UnknownVersion { .. }
            | Self::NotInstalled { .. }
            | Self::NotDelegated { .. } => 404,
            Self::VersionConflict { .. }
            | Self::Deprecated { .. }
            | Self::AlreadyInstalled { .. }
            | Self::ReadOnlyReplica { .. } => 409,
            Self::NoSecretsKey
            | Self::Secrets(_)
            | Self::Store(_)
            | Self::Open { .. }
            | Self::SchemaTooNew { .. }
            | Self::Replication(_)
            | Self::Replica(_)
            | Self::Db(_)
            | Self::Corrupt(_) => 500,
            Self::Unavailable(_) => 503,
        }
    }
}
