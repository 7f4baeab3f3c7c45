//! Assembles a serving node from its settings: registry, bundle store, trust bundle, keys,
//! engine, gateway and admin API. Shared by `serve` and `demo`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use alga_edge::admin::Admin;
use alga_edge::capabilities::egress::Allowlist;
use alga_edge::capabilities::{Capabilities, CapabilityLimits, CapabilityMetrics};
use alga_edge::catalog::{BundleFetcher, DevCatalog, InstalledCatalog};
use alga_edge::config::EngineConfig;
use alga_edge::engine::Engine;
use alga_edge::gateway::Gateway;
use alga_edge::host_page::HostPage;
use alga_edge::keys;
use alga_edge::kv::{Forwarder, KvService};
use alga_edge::policy::{Policies, PolicyConfig};
use alga_edge::replication::{self, ReplicationApi};
use alga_edge::runner::Runner;
use alga_edge::server::Health;
use alga_edge::server::{self, App};
use alga_edge::telemetry::{ExecutionLog, ExecutionLogConfig, LogWriter, Metrics, Telemetry};
use alga_edge::tenant_auth::TenantAuth;
use alga_edge::ui::UiRoute;
use alga_edge_registry::Registry;
use alga_edge_registry::kv::KvStore;
use alga_edge_registry::replication::{GenerationLog, ReplicaConfig};
use alga_edge_registry::secrets::SecretSealer;
use alga_edge_registry::signing::TrustBundle;
use alga_edge_registry::store::BundleStore;
use alga_edge_ui_cache::{UiCache, UiCacheLimits};

/// Everything a node needs to start.
pub struct NodeSettings {
    /// CSP `frame-ancestors` sources of `/ext-ui/` besides `'self'` (host page origins).
    pub ui_frame_ancestors: Vec<String>,
    /// Bound of the extracted UI files on disk (`<data-dir>/ui-cache`).
    pub ui_cache_bytes: u64,
    /// Serve the demo host page at `/` for this tenant with this token (`demo` only).
    pub host_page: Option<(String, String)>,
    /// Node-wide outbound HTTP allowlist (`EXT_EGRESS_ALLOWLIST`); `None`: installs decide.
    pub egress_allowlist: Option<Allowlist>,
    /// Limits of the host capabilities.
    pub capabilities: CapabilityLimits,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory (registry, bundles, compiled components, generated keys).
    pub data_dir: PathBuf,
    /// Engine limits and caches.
    pub engine: EngineConfig,
    /// Gateway policies.
    pub policy: PolicyConfig,
    /// `--component ID=PATH` dev mappings.
    pub dev_components: Vec<String>,
    /// Tenant the dev mappings run as.
    pub dev_tenant: String,
    /// `SIGNING_TRUST_BUNDLE`: PEM text or a PEM file path.
    pub trust_bundle: Option<String>,
    /// Admin API token; generated under the data dir when absent.
    pub admin_token: Option<String>,
    /// Secrets key (64 hex); generated under the data dir when absent.
    pub secrets_key: Option<String>,
    /// EdDSA public key (PEM text or file) verifying tenant tokens.
    pub tenant_jwt_public_key: Option<String>,
    /// HS256 secret verifying tenant tokens.
    pub tenant_jwt_hs256_secret: Option<String>,
    /// Largest bundle the admin API accepts.
    pub max_bundle_bytes: usize,
    /// Bundle store: a directory or an object-store URL [default: <data-dir>/bundles].
    pub bundle_store: Option<String>,
    /// Runner API service token; generated under the data dir when absent.
    pub service_token: Option<String>,
    /// Token `/metrics` requires, if any.
    pub metrics_token: Option<String>,
    /// Execution-log queue and retention.
    pub execution_log: ExecutionLogConfig,
    /// Primary (registry writes, sync server) or edge (replica).
    pub role: Role,
    /// Token of the replication API (the primary's; an edge presents it). Generated on a
    /// primary when absent; required on an edge.
    pub sync_token: Option<String>,
    /// Replication tuning.
    pub replication: ReplicationSettings,
}

/// What a node does with the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Owns the registry and serves the sync protocol.
    Primary,
    /// Holds a replica of the primary at this base URL.
    Edge {
        /// The primary's base URL.
        primary: String,
    },
}

/// Replication tuning.
#[derive(Debug, Clone)]
pub struct ReplicationSettings {
    /// Edge: how often the replica syncs.
    pub sync_interval: Duration,
    /// Edge: staleness past which it reports degraded (and `/readyz` fails).
    pub max_staleness: Duration,
    /// Primary: WAL frames that trigger a new generation.
    pub max_wal_frames: u32,
    /// Primary: completed generations whose frames stay available to lagging replicas.
    pub keep_generations: u32,
    /// Edge: bound of the local bundle cache, in bytes.
    pub bundle_cache_bytes: u64,
}

impl Default for ReplicationSettings {
    fn default() -> Self {
        Self {
            sync_interval: Duration::from_secs(1),
            max_staleness: Duration::from_secs(30),
            max_wal_frames: 1000,
            keep_generations: 16,
            bundle_cache_bytes: 1 << 30,
        }
    }
}

/// A node that is listening but not yet serving.
pub struct Node {
    /// The bound listener.
    pub listener: TcpListener,
    /// Its address (with the real port when port 0 was asked for).
    pub addr: SocketAddr,
    /// The routes.
    pub app: Arc<App>,
    /// The registry, for in-process callers such as `demo`.
    pub registry: Arc<Registry>,
    /// The bundle store.
    pub store: BundleStore,
    /// The trust bundle, if any.
    pub trust: Option<Arc<TrustBundle>>,
    /// The execution-log writer, flushed after the server drains.
    pub log_writer: LogWriter,
    /// The primary's replication generations (rolled over once more at shutdown).
    pub generations: Option<Arc<GenerationLog>>,
    /// The KV store.
    pub kv: Arc<KvStore>,
    /// The primary's KV generations.
    pub kv_generations: Option<Arc<GenerationLog>>,
}

/// How long shutdown waits for the execution log to flush.
const LOG_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens the registry and stores, compiles dev components, and binds the listener.
pub async fn start(settings: NodeSettings) -> anyhow::Result<Node> {
    // Before anything is written: a bad `--component` leaves no data directory behind.
    let dev = DevCatalog::from_specs(&settings.dev_tenant, &settings.dev_components)?;
    let data_dir = &settings.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;

    let secrets_key = match &settings.secrets_key {
        Some(key) => key.clone(),
        None => keys::read_or_create(
            &key_path(data_dir, "secrets.key"),
            SecretSealer::generate_key_hex,
        )?,
    };
    let sealer = SecretSealer::from_hex(&secrets_key)
        .context("invalid secrets key (ALGA_SECRETS_KEY must be 64 hex characters)")?;
    let sync_token = match (&settings.role, &settings.sync_token) {
        (_, Some(token)) if token.len() >= 16 => token.clone(),
        (_, Some(_)) => anyhow::bail!("the sync token must be at least 16 characters"),
        (Role::Edge { .. }, None) => {
            anyhow::bail!("an edge needs the primary's sync token (--sync-token / ALGA_SYNC_TOKEN)")
        }
        (Role::Primary, None) => node_token(data_dir, None, "sync.token", "replication (sync)")?,
    };
    let (kv_store, kv_generations) = match &settings.role {
        Role::Primary => {
            let path = data_dir.join("kv.db");
            let store = KvStore::open(&path).await?;
            let generations = GenerationLog::open(
                &path,
                settings.replication.max_wal_frames,
                settings.replication.keep_generations,
            )
            .context("cannot start KV replication")?;
            (Arc::new(store), Some(Arc::new(generations)))
        }
        Role::Edge { primary } => {
            let config = ReplicaConfig {
                sync_url: replication::kv_sync_url(primary),
                token: sync_token.clone(),
            };
            let store =
                KvStore::open_replica(&data_dir.join("kv-replica.db"), config, primary.clone())
                    .await?;
            (Arc::new(store), None)
        }
    };
    let kv = Arc::new(KvService::new(
        kv_store.clone(),
        match &settings.role {
            Role::Edge { primary } => Some(Forwarder {
                primary: primary.clone(),
                token: sync_token.clone(),
                http: alga_edge_registry::http_client(),
            }),
            Role::Primary => None,
        },
    ));
    let (registry, log_registry, generations) = match &settings.role {
        Role::Primary => {
            let path = data_dir.join("registry.db");
            let registry = Arc::new(
                Registry::open(&path)
                    .await?
                    .with_secret_sealer(sealer.clone()),
            );
            let generations = Arc::new(
                GenerationLog::open(
                    &path,
                    settings.replication.max_wal_frames,
                    settings.replication.keep_generations,
                )
                .context("cannot start registry replication")?,
            );
            (registry.clone(), registry, Some(generations))
        }
        Role::Edge { primary } => {
            let config = ReplicaConfig {
                sync_url: replication::registry_sync_url(primary),
                token: sync_token.clone(),
            };
            let registry = Registry::open_replica(
                &data_dir.join("registry-replica.db"),
                config,
                primary.clone(),
            )
            .await?
            .with_secret_sealer(sealer.clone());
            // Edges keep their own execution log: the replica is read-only.
            let local = Registry::open(&data_dir.join("local.db")).await?;
            (Arc::new(registry), Arc::new(local), None)
        }
    };
    let store = match &settings.bundle_store {
        Some(spec) => BundleStore::open(spec)?,
        None => BundleStore::local(data_dir.join("bundles"))?,
    };
    tracing::info!(store = %store.describe(), "bundle store");
    let trust = match &settings.trust_bundle {
        Some(spec) => Some(Arc::new(
            TrustBundle::load(spec).context("cannot load SIGNING_TRUST_BUNDLE")?,
        )),
        None => {
            tracing::warn!(
                "no SIGNING_TRUST_BUNDLE: publishes are refused and no registry bundle runs"
            );
            None
        }
    };
    let auth = Arc::new(tenant_auth(&settings)?);
    let admin_token = node_token(
        data_dir,
        settings.admin_token.as_deref(),
        "admin.token",
        "admin API",
    )?;
    let service_token = node_token(
        data_dir,
        settings.service_token.as_deref(),
        "service.token",
        "runner API (/v1/execute) service",
    )?;
    if let Some(token) = &settings.metrics_token {
        anyhow::ensure!(
            token.len() >= 16,
            "the metrics token must be at least 16 characters"
        );
    }

    if !settings.dev_components.is_empty() {
        tracing::warn!(
            tenant = %settings.dev_tenant,
            "dev components (--component) are served without authentication"
        );
    }
    let engine = Arc::new(Engine::new(settings.engine)?);
    let max_response_bytes = engine.config().max_response_bytes;
    let health = Health {
        registry: registry.clone(),
        generations: generations.clone(),
        max_staleness: settings.replication.max_staleness,
    };
    let capability_metrics = CapabilityMetrics::default();
    let capabilities = Arc::new(Capabilities::new(
        Some(kv.clone()),
        Some(sealer.clone()),
        settings.egress_allowlist.clone(),
        settings.capabilities.clone(),
        capability_metrics.clone(),
    ));
    let metrics = Metrics::new(
        engine.clone(),
        auth.clone(),
        health.clone(),
        &capability_metrics,
    );
    let (log, log_writer) = ExecutionLog::start(
        log_registry.clone(),
        settings.execution_log.clone(),
        metrics.log_written.clone(),
        metrics.log_dropped.clone(),
    )
    .context("cannot start the execution-log writer")?;
    let telemetry = Arc::new(Telemetry::new(metrics, log));
    let mut installed = InstalledCatalog::new(registry.clone(), store.clone(), trust.clone());
    if let Role::Edge { primary } = &settings.role {
        installed = installed.with_fetcher(BundleFetcher {
            primary: primary.clone(),
            token: sync_token.clone(),
            cache_dir: settings
                .bundle_store
                .is_none()
                .then(|| data_dir.join("bundles")),
            cache_bytes: settings.replication.bundle_cache_bytes,
            http: alga_edge_registry::http_client(),
        });
    }
    let gateway = Arc::new(Gateway::new(
        engine.clone(),
        dev,
        installed,
        auth,
        Policies::new(settings.policy),
        capabilities,
        telemetry,
    ));
    let runner = Runner::new(gateway.clone(), &service_token, max_response_bytes);
    let started = std::time::Instant::now();
    let ready = gateway.warm_up().await?;
    let stats = engine.cache_stats();
    tracing::info!(
        extensions = ready,
        compiled = stats.compiles.load(Ordering::Relaxed),
        from_disk_cache = stats.disk_hits.load(Ordering::Relaxed),
        ms = started.elapsed().as_millis() as u64,
        "components ready"
    );
    let mut admin = Admin::new(
        registry.clone(),
        store.clone(),
        trust.clone(),
        &admin_token,
        settings.max_bundle_bytes,
    )
    .with_kv(kv.clone());
    let replication_api = match (&settings.role, &generations) {
        (Role::Edge { primary }, _) => {
            admin = admin.read_only(log_registry.clone(), primary.clone());
            tokio::spawn(replication::sync_loop(
                registry.clone(),
                kv_store.clone(),
                settings.replication.sync_interval,
            ));
            None
        }
        (Role::Primary, Some(log)) => {
            let kv_log = kv_generations
                .clone()
                .context("the primary's KV generations are missing")?;
            // Checking is one frame-count read: cheap enough to keep the WALs near their bound.
            tokio::spawn(replication::rollover_loop(
                registry.clone(),
                log.clone(),
                kv_store.clone(),
                kv_log.clone(),
                Duration::from_millis(250),
            ));
            Some(ReplicationApi::new(
                log.clone(),
                kv_log,
                kv.clone(),
                store.clone(),
                &sync_token,
            ))
        }
        (Role::Primary, None) => None,
    };

    let ui_cache = Arc::new(
        UiCache::open(
            data_dir.join("ui-cache"),
            UiCacheLimits {
                disk_bytes: settings.ui_cache_bytes,
                ..UiCacheLimits::default()
            },
        )
        .context("cannot open the UI cache")?,
    );
    let mut ancestors = vec!["'self'".to_owned()];
    ancestors.extend(settings.ui_frame_ancestors.iter().cloned());
    let ui = UiRoute::new(ui_cache, registry.clone(), gateway.clone(), &ancestors)
        .map_err(|e| anyhow::anyhow!("EXT_UI_FRAME_ANCESTORS: {e}"))?;
    let mut app = App::new(
        gateway,
        runner,
        Some(admin),
        replication_api,
        health,
        settings.metrics_token.as_deref(),
    )
    .with_ui(Arc::new(ui));
    if let Some((tenant, token)) = settings.host_page.clone() {
        app = app.with_host_page(HostPage::new(registry.clone(), tenant, token));
    }

    let listener = server::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    Ok(Node {
        listener,
        addr,
        app: Arc::new(app),
        registry,
        store,
        trust,
        log_writer,
        generations,
        kv: kv_store,
        kv_generations,
    })
}

/// Serves `node` until SIGINT/SIGTERM, drains in-flight requests, then flushes the execution
/// log.
pub async fn run(node: Node) -> anyhow::Result<()> {
    server::serve(node.listener, node.app, shutdown_signal()).await?;
    node.log_writer.flush_and_stop(LOG_FLUSH_TIMEOUT).await;
    // Close the generation, so replicas can pull its last frames from the archive after the
    // WAL is checkpointed away when the database closes.
    if let Some(generations) = &node.generations
        && let Err(e) = node.registry.rollover(generations).await
    {
        tracing::error!("replication: final rollover failed: {e}");
    }
    if let Some(generations) = &node.kv_generations
        && let Err(e) = node.kv.rollover(generations).await
    {
        tracing::error!("replication: final KV rollover failed: {e}");
    }
    tracing::info!("stopped");
    Ok(())
}

/// A configured node token (at least 16 characters), or the one generated under `keys/NAME`.
fn node_token(
    data_dir: &Path,
    configured: Option<&str>,
    name: &str,
    what: &str,
) -> anyhow::Result<String> {
    match configured {
        Some(token) if token.len() >= 16 => Ok(token.to_owned()),
        Some(_) => anyhow::bail!("the {what} token must be at least 16 characters"),
        None => {
            let path = key_path(data_dir, name);
            let token = keys::read_or_create(&path, keys::random_token)?;
            tracing::info!("{what} token is in {}", path.display());
            Ok(token)
        }
    }
}

/// Where a generated node key lives.
pub fn key_path(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("keys").join(name)
}

fn tenant_auth(settings: &NodeSettings) -> anyhow::Result<TenantAuth> {
    Ok(
        match (
            &settings.tenant_jwt_public_key,
            &settings.tenant_jwt_hs256_secret,
        ) {
            (Some(_), Some(_)) => anyhow::bail!(
                "set either ALGA_TENANT_JWT_PUBLIC_KEY or ALGA_TENANT_JWT_HS256_SECRET, not both"
            ),
            (Some(key), None) => TenantAuth::eddsa(key)?,
            (None, Some(secret)) => TenantAuth::hs256(secret)?,
            (None, None) => {
                tracing::warn!(
                    "tenant tokens are verified with this node's dev key (mint them with \
                     'alga-edge token'); set ALGA_TENANT_JWT_PUBLIC_KEY in production"
                );
                TenantAuth::dev(&settings.data_dir)?
            }
        },
    )
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::warn!("cannot watch SIGTERM: {e}");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
