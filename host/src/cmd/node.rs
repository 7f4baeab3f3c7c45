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
use alga_edge::health::{Health, ReplicationGauges};
use alga_edge::host_page::HostPage;
use alga_edge::replication::{self, ReplicationApi};
use alga_edge::server::{self, App};
use alga_edge::ui::UiRoute;
use alga_edge_capabilities::egress::Allowlist;
use alga_edge_capabilities::kv_service::KvService;
use alga_edge_capabilities::platform_broker::PlatformSettings;
use alga_edge_capabilities::schedule_service::ScheduleService;
use alga_edge_capabilities::{Capabilities, CapabilityLimits, CapabilityMetrics};
use alga_edge_engine::{Engine, EngineConfig};
use alga_edge_gateway::catalog::{BundleFetcher, DevCatalog, InstalledCatalog};
use alga_edge_gateway::keys;
use alga_edge_gateway::policy::{Policies, PolicyConfig};
use alga_edge_gateway::telemetry::metrics::{Readings, ResultCounters};
use alga_edge_gateway::telemetry::{
    ExecutionLog, ExecutionLogConfig, LogWriter, Metrics, TailConfig, TailHub, Telemetry,
};
use alga_edge_gateway::tenant_auth::TenantAuth;
use alga_edge_gateway::{Gateway, Runner, ScheduleTrigger, TriggerConfig};
use alga_edge_registry::bundle::ContentHash;
use alga_edge_registry::kv::KvStore;
use alga_edge_registry::replication::{GenerationLog, PrimaryClient, ReplicaConfig};
use alga_edge_registry::schedules::ScheduleLimits;
use alga_edge_registry::secrets::SecretSealer;
use alga_edge_registry::signing::TrustBundle;
use alga_edge_registry::store::BundleStore;
use alga_edge_registry::{ExecutionStore, Registry};
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
    /// The platform Alga's `clients`, `services`, `invoicing` and `ui-proxy` are brokered to.
    pub platform: PlatformSettings,
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
    /// Longest a tenant token may still be valid for when presented.
    pub tenant_token_max_ttl: std::time::Duration,
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
    /// Live tail bounds.
    pub tail: TailConfig,
    /// Primary (registry writes, sync server) or edge (replica).
    pub role: Role,
    /// Token of the replication API (the primary's; an edge presents it). Generated on a
    /// primary when absent; required on an edge.
    pub sync_token: Option<String>,
    /// Replication tuning.
    pub replication: ReplicationSettings,
    /// Schedule limits and the trigger that fires them (primary).
    pub schedules: ScheduleSettings,
    /// Span counts of the trace exporter, when traces are on (for `/metrics`).
    pub trace_stats: Option<Arc<alga_edge::traces::TraceStats>>,
}

/// Schedules: per-install limits and how the primary fires them.
#[derive(Debug, Clone, Default)]
pub struct ScheduleSettings {
    /// Per-install limits (installs' policies override them).
    pub limits: ScheduleLimits,
    /// The trigger's tick, lease and parallelism.
    pub trigger: TriggerConfig,
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
    /// The live tails, ended when shutdown starts (so their connections can drain).
    pub tail: Arc<TailHub>,
    /// The primary's schedule trigger and its task, stopped (lease released) at shutdown.
    pub schedule_trigger: Option<(Arc<ScheduleTrigger>, tokio::task::JoinHandle<()>)>,
    /// The primary's replication generations (rolled over once more at shutdown).
    pub generations: Option<Arc<GenerationLog>>,
    /// The KV store.
    pub kv: Arc<KvStore>,
    /// The primary's KV generations.
    pub kv_generations: Option<Arc<GenerationLog>>,
}

/// How long shutdown waits for the execution log to flush.
const LOG_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The node's databases, opened by role.
struct Data {
    /// The registry (a replica on edges).
    registry: Arc<Registry>,
    /// This node's own execution log and usage windows (`executions.db`, never replicated).
    executions: Arc<ExecutionStore>,
    /// The primary's registry generations.
    generations: Option<Arc<GenerationLog>>,
    /// The KV store (a replica on edges).
    kv_store: Arc<KvStore>,
    /// The primary's KV generations.
    kv_generations: Option<Arc<GenerationLog>>,
    /// KV as capabilities and the admin API use it (edges forward writes to the primary).
    kv: Arc<KvService>,
    /// Schedules as capabilities and the admin API use them (edges forward writes).
    schedules: Arc<ScheduleService>,
}

/// Opens the registry and stores, compiles dev components, and binds the listener.
pub async fn start(settings: NodeSettings) -> anyhow::Result<Node> {
    // Before anything is written: a bad `--component` leaves no data directory behind.
    let dev = DevCatalog::from_specs(&settings.dev_tenant, &settings.dev_components)?;
    let data_dir = &settings.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let sealer = secret_sealer(&settings)?;
    let sync_token = sync_token(&settings)?;
    let data = match &settings.role {
        Role::Primary => open_primary(&settings, &sealer).await?,
        Role::Edge { primary } => {
            let client =
                PrimaryClient::new(primary, &sync_token, alga_edge_registry::http_client());
            open_edge(&settings, &sealer, client).await?
        }
    };
    let store = match &settings.bundle_store {
        Some(spec) => BundleStore::open(spec)?,
        None => BundleStore::local(data_dir.join("bundles"))?,
    };
    tracing::info!(store = %store.describe(), "bundle store");
    let trust = trust_bundle(&settings)?;
    let tokens = Tokens::of(&settings)?;
    let health = Health {
        registry: data.registry.clone(),
        generations: data.generations.clone(),
        max_staleness: settings.replication.max_staleness,
    };
    // Bundles an edge fetches from its primary, to extract their UIs in the background.
    let (fetched, fetched_bundles) = tokio::sync::mpsc::channel(64);
    let (gateway, log_writer) = build_gateway(
        &settings,
        dev,
        &data,
        &store,
        &trust,
        &sealer,
        &sync_token,
        &health,
        fetched,
    )
    .await?;
    let max_response_bytes = gateway.max_response_bytes();
    let tail = gateway.telemetry().tail.clone();
    // Only the primary fires schedules (it owns registry writes); its lease keeps a second
    // process on the same data from firing them too.
    let schedule_trigger = (settings.role == Role::Primary).then(|| {
        let trigger = Arc::new(ScheduleTrigger::new(
            gateway.clone(),
            data.registry.clone(),
            settings.schedules.trigger.clone(),
        ));
        let task = tokio::spawn(trigger.clone().run());
        (trigger, task)
    });
    let runner = Runner::new(gateway.clone(), &tokens.service, max_response_bytes);
    let app = assemble_app(
        &settings,
        &data,
        &store,
        &trust,
        &tokens,
        &sync_token,
        gateway,
        runner,
        health,
        fetched_bundles,
        schedule_trigger
            .as_ref()
            .map(|(trigger, _)| trigger.clone()),
    )?;

    let listener = server::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    Ok(Node {
        listener,
        addr,
        app: Arc::new(app),
        registry: data.registry,
        store,
        trust,
        log_writer,
        tail,
        schedule_trigger,
        generations: data.generations,
        kv: data.kv_store,
        kv_generations: data.kv_generations,
    })
}

/// The node's own bearer tokens (configured, or generated under `keys/`).
struct Tokens {
    /// The admin API's.
    admin: String,
    /// The runner API's (`/v1/execute`).
    service: String,
}

impl Tokens {
    fn of(settings: &NodeSettings) -> anyhow::Result<Self> {
        let data_dir = &settings.data_dir;
        let admin = node_token(
            data_dir,
            settings.admin_token.as_deref(),
            "admin.token",
            "admin API",
        )?;
        let service = node_token(
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
        Ok(Self { admin, service })
    }
}

/// The app over the gateway: the admin API (read-only on edges), replication by role, the UI
/// route and, for the demo, the host page.
#[allow(clippy::too_many_arguments)]
fn assemble_app(
    settings: &NodeSettings,
    data: &Data,
    store: &BundleStore,
    trust: &Option<Arc<TrustBundle>>,
    tokens: &Tokens,
    sync_token: &str,
    gateway: Arc<Gateway>,
    runner: Runner,
    health: Health,
    mut fetched_bundles: tokio::sync::mpsc::Receiver<ContentHash>,
    schedule_trigger: Option<Arc<ScheduleTrigger>>,
) -> anyhow::Result<App> {
    let ui = Arc::new(ui_route(settings, &data.registry, &gateway)?);
    let mut admin = Admin::new(
        data.registry.clone(),
        data.executions.clone(),
        store.clone(),
        trust.clone(),
        &tokens.admin,
        settings.max_bundle_bytes,
    )
    .with_kv(data.kv.clone())
    .with_schedules(data.schedules.clone(), schedule_trigger)
    .with_tail(gateway.clone())
    .with_ui(ui.clone());
    let extractor = ui.clone();
    tokio::spawn(async move {
        while let Some(hash) = fetched_bundles.recv().await {
            if let Err(e) = extractor.prepare(&hash).await {
                tracing::warn!(content_hash = %hash, "cannot extract the bundle UI: {e}");
            }
        }
    });
    let replication_api = match &settings.role {
        Role::Edge { primary } => {
            admin = admin.read_only(primary.clone());
            start_edge_sync(settings, data);
            None
        }
        Role::Primary => Some(start_primary_replication(data, store, sync_token)?),
    };
    let mut app = App::new(
        gateway,
        runner,
        Some(admin),
        replication_api,
        health,
        settings.metrics_token.as_deref(),
    )
    .with_ui(ui);
    if let Some((tenant, token)) = settings.host_page.clone() {
        app = app.with_host_page(HostPage::new(data.registry.clone(), tenant, token));
    }
    Ok(app)
}

/// The secrets-sealing key: configured, or generated under `keys/secrets.key`.
fn secret_sealer(settings: &NodeSettings) -> anyhow::Result<SecretSealer> {
    let secrets_key = match &settings.secrets_key {
        Some(key) => key.clone(),
        None => keys::read_or_create(
            &key_path(&settings.data_dir, "secrets.key"),
            SecretSealer::generate_key_hex,
        )?,
    };
    SecretSealer::from_hex(&secrets_key)
        .context("invalid secrets key (ALGA_SECRETS_KEY must be 64 hex characters)")
}

/// The replication sync token: configured (an edge must be given its primary's), or a
/// primary's generated one.
fn sync_token(settings: &NodeSettings) -> anyhow::Result<String> {
    match (&settings.role, &settings.sync_token) {
        (_, Some(token)) if token.len() >= 16 => Ok(token.clone()),
        (_, Some(_)) => anyhow::bail!("the sync token must be at least 16 characters"),
        (Role::Edge { .. }, None) => {
            anyhow::bail!("an edge needs the primary's sync token (--sync-token / ALGA_SYNC_TOKEN)")
        }
        (Role::Primary, None) => {
            node_token(&settings.data_dir, None, "sync.token", "replication (sync)")
        }
    }
}

/// A primary's databases: the registry and KV, each with its replication generations.
async fn open_primary(settings: &NodeSettings, sealer: &SecretSealer) -> anyhow::Result<Data> {
    let data_dir = &settings.data_dir;
    let generations = |path: &Path, what: &str| {
        GenerationLog::open(
            path,
            settings.replication.max_wal_frames,
            settings.replication.keep_generations,
        )
        .map(Arc::new)
        .with_context(|| format!("cannot start {what} replication"))
    };
    let kv_path = data_dir.join("kv.db");
    let kv_store = Arc::new(KvStore::open(&kv_path).await?);
    let kv_generations = generations(&kv_path, "KV")?;
    kv_store.report_positions(kv_generations.clone());
    let path = data_dir.join("registry.db");
    let registry = Arc::new(
        Registry::open(&path)
            .await?
            .with_secret_sealer(sealer.clone()),
    );
    let registry_generations = generations(&path, "registry")?;
    let executions = open_executions(data_dir, Some((&registry, "registry.db"))).await?;
    Ok(Data {
        schedules: Arc::new(ScheduleService::new(
            registry.clone(),
            None,
            settings.schedules.limits,
        )),
        executions,
        registry,
        generations: Some(registry_generations),
        kv: Arc::new(KvService::new(kv_store.clone(), None)),
        kv_store,
        kv_generations: Some(kv_generations),
    })
}

/// Opens the node's execution store (`executions.db`) and moves into it whatever execution
/// log and usage an older build left in `legacy` (a database and its file name in `data_dir`).
async fn open_executions(
    data_dir: &Path,
    legacy: Option<(&Registry, &str)>,
) -> anyhow::Result<Arc<ExecutionStore>> {
    let path = data_dir.join("executions.db");
    let store = ExecutionStore::open(&path).await?;
    let Some((legacy, source)) = legacy else {
        return Ok(Arc::new(store));
    };
    let moved = store
        .adopt(legacy, source)
        .await
        .with_context(|| format!("cannot move the execution log into {}", path.display()))?;
    if moved > 0 {
        tracing::info!(
            rows = moved,
            "execution log: moved from {source} into {}",
            path.display()
        );
    }
    Ok(Arc::new(store))
}

/// An edge's databases: replicas of the primary's registry and KV, plus its own execution log.
async fn open_edge(
    settings: &NodeSettings,
    sealer: &SecretSealer,
    primary: PrimaryClient,
) -> anyhow::Result<Data> {
    let data_dir = &settings.data_dir;
    let replica = |sync_url| ReplicaConfig {
        sync_url,
        token: primary.token().to_owned(),
    };
    let kv_store = Arc::new(
        KvStore::open_replica(
            &data_dir.join("kv-replica.db"),
            replica(primary.kv_sync_url()),
            primary.base().to_owned(),
        )
        .await?,
    );
    let registry = Registry::open_replica(
        &data_dir.join("registry-replica.db"),
        replica(primary.registry_sync_url()),
        primary.base().to_owned(),
    )
    .await?
    .with_secret_sealer(sealer.clone());
    // Older builds kept an edge's log in `local.db`, a registry-shaped file of its own.
    let legacy_path = data_dir.join("local.db");
    let executions = if legacy_path.exists() {
        let legacy = Registry::open(&legacy_path).await?;
        let executions = open_executions(data_dir, Some((&legacy, "local.db"))).await?;
        drop(legacy);
        for suffix in ["", "-wal", "-shm"] {
            let file = data_dir.join(format!("local.db{suffix}"));
            if let Err(e) = std::fs::remove_file(&file)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!("cannot remove {} (its rows moved): {e}", file.display());
            }
        }
        executions
    } else {
        open_executions(data_dir, None).await?
    };
    let registry = Arc::new(registry);
    Ok(Data {
        schedules: Arc::new(ScheduleService::new(
            registry.clone(),
            Some(primary.clone()),
            settings.schedules.limits,
        )),
        registry,
        executions,
        generations: None,
        kv: Arc::new(KvService::new(kv_store.clone(), Some(primary))),
        kv_store,
        kv_generations: None,
    })
}

/// The configured trust bundle; without one, publishes are refused and nothing from the
/// registry runs.
fn trust_bundle(settings: &NodeSettings) -> anyhow::Result<Option<Arc<TrustBundle>>> {
    match &settings.trust_bundle {
        Some(spec) => Ok(Some(Arc::new(
            TrustBundle::load(spec).context("cannot load SIGNING_TRUST_BUNDLE")?,
        ))),
        None => {
            tracing::warn!(
                "no SIGNING_TRUST_BUNDLE: publishes are refused and no registry bundle runs"
            );
            Ok(None)
        }
    }
}

/// The engine, capabilities, telemetry (with the engine's, token cache's and replication's
/// metrics registered here) and the gateway over them, with every installed component
/// compiled; also the execution-log writer to flush at shutdown.
#[allow(clippy::too_many_arguments)]
async fn build_gateway(
    settings: &NodeSettings,
    dev: DevCatalog,
    data: &Data,
    store: &BundleStore,
    trust: &Option<Arc<TrustBundle>>,
    sealer: &SecretSealer,
    sync_token: &str,
    health: &Health,
    fetched: tokio::sync::mpsc::Sender<ContentHash>,
) -> anyhow::Result<(Arc<Gateway>, LogWriter)> {
    if !settings.dev_components.is_empty() {
        tracing::warn!(
            tenant = %settings.dev_tenant,
            "dev components (--component) are served without authentication"
        );
    }
    let auth = Arc::new(tenant_auth(settings)?);
    let engine = Arc::new(Engine::new(settings.engine.clone())?);
    let capability_metrics = CapabilityMetrics::default();
    let capabilities = Arc::new(
        Capabilities::new(
            Some(data.kv.clone()),
            Some(sealer.clone()),
            settings.egress_allowlist.clone(),
            settings.capabilities.clone(),
            capability_metrics.clone(),
        )
        .with_schedules(data.schedules.clone())
        .with_platform(settings.platform.clone()),
    );
    let policies = Policies::new(settings.policy.clone());
    let mut metrics = Metrics::new(&capability_metrics);
    register_metrics(&mut metrics, &engine, &auth, health);
    register_admission_metrics(&mut metrics, &engine);
    if let Some(stats) = settings.trace_stats.clone() {
        metrics.register_collector(ResultCounters::new(
            "trace_spans",
            "Finished trace spans: exported, or dropped (export queue full, export failed)",
            move || stats.counts(),
        ));
    }
    let (log, log_writer) = ExecutionLog::start(
        data.executions.clone(),
        settings.execution_log.clone(),
        metrics.log_written.clone(),
        metrics.log_dropped.clone(),
    )
    .context("cannot start the execution-log writer")?;
    let telemetry = Arc::new(Telemetry::new(
        metrics,
        log,
        Arc::new(TailHub::new(settings.tail.clone())),
    ));
    let mut installed = InstalledCatalog::new(data.registry.clone(), store.clone(), trust.clone());
    if let Role::Edge { primary } = &settings.role {
        installed = installed.with_fetcher(BundleFetcher {
            primary: PrimaryClient::new(primary, sync_token, alga_edge_registry::http_client()),
            cache_dir: settings
                .bundle_store
                .is_none()
                .then(|| settings.data_dir.join("bundles")),
            cache_bytes: settings.replication.bundle_cache_bytes,
            fetched: Some(fetched),
        });
    }
    let gateway = Arc::new(Gateway::new(
        engine.clone(),
        dev,
        installed,
        auth,
        policies,
        capabilities,
        telemetry,
    ));
    // Installs may switch reuse on by policy whatever the node default, so this always runs;
    // it costs a lock a second while no instance is warm.
    tokio::spawn(retire_warm_instances(Arc::downgrade(&gateway)));
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
    Ok((gateway, log_writer))
}

/// Every second: retires warm instances idle too long or of installs that changed, until the
/// gateway is gone.
async fn retire_warm_instances(gateway: std::sync::Weak<Gateway>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(gateway) = gateway.upgrade() else {
            return;
        };
        gateway.retire_stale_instances().await;
    }
}

/// Gives the gateway's metrics the engine's, the token cache's and replication's series,
/// read at scrape time (the telemetry module imports none of them).
fn register_metrics(
    metrics: &mut Metrics,
    engine: &Arc<Engine>,
    auth: &Arc<TenantAuth>,
    health: &Health,
) {
    metrics.register(
        "instantiation_duration_seconds",
        "Time to instantiate a component for one request",
        engine.instantiation_histogram(),
    );
    let engine = engine.clone();
    metrics.register_collector(ResultCounters::new(
        "component_cache",
        "Prepared-component lookups by result",
        move || {
            let stats = engine.cache_stats();
            vec![
                ("memory_hit", stats.memory_hits.load(Ordering::Relaxed)),
                ("disk_hit", stats.disk_hits.load(Ordering::Relaxed)),
                ("compile", stats.compiles.load(Ordering::Relaxed)),
            ]
        },
    ));
    let auth = auth.clone();
    metrics.register_collector(ResultCounters::new(
        "token_cache",
        "Tenant token verifications by result",
        move || {
            let tokens = auth.cache_stats();
            vec![
                ("hit", tokens.hits.load(Ordering::Relaxed)),
                ("miss", tokens.misses.load(Ordering::Relaxed)),
            ]
        },
    ));
    metrics.register_collector(Box::new(ReplicationGauges(health.clone())));
}

/// The memory budget's, the CPU scheduler's and the warm pool's series: what is reserved
/// against what budget, how often guests waited for a turn to run, how many instances idle (refusals are `alga_denials_total` by reason).
fn register_admission_metrics(metrics: &mut Metrics, engine: &Arc<Engine>) {
    let memory = engine.memory_budget().clone();
    metrics.register(
        "memory_reserved_bytes",
        "Linear memory instances hold now, running and warm (charged to the budget as it grows)",
        memory.charged_gauge(),
    );
    let (node, tenant) = (memory.node_bytes(), memory.tenant_bytes());
    metrics.register_collector(Readings::gauges(
        "memory_budget_bytes",
        "Instance memory the node's instances may hold, node-wide and per tenant",
        "scope",
        move || vec![("node", node), ("tenant", tenant)],
    ));
    let scheduler = engine.scheduler().clone();
    metrics.register_collector(Readings::gauges(
        "cpu_slots",
        "Run slots guests take turns on (total) and guests waiting for a turn now (waiting)",
        "state",
        move || {
            vec![
                ("total", scheduler.slots() as u64),
                ("waiting", scheduler.waiting() as u64),
            ]
        },
    ));
    let scheduler = engine.scheduler().clone();
    metrics.register_collector(ResultCounters::new(
        "cpu_turns",
        "Times a guest found every run slot taken and waited for its turn",
        move || vec![("waited", scheduler.waits())],
    ));
    let warm = engine.warm_pool().clone();
    metrics.register_collector(Readings::gauges(
        "warm_instances",
        "Idle instances kept for their install's next request (reuse mode)",
        "state",
        move || vec![("idle", warm.idle() as u64)],
    ));
    let warm = engine.warm_pool().clone();
    metrics.register_collector(ResultCounters::new(
        "instance_reuse",
        "Requests served by a warm instance (reused), idle instances dropped (retired)",
        move || vec![("reused", warm.reused()), ("retired", warm.dropped())],
    ));
}

/// Edge: the background sync of the registry and KV replicas.
fn start_edge_sync(settings: &NodeSettings, data: &Data) {
    tokio::spawn(replication::sync_loop(
        data.registry.clone(),
        data.kv_store.clone(),
        settings.replication.sync_interval,
    ));
}

/// Primary: the WAL rollover task and the replication API edges pull from.
fn start_primary_replication(
    data: &Data,
    store: &BundleStore,
    sync_token: &str,
) -> anyhow::Result<ReplicationApi> {
    let (Some(log), Some(kv_log)) = (&data.generations, &data.kv_generations) else {
        anyhow::bail!("the primary's replication generations are missing");
    };
    // Checking is one frame-count read: cheap enough to keep the WALs near their bound.
    tokio::spawn(replication::rollover_loop(
        data.registry.clone(),
        log.clone(),
        data.kv_store.clone(),
        kv_log.clone(),
        Duration::from_millis(250),
    ));
    Ok(ReplicationApi::new(
        log.clone(),
        kv_log.clone(),
        data.kv.clone(),
        data.schedules.clone(),
        store.clone(),
        sync_token,
    ))
}

/// `/ext-ui/`: the UI cache and the frame-ancestors policy.
fn ui_route(
    settings: &NodeSettings,
    registry: &Arc<Registry>,
    gateway: &Arc<Gateway>,
) -> anyhow::Result<UiRoute> {
    let ui_cache = Arc::new(
        UiCache::open(
            settings.data_dir.join("ui-cache"),
            UiCacheLimits {
                disk_bytes: settings.ui_cache_bytes,
                ..UiCacheLimits::default()
            },
        )
        .context("cannot open the UI cache")?,
    );
    let mut ancestors = vec!["'self'".to_owned()];
    ancestors.extend(settings.ui_frame_ancestors.iter().cloned());
    UiRoute::new(ui_cache, registry.clone(), gateway.clone(), &ancestors)
        .map_err(|e| anyhow::anyhow!("EXT_UI_FRAME_ANCESTORS: {e}"))
}

/// Serves `node` until SIGINT/SIGTERM, drains in-flight requests, then flushes the execution
/// log.
pub async fn run(node: Node) -> anyhow::Result<()> {
    let tail = node.tail.clone();
    let shutdown = async move {
        shutdown_signal().await;
        tail.close();
    };
    server::serve(node.listener, node.app, shutdown).await?;
    if let Some((trigger, task)) = &node.schedule_trigger {
        // No new runs; the lease goes so a restarted node fires at once. Runs still in flight
        // stay `running` and are marked interrupted by the next lease holder.
        task.abort();
        trigger.release().await;
    }
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
    let auth = match (
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
    };
    Ok(auth.with_max_lifetime(settings.tenant_token_max_ttl))
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
