//! `alga-edge`: the edge node binary.

mod cmd;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use alga_edge::authoring;
use alga_edge::config_file::{self, ConfigFile};
use alga_edge::traces::{TraceSettings, Traces};
use alga_edge_capabilities::CapabilityLimits;
use alga_edge_capabilities::egress::{Allowlist, EgressLimits};
use alga_edge_capabilities::platform_broker::PlatformSettings;
use alga_edge_engine::config::EngineConfig;
use alga_edge_gateway::TriggerConfig;
use alga_edge_gateway::policy::PolicyConfig;
use alga_edge_gateway::telemetry::{ExecutionLogConfig, TailConfig};
use alga_edge_gateway::tenant_auth::DevTokenIssuer;
use alga_edge_registry::schedules::ScheduleLimits;
use cmd::demo::DemoArgs;
use cmd::node::{NodeSettings, ReplicationSettings, Role, ScheduleSettings};
use cmd::remote::RemoteCommand;

#[derive(Parser)]
#[command(
    name = "alga-edge",
    version,
    about = "Alga Edge: runs tenant extensions (WASI components) on an edge node"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, env = "ALGA_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Primary,
    Edge,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway (`/api/ext/{extensionId}/…`), the runner API (`/v1/execute`), the admin
    /// API, `/metrics`, `/healthz` and `/readyz`.
    Serve(Box<ServeArgs>),
    /// Start a node with the sample extensions published and installed for a demo tenant.
    Demo(DemoArgs),
    /// The node's configuration file: the effective settings, an annotated example.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Mint a dev tenant token with a local node's dev key.
    Token {
        /// Tenant the token is for.
        #[arg(long)]
        tenant: String,
        /// End user id (`sub`).
        #[arg(long)]
        user: Option<String>,
        /// The end user's profile as a JSON object (`user_email`, `user_name`, `user_type`,
        /// `client_name`, `client_id`, `additional_fields`), carried in the `user` claim for
        /// Alga's runner-world `user` interface.
        #[arg(long)]
        user_profile: Option<String>,
        /// Scope to include. Repeatable.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Validity in seconds.
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
        ttl_secs: u64,
        /// Data directory of the node whose dev key signs the token.
        #[arg(long, env = "ALGA_DATA_DIR", default_value = ".alga-edge")]
        data_dir: PathBuf,
    },
    #[command(flatten)]
    Remote(RemoteCommand),
    /// Author commands: scaffold an extension (`ext new`) and build its component (`ext build`).
    #[command(subcommand)]
    Ext(cmd::ext::ExtCommand),
    /// Create a publisher key pair (publisher.pem, publisher.pub.pem) in DIR.
    Keygen {
        /// Folder to write the keys into.
        #[arg(long)]
        out: PathBuf,
        /// Overwrite existing key files.
        #[arg(long)]
        force: bool,
    },
    /// Pack an extension folder (manifest.json, dist/main.wasm, ui/) into a bundle; prints its
    /// content hash.
    Pack {
        /// The extension folder.
        ext_dir: PathBuf,
        /// Bundle path [default: <name>-<version>.tar.zst].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Sign a bundle with a publisher key, writing the detached signature.
    Sign {
        /// The bundle (.tar.zst).
        bundle: PathBuf,
        /// The publisher's private key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// Signature path [default: <bundle>.sig].
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective `serve` configuration as TOML: every setting with its value and
    /// where it came from (default, file, env, flag); secrets masked. Takes `serve`'s flags.
    Print(Box<ServeArgs>),
    /// Print an annotated configuration file with every `serve` setting and its default.
    Example,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML, in the sections of `alga-edge config example`); environment
    /// variables and flags override its values.
    #[arg(long, env = "ALGA_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port (the chosen address is printed).
    #[arg(
        help_heading = "Node",
        long,
        env = "ALGA_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    listen: SocketAddr,
    /// Dev shortcut: serve the component at PATH as extension ID for the dev tenant. Repeatable.
    #[arg(help_heading = "Node", long = "component", value_name = "ID=PATH")]
    components: Vec<String>,
    /// Tenant that dev-mapped components run for.
    #[arg(
        help_heading = "Node",
        long,
        env = "ALGA_DEV_TENANT",
        default_value = "dev-tenant"
    )]
    dev_tenant: String,
    /// Node data directory: registry.db, bundles/, compiled/, keys/.
    #[arg(
        help_heading = "Node",
        long,
        env = "ALGA_DATA_DIR",
        default_value = ".alga-edge"
    )]
    data_dir: PathBuf,
    /// Directory of precompiled components [default: <data-dir>/compiled].
    #[arg(help_heading = "Node", long, env = "ALGA_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Keep compiled components in memory only.
    #[arg(help_heading = "Node", long, env = "ALGA_NO_DISK_CACHE")]
    no_disk_cache: bool,
    /// Per-request deadline in milliseconds (504 past it).
    #[arg(help_heading = "Limits", long, env = "EXT_GATEWAY_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// Memory cap of an instance (its linear memories together), in MiB (502 past it).
    #[arg(help_heading = "Limits", long, env = "EXT_MEMORY_LIMIT_MIB", default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=4096))]
    memory_limit_mib: u64,
    /// Instances running at once on this node (503 past it).
    #[arg(help_heading = "Limits", long, env = "EXT_MAX_INSTANCES", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10000))]
    max_instances: u32,
    /// Linear memory all instances (running and warm) may hold together, in MiB: growth past
    /// it is refused and the request answered 503, and no request starts while it is spent
    /// [default: half of the machine's memory, the smaller of RAM and the cgroup limit].
    #[arg(help_heading = "Limits", long, env = "EXT_MEMORY_BUDGET_MIB", value_parser = clap::value_parser!(u64).range(1..))]
    memory_budget_mib: Option<u64>,
    /// Percentage of the memory budget one tenant's instances may hold (429 past it).
    #[arg(help_heading = "Limits", long, env = "EXT_TENANT_MEMORY_SHARE", default_value_t = 50, value_parser = clap::value_parser!(u8).range(1..=100))]
    tenant_memory_share: u8,
    /// Guests running wasm at once (run slots); the others wait for a turn, handed round-robin
    /// across tenants every CPU slice [default: the number of cores].
    #[arg(help_heading = "Limits", long, env = "EXT_CPU_SLOTS", value_parser = clap::value_parser!(u32).range(1..=1024))]
    cpu_slots: Option<u32>,
    /// Longest slice, in milliseconds, a guest runs before it gives its run slot to a waiting
    /// one (the epoch tick; also the resolution of deadlines).
    #[arg(help_heading = "Limits", long, env = "EXT_CPU_SLICE_MS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=100))]
    cpu_slice_ms: u64,
    /// CPU time one request's guest may use, in milliseconds: time running wasm and the host
    /// code it calls, not time waiting on host I/O; past it the request ends with 502
    /// `extension_cpu_budget`. 0: no budget (the deadline alone bounds it). Installs
    /// override it with the `cpu_budget_ms` policy.
    #[arg(help_heading = "Limits", long, env = "EXT_CPU_BUDGET_MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    cpu_budget_ms: u64,
    /// Largest response body an extension may stream, in MiB.
    #[arg(help_heading = "Limits", long, env = "EXT_MAX_RESPONSE_MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    max_response_mib: u64,
    /// Instance reuse: requests one instance serves, for the same install only (tenant ×
    /// extension × version), before it is dropped; 0 or 1: a fresh instance per request.
    /// Installs override it with the `instance_reuse` policy. The guest's memory persists
    /// between the requests it serves (see README).
    #[arg(help_heading = "Instances", long, env = "EXT_INSTANCE_REUSE", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    instance_reuse: u32,
    /// A warm instance is dropped after this many milliseconds without a request.
    #[arg(help_heading = "Instances", long, env = "EXT_INSTANCE_IDLE_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    instance_idle_ms: u64,
    /// Linear memory all idle warm instances may hold together, in MiB (the oldest go first).
    #[arg(help_heading = "Instances", long, env = "EXT_INSTANCE_IDLE_MIB", default_value_t = 512, value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
    instance_idle_mib: u64,
    /// Freed instance memories returned to the OS per batch (1 = immediately; see README).
    #[arg(help_heading = "Instances", long, env = "EXT_POOL_DECOMMIT_BATCH", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    pool_decommit_batch: u64,
    /// KiB of each freed instance memory kept resident for the next instance in its pool slot
    /// (reset in place instead of returned to the OS and faulted in again).
    #[arg(help_heading = "Instances", long, env = "EXT_POOL_MEMORY_KEEP_RESIDENT_KIB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
    pool_memory_keep_resident_kib: u64,
    /// KiB of each freed instance table kept resident the same way.
    #[arg(help_heading = "Instances", long, env = "EXT_POOL_TABLE_KEEP_RESIDENT_KIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
    pool_table_keep_resident_kib: u64,
    /// Reset freed memories by scanning their resident pages (Linux PAGEMAP_SCAN, kernel 6.7+;
    /// ignored where missing); `false` assumes the low addresses are the resident ones.
    #[arg(help_heading = "Instances", long, env = "EXT_POOL_PAGEMAP_SCAN", default_value_t = true, action = clap::ArgAction::Set)]
    pool_pagemap_scan: bool,
    /// Largest request body to an extension, in KiB (413 past it).
    #[arg(help_heading = "Requests", long, env = "EXT_MAX_BODY_KIB", default_value_t = 10240, value_parser = clap::value_parser!(u64).range(1..))]
    max_body_kib: u64,
    /// Most request headers (431 past it).
    #[arg(help_heading = "Requests", long, env = "EXT_MAX_HEADERS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_headers: u32,
    /// Largest total size of request headers, in KiB (431 past it).
    #[arg(help_heading = "Requests", long, env = "EXT_MAX_HEADER_KIB", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_header_kib: u32,
    /// Concurrent requests per tenant (429 past it).
    #[arg(help_heading = "Requests", long, env = "EXT_TENANT_CONCURRENCY", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    tenant_concurrency: u32,
    /// Concurrent requests per extension, across tenants (429 past it).
    #[arg(help_heading = "Requests", long, env = "EXT_EXTENSION_CONCURRENCY", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    extension_concurrency: u32,
    /// Sustained requests per second per tenant; 0 disables the limit (429 past it).
    #[arg(
        help_heading = "Requests",
        long,
        env = "EXT_TENANT_RATE",
        default_value_t = 200.0
    )]
    tenant_rate: f64,
    /// Burst of the per-tenant rate limit.
    #[arg(
        help_heading = "Requests",
        long,
        env = "EXT_TENANT_BURST",
        default_value_t = 400.0
    )]
    tenant_burst: f64,
    /// Serve only the routes a manifest declares in `api.endpoints` (404 otherwise); installs
    /// can override this with their `enforce_endpoints` policy.
    #[arg(help_heading = "Requests", long, env = "EXT_ENFORCE_ENDPOINTS")]
    enforce_endpoints: bool,
    /// Node-wide outbound HTTP allowlist (`[scheme://]host[:port]`, comma-separated): an
    /// install's own `egress_allow` entries work only where this allows too. Unset: installs'
    /// lists alone decide (each install allows nothing until given one).
    #[arg(help_heading = "Egress", long, env = "EXT_EGRESS_ALLOWLIST")]
    egress_allowlist: Option<String>,
    /// Outbound HTTP requests one inbound request may make.
    #[arg(help_heading = "Egress", long, env = "EXT_EGRESS_MAX_REQUESTS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    egress_max_requests: u32,
    /// Largest outbound response body, in KiB.
    #[arg(help_heading = "Egress", long, env = "EXT_EGRESS_MAX_RESPONSE_KIB", default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..))]
    egress_max_response_kib: u64,
    /// Deadline of one outbound request (to its response head), in milliseconds.
    #[arg(help_heading = "Egress", long, env = "EXT_EGRESS_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    egress_timeout_ms: u64,
    /// Origin of the platform's internal API (Alga PSA's server), which `clients`, `services`
    /// and `invoicing` are brokered to (`POST {base}/api/internal/ext-*/install/{id}`); Alga's
    /// runner setting, with its fallback `REGISTRY_BASE_URL`. Unset: those calls fail, naming it.
    #[arg(help_heading = "Platform", long, env = "STORAGE_API_BASE_URL")]
    platform_url: Option<String>,
    /// Credential of the platform's internal API, sent as `x-runner-auth` (Alga's runner
    /// setting, with its fallback `RUNNER_SERVICE_TOKEN`).
    #[arg(
        help_heading = "Platform",
        long,
        env = "RUNNER_STORAGE_API_TOKEN",
        hide_env_values = true
    )]
    platform_token: Option<String>,
    /// Deadline of one platform API call, request to last answer byte, in milliseconds.
    #[arg(help_heading = "Platform", long, env = "ALGA_PLATFORM_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    platform_timeout_ms: u64,
    /// Largest answer read from the platform (internal API and ui-proxy), in KiB; a longer
    /// one is refused.
    #[arg(help_heading = "Platform", long, env = "ALGA_PLATFORM_MAX_RESPONSE_KIB", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    platform_max_response_kib: u64,
    /// Platform calls (clients, services, invoicing, ui-proxy together) one request may make.
    #[arg(help_heading = "Platform", long, env = "ALGA_PLATFORM_MAX_CALLS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    platform_max_calls: u32,
    /// Base URL `ui-proxy.call-route` forwards to (`{base}/{extensionId}/{route}`; routes under
    /// `/api/` without the extension). Unset: calls answer `route-not-found`, as in Alga.
    #[arg(help_heading = "Platform", long, env = "UI_PROXY_BASE_URL")]
    ui_proxy_base_url: Option<String>,
    /// Sent as `x-runner-auth` on ui-proxy calls.
    #[arg(
        help_heading = "Platform",
        long,
        env = "UI_PROXY_AUTH_KEY",
        hide_env_values = true
    )]
    ui_proxy_auth_key: Option<String>,
    /// Deadline of one ui-proxy call, in milliseconds.
    #[arg(help_heading = "Platform", long, env = "UI_PROXY_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    ui_proxy_timeout_ms: u64,
    /// Keys one install may hold in KV storage (installs can lower it with `kv_max_keys`).
    #[arg(help_heading = "Storage", long, env = "EXT_KV_MAX_KEYS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    kv_max_keys: u64,
    /// Origins allowed to frame extension UIs (CSP `frame-ancestors` of `/ext-ui/`), besides
    /// this node itself: the platform's host-page origins, comma-separated
    /// (`https://psa.example.com`).
    #[arg(
        help_heading = "UI",
        long,
        env = "EXT_UI_FRAME_ANCESTORS",
        value_delimiter = ','
    )]
    ui_frame_ancestors: Vec<String>,
    /// The public base URL browsers reach this node at (Alga's `RUNNER_PUBLIC_BASE`); its
    /// origin may frame extension UIs too.
    #[arg(help_heading = "UI", long, env = "RUNNER_PUBLIC_BASE")]
    public_base: Option<String>,
    /// Bound of extracted extension UI files on disk, in MiB.
    #[arg(help_heading = "UI", long, env = "ALGA_UI_CACHE_MIB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    ui_cache_mib: u64,
    /// Days execution-log rows and usage windows are kept.
    #[arg(help_heading = "Telemetry", long, env = "ALGA_EXECUTION_LOG_RETENTION_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..=3650))]
    execution_log_retention_days: u64,
    /// Execution-log rows queued for writing before new ones are dropped (and counted).
    #[arg(help_heading = "Telemetry", long, env = "ALGA_EXECUTION_LOG_QUEUE", default_value_t = 16384, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    execution_log_queue: u64,
    /// Live tail: events queued per subscriber before new ones are dropped (the subscriber is
    /// told how many).
    #[arg(help_heading = "Telemetry", long, env = "ALGA_TAIL_BUFFER", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    tail_buffer: u64,
    /// Live tails this node serves at once.
    #[arg(help_heading = "Telemetry", long, env = "ALGA_TAIL_MAX_SUBSCRIBERS", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    tail_max_subscribers: u64,
    /// OpenTelemetry traces: the OTLP/HTTP (protobuf) endpoint spans are exported to, the full
    /// URL (`http://collector:4318/v1/traces`). Unset: no traces.
    #[arg(
        help_heading = "Telemetry",
        long,
        env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )]
    otel_endpoint: Option<String>,
    /// Fraction of new traces recorded, 0 to 1; a caller's sampled `traceparent` is always
    /// followed.
    #[arg(help_heading = "Telemetry", long, env = "ALGA_OTEL_SAMPLE_RATIO", default_value_t = 1.0, value_parser = sample_ratio)]
    otel_sample_ratio: f64,
    /// Finished spans queued for export before new ones are dropped (and counted).
    #[arg(help_heading = "Telemetry", long, env = "ALGA_OTEL_QUEUE", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    otel_queue: u64,
    /// The spans' `service.name`.
    #[arg(
        help_heading = "Telemetry",
        long,
        env = "OTEL_SERVICE_NAME",
        default_value = "alga-edge"
    )]
    otel_service_name: String,
    /// `primary` (registry writes, sync server; the default for a single node) or `edge`
    /// (serves from a replica of --primary).
    #[arg(
        help_heading = "Replication",
        long,
        env = "ALGA_ROLE",
        default_value = "primary"
    )]
    role: RoleArg,
    /// Edge: the primary's base URL (http://host:port).
    #[arg(help_heading = "Replication", long, env = "ALGA_PRIMARY_URL")]
    primary: Option<String>,
    /// Replication token (primary: accepted, default generated into <data-dir>/keys/sync.token;
    /// edge: presented, required).
    #[arg(
        help_heading = "Replication",
        long,
        env = "ALGA_SYNC_TOKEN",
        hide_env_values = true
    )]
    sync_token: Option<String>,
    /// Edge: sync interval in milliseconds.
    #[arg(help_heading = "Replication", long, env = "ALGA_SYNC_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    sync_interval_ms: u64,
    /// Edge: staleness in milliseconds past which the node reports degraded and /readyz fails
    /// (it keeps serving).
    #[arg(help_heading = "Replication", long, env = "ALGA_MAX_STALENESS_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_staleness_ms: u64,
    /// Primary: WAL frames (4 KiB each) that start a new replication generation.
    #[arg(help_heading = "Replication", long, env = "ALGA_REPLICATION_MAX_WAL_FRAMES", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(2..))]
    replication_max_wal_frames: u32,
    /// Primary: completed generations kept for lagging replicas.
    #[arg(help_heading = "Replication", long, env = "ALGA_REPLICATION_KEEP_GENERATIONS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    replication_keep_generations: u32,
    /// Edge: bound of the local bundle cache, in MiB.
    #[arg(help_heading = "Replication", long, env = "ALGA_BUNDLE_CACHE_MIB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    bundle_cache_mib: u64,
    /// Schedules one install may hold (installs' `schedule_max` policy overrides it).
    #[arg(help_heading = "Schedules", long, env = "ALGA_SCHEDULE_MAX_PER_INSTALL", default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    schedule_max_per_install: u32,
    /// Shortest interval between two fires of one schedule, in seconds (Alga's is 5 minutes;
    /// installs' `schedule_min_interval_secs` policy overrides it).
    #[arg(help_heading = "Schedules", long, env = "ALGA_SCHEDULE_MIN_INTERVAL_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(60..))]
    schedule_min_interval_secs: u64,
    /// Primary: scheduled runs in flight at once, node-wide (more due runs wait a tick).
    #[arg(help_heading = "Schedules", long, env = "ALGA_SCHEDULE_MAX_PARALLEL", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    schedule_max_parallel: u64,
    /// Seconds added to the clock that decides which schedules are due (tests only).
    #[arg(
        help_heading = "Schedules",
        long,
        env = "ALGA_SCHEDULE_CLOCK_OFFSET_SECS",
        default_value_t = 0,
        hide = true,
        allow_hyphen_values = true
    )]
    schedule_clock_offset_secs: i64,
    /// Publisher public keys trusted for bundles: PEM text, or a PEM file path.
    #[arg(
        help_heading = "Auth",
        long,
        env = "SIGNING_TRUST_BUNDLE",
        hide_env_values = true
    )]
    trust_bundle: Option<String>,
    /// Admin API token [default: generated into <data-dir>/keys/admin.token].
    #[arg(
        help_heading = "Auth",
        long,
        env = "ALGA_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    /// Key sealing install secrets, 64 hex chars [default: generated into <data-dir>/keys/secrets.key].
    #[arg(
        help_heading = "Auth",
        long,
        env = "ALGA_SECRETS_KEY",
        hide_env_values = true
    )]
    secrets_key: Option<String>,
    /// EdDSA public key (PEM text or file) verifying tenant tokens [default: the node's dev key].
    #[arg(
        help_heading = "Auth",
        long,
        env = "ALGA_TENANT_JWT_PUBLIC_KEY",
        hide_env_values = true
    )]
    tenant_jwt_public_key: Option<String>,
    /// HS256 secret verifying tenant tokens (instead of an EdDSA key).
    #[arg(
        help_heading = "Auth",
        long,
        env = "ALGA_TENANT_JWT_HS256_SECRET",
        hide_env_values = true
    )]
    tenant_jwt_hs256_secret: Option<String>,
    /// Longest a tenant token may still be valid for when presented; longer-lived ones get 401.
    #[arg(help_heading = "Auth", long, env = "ALGA_TENANT_TOKEN_MAX_TTL_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..))]
    tenant_token_max_ttl_secs: u64,
    /// Service token `POST /v1/execute` requires [default: generated into <data-dir>/keys/service.token].
    #[arg(
        help_heading = "Auth",
        long,
        env = "ALGA_RUNNER_SERVICE_TOKEN",
        hide_env_values = true
    )]
    service_token: Option<String>,
    /// Bearer token `/metrics` requires [default: none, /metrics is open].
    #[arg(
        help_heading = "Auth",
        long,
        env = "ALGA_METRICS_TOKEN",
        hide_env_values = true
    )]
    metrics_token: Option<String>,
    /// Bundle store: a directory, or an object-store URL (s3://bucket/prefix with AWS_* settings
    /// from the environment, file:///dir) [default: <data-dir>/bundles].
    #[arg(help_heading = "Bundles", long, env = "ALGA_BUNDLE_STORE")]
    bundle_store: Option<String>,
    /// Largest bundle the admin API accepts, in MiB (413 past it).
    #[arg(help_heading = "Bundles", long, env = "ALGA_MAX_BUNDLE_MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    max_bundle_mib: u64,
}

// Requests allocate and free small objects across worker threads (hyper, wasmtime's resource
// tables, capability state); with glibc's allocator that cost ~10% of a warm request
// (malloc_consolidate, arena locks), mimalloc's thread-local free lists most of it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A sampling ratio: a number from 0 to 1.
fn sample_ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!("'{text}' is not a ratio from 0 to 1")),
    }
}

/// Starts trace export when `args` name an endpoint (before the async runtime: the
/// exporter's blocking client owns its own).
fn start_traces(args: &ServeArgs) -> anyhow::Result<Option<Traces>> {
    let Some(endpoint) = &args.otel_endpoint else {
        return Ok(None);
    };
    let parsed = endpoint
        .parse::<http::Uri>()
        .ok()
        .filter(|uri| matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some())
        .with_context(|| format!("--otel-endpoint '{endpoint}' is not an http(s) URL"))?;
    if parsed.scheme_str() == Some("https") {
        anyhow::bail!(
            "--otel-endpoint: https export is not built in yet; use a local collector over http"
        );
    }
    Traces::start(&TraceSettings {
        endpoint: endpoint.clone(),
        sample_ratio: args.otel_sample_ratio,
        queue: usize::try_from(args.otel_queue).unwrap_or(usize::MAX),
        service_name: args.otel_service_name.clone(),
    })
    .map(Some)
}

/// Parses the command line; with `--config` (or `ALGA_CONFIG`) the file's values become the
/// settings' defaults, so the environment and flags override them, and the command line is
/// parsed again on top.
fn parse_cli() -> anyhow::Result<(Cli, ArgMatches, Option<ConfigFile>)> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    let path = match &cli.command {
        Command::Serve(args) | Command::Config(ConfigCommand::Print(args)) => args.config.clone(),
        _ => None,
    };
    let Some(path) = path else {
        return Ok((cli, matches, None));
    };
    let command = Cli::command();
    let serve = command
        .find_subcommand("serve")
        .context("the CLI has a serve command")?;
    let file = ConfigFile::load(&path, serve)?;
    let command = command
        .mut_subcommand("serve", |serve| file.apply(serve))
        .mut_subcommand("config", |config| {
            config.mut_subcommand("print", |print| file.apply(print))
        });
    let matches = command.get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    Ok((cli, matches, Some(file)))
}

/// `alga-edge config …`.
fn config(command: &ConfigCommand, matches: &ArgMatches, file: Option<&ConfigFile>) {
    let cli = Cli::command();
    let serve = cli
        .find_subcommand("serve")
        .expect("the CLI has a serve command");
    match command {
        ConfigCommand::Example => print!("{}", config_file::example(serve)),
        ConfigCommand::Print(_) => {
            let print_matches = matches
                .subcommand_matches("config")
                .and_then(|config| config.subcommand_matches("print"))
                .expect("parsed as config print");
            print!("{}", config_file::print(serve, print_matches, file));
        }
    }
}

fn main() -> anyhow::Result<()> {
    let (cli, matches, file) = parse_cli()?;
    if let Command::Config(command) = &cli.command {
        config(command, &matches, file.as_ref());
        return Ok(());
    }
    let _flush_log = init_tracing(cli.log_format);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // Look for I/O events every 8 task polls, not every 61 (tokio's default). A guest's poll
    // can last a whole CPU slice (2 ms), so with the default a node busy with spinning guests
    // noticed new connections and response writes only every 61 slices: another tenant's hello
    // took 0.5-2 s while one tenant spun 64 instances (issue 21, item 6). Every poll (1) cost
    // 12% of warm-request throughput in bench/run.sh; 8 cost none measurable. A guest that used
    // up its slice yields as if it were that many polls (see `RUNTIME_EVENT_INTERVAL`), so under
    // spinning guests a worker looks for I/O once per slice (2 ms), not once per 8 (16 ms).
    builder
        .enable_all()
        .event_interval(alga_edge_engine::config::RUNTIME_EVENT_INTERVAL);
    let runtime = builder.build().context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve(args) => {
            let traces = start_traces(&args)?;
            let stats = traces.as_ref().map(|traces| traces.stats.clone());
            let served = runtime.block_on(serve(*args, stats));
            drop(runtime);
            if let Some(traces) = traces {
                traces.shutdown();
            }
            served
        }
        Command::Demo(args) => runtime.block_on(cmd::demo::run(args)),
        Command::Config(_) => unreachable!("handled before the runtime starts"),
        Command::Token {
            tenant,
            user,
            user_profile,
            scopes,
            ttl_secs,
            data_dir,
        } => {
            let profile = user_profile
                .map(|json| serde_json::from_str(&json))
                .transpose()
                .context("--user-profile must be a JSON object of the user's fields")?;
            let token = DevTokenIssuer::open(&data_dir)?.mint(
                &tenant,
                user.as_deref(),
                profile,
                scopes,
                Duration::from_secs(ttl_secs),
            )?;
            println!("{token}");
            Ok(())
        }
        // Blocking HTTP client: runs outside the async runtime.
        Command::Remote(command) => cmd::remote::run(command),
        Command::Ext(command) => cmd::ext::run(command),
        Command::Keygen { out, force } => {
            let key = authoring::keygen(&out, force)?;
            println!("private key: {}", key.private_key.display());
            println!(
                "public key:  {} (add it to the node's SIGNING_TRUST_BUNDLE)",
                key.public_key.display()
            );
            println!("fingerprint: {}", key.fingerprint);
            Ok(())
        }
        Command::Pack { ext_dir, out } => {
            let packed = authoring::pack(&ext_dir, out.as_deref())?;
            println!(
                "{} {}@{} {}",
                packed.content_hash,
                packed.name,
                packed.version,
                packed.path.display()
            );
            Ok(())
        }
        Command::Sign { bundle, key, out } => {
            let path = authoring::sign(&bundle, &key, out.as_deref())?;
            println!("{}", path.display());
            Ok(())
        }
    }
}

async fn serve(
    args: ServeArgs,
    trace_stats: Option<std::sync::Arc<alga_edge::traces::TraceStats>>,
) -> anyhow::Result<()> {
    if let Some(path) = &args.config {
        tracing::info!(config = %path.display(), "configuration file");
    }
    let engine = engine_config(&args)?;
    let policy = policy_config(&args)?;
    tracing::info!(
        memory_budget_mib = engine.memory_budget_bytes >> 20,
        tenant_memory_share = args.tenant_memory_share,
        instance_memory_mib = args.memory_limit_mib,
        cpu_slots = engine.cpu_slots,
        "admission limits"
    );
    let role = role(args.role, args.primary.clone())?;
    let node = cmd::node::start(NodeSettings {
        listen: args.listen,
        policy,
        data_dir: args.data_dir,
        engine,
        dev_components: args.components,
        dev_tenant: args.dev_tenant,
        trust_bundle: args.trust_bundle,
        admin_token: args.admin_token,
        secrets_key: args.secrets_key,
        tenant_jwt_public_key: args.tenant_jwt_public_key,
        tenant_jwt_hs256_secret: args.tenant_jwt_hs256_secret,
        tenant_token_max_ttl: Duration::from_secs(args.tenant_token_max_ttl_secs),
        max_bundle_bytes: (args.max_bundle_mib << 20) as usize,
        bundle_store: args.bundle_store,
        service_token: args.service_token,
        metrics_token: args.metrics_token,
        ui_frame_ancestors: frame_ancestors(&args.ui_frame_ancestors, args.public_base.as_deref())?,
        ui_cache_bytes: args.ui_cache_mib << 20,
        host_page: None,
        egress_allowlist: args
            .egress_allowlist
            .as_deref()
            .map(Allowlist::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("EXT_EGRESS_ALLOWLIST: {e}"))?,
        capabilities: CapabilityLimits {
            kv_max_keys: args.kv_max_keys,
            egress: EgressLimits {
                max_requests: args.egress_max_requests,
                max_response_bytes: args.egress_max_response_kib << 10,
                timeout: Duration::from_millis(args.egress_timeout_ms),
            },
            ..CapabilityLimits::default()
        },
        platform: platform_settings(PlatformSettings {
            base_url: args
                .platform_url
                .or_else(|| env_setting("REGISTRY_BASE_URL")),
            token: args
                .platform_token
                .or_else(|| env_setting("RUNNER_SERVICE_TOKEN")),
            timeout: Duration::from_millis(args.platform_timeout_ms),
            max_response_bytes: args.platform_max_response_kib << 10,
            max_calls: args.platform_max_calls,
            ui_proxy_base: args.ui_proxy_base_url,
            ui_proxy_auth_key: args.ui_proxy_auth_key.filter(|k| !k.trim().is_empty()),
            ui_proxy_timeout: Duration::from_millis(args.ui_proxy_timeout_ms),
        })?,
        execution_log: ExecutionLogConfig {
            queue: args.execution_log_queue as usize,
            retention: Duration::from_secs(args.execution_log_retention_days * 86_400),
        },
        tail: TailConfig {
            buffer: args.tail_buffer as usize,
            max_subscribers: args.tail_max_subscribers as usize,
        },
        role,
        schedules: ScheduleSettings {
            limits: ScheduleLimits {
                max_per_install: args.schedule_max_per_install,
                min_interval_secs: args.schedule_min_interval_secs,
            },
            trigger: TriggerConfig {
                max_parallel: args.schedule_max_parallel as usize,
                clock_offset_secs: args.schedule_clock_offset_secs,
                ..TriggerConfig::default()
            },
        },
        sync_token: args.sync_token,
        trace_stats,
        replication: ReplicationSettings {
            sync_interval: Duration::from_millis(args.sync_interval_ms),
            max_staleness: Duration::from_millis(args.max_staleness_ms),
            max_wal_frames: args.replication_max_wal_frames,
            keep_generations: args.replication_keep_generations,
            bundle_cache_bytes: args.bundle_cache_mib << 20,
        },
    })
    .await?;
    // Tests and scripts read this line to learn the port when --listen uses port 0.
    println!("alga-edge listening on http://{}", node.addr);
    cmd::node::run(node).await
}

/// The engine's limits and caches from `serve`'s flags.
fn engine_config(args: &ServeArgs) -> anyhow::Result<EngineConfig> {
    let instance = args.memory_limit_mib << 20;
    let share = f64::from(args.tenant_memory_share) / 100.0;
    let memory_budget_bytes = match args.memory_budget_mib {
        Some(mib) => {
            let budget = mib << 20;
            anyhow::ensure!(
                (budget as f64 * share) as u64 >= instance,
                "--memory-budget-mib {mib} with --tenant-memory-share {}% leaves a tenant less \
                 than one instance's --memory-limit-mib {}: no request could run",
                args.tenant_memory_share,
                args.memory_limit_mib
            );
            budget
        }
        // A machine too small for the derived budget still runs one instance per tenant.
        None => {
            alga_edge_engine::default_memory_budget().max((instance as f64 / share).ceil() as u64)
        }
    };
    Ok(EngineConfig {
        memory_budget_bytes,
        tenant_memory_share: share,
        timeout: Duration::from_millis(args.timeout_ms),
        memory_limit_bytes: args.memory_limit_mib << 20,
        max_instances: args.max_instances,
        max_response_bytes: args.max_response_mib << 20,
        decommit_batch: args.pool_decommit_batch as usize,
        pool_memory_keep_resident: (args.pool_memory_keep_resident_kib << 10) as usize,
        pool_table_keep_resident: (args.pool_table_keep_resident_kib << 10) as usize,
        pool_pagemap_scan: args.pool_pagemap_scan,
        reuse: alga_edge_engine::ReuseConfig {
            max_requests: args.instance_reuse,
            idle_timeout: Duration::from_millis(args.instance_idle_ms),
            max_idle_bytes: args.instance_idle_mib << 20,
        },
        epoch_tick: Duration::from_millis(args.cpu_slice_ms),
        cpu_slots: args
            .cpu_slots
            .map_or_else(alga_edge_engine::config::default_cpu_slots, |n| n as usize),
        cache_dir: (!args.no_disk_cache).then(|| {
            args.cache_dir
                .clone()
                .unwrap_or_else(|| args.data_dir.join("compiled"))
        }),
        ..EngineConfig::default()
    })
}

/// The gateway's policies from `serve`'s flags.
fn policy_config(args: &ServeArgs) -> anyhow::Result<PolicyConfig> {
    anyhow::ensure!(
        args.tenant_rate >= 0.0 && args.tenant_rate.is_finite(),
        "--tenant-rate must be a finite number >= 0"
    );
    anyhow::ensure!(
        args.tenant_burst >= 1.0 && args.tenant_burst.is_finite(),
        "--tenant-burst must be a finite number >= 1"
    );
    Ok(PolicyConfig {
        instance_reuse: args.instance_reuse,
        cpu_budget: (args.cpu_budget_ms > 0).then(|| Duration::from_millis(args.cpu_budget_ms)),
        max_body_bytes: args.max_body_kib << 10,
        max_headers: args.max_headers as usize,
        max_header_bytes: (args.max_header_kib as usize) << 10,
        tenant_concurrency: args.tenant_concurrency,
        extension_concurrency: args.extension_concurrency,
        tenant_rate_per_sec: args.tenant_rate,
        tenant_rate_burst: args.tenant_burst,
        enforce_endpoints: args.enforce_endpoints,
    })
}

/// The node's role from `--role` and `--primary`.
fn role(role: RoleArg, primary: Option<String>) -> anyhow::Result<Role> {
    Ok(match (role, primary) {
        (RoleArg::Primary, None) => Role::Primary,
        (RoleArg::Primary, Some(_)) => {
            anyhow::bail!("--primary is for edges: add --role edge, or drop --primary")
        }
        (RoleArg::Edge, Some(primary)) => {
            anyhow::ensure!(
                primary.starts_with("http://") || primary.starts_with("https://"),
                "--primary must be an http:// or https:// URL, got '{primary}'"
            );
            Role::Edge { primary }
        }
        (RoleArg::Edge, None) => anyhow::bail!("an edge needs --primary URL"),
    })
}

/// CSP sources from `EXT_UI_FRAME_ANCESTORS` entries and `RUNNER_PUBLIC_BASE`'s origin; each
/// must be an origin (`scheme://host[:port]`), so nothing can inject other directives.
fn frame_ancestors(entries: &[String], public_base: Option<&str>) -> anyhow::Result<Vec<String>> {
    let mut sources = Vec::new();
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let uri: http::Uri = entry
            .parse()
            .map_err(|_| anyhow::anyhow!("EXT_UI_FRAME_ANCESTORS: '{entry}' is not an origin"))?;
        let origin_only = uri.path() == "/" && !entry.ends_with('/') && uri.query().is_none();
        match (uri.scheme_str(), uri.authority()) {
            (Some("http" | "https"), Some(_)) if origin_only => sources.push(entry.to_owned()),
            _ => anyhow::bail!(
                "EXT_UI_FRAME_ANCESTORS: '{entry}' is not an origin (use scheme://host[:port])"
            ),
        }
    }
    if let Some(base) = public_base {
        let uri: http::Uri = base
            .parse()
            .map_err(|_| anyhow::anyhow!("RUNNER_PUBLIC_BASE: '{base}' is not a URL"))?;
        match (uri.scheme_str(), uri.authority()) {
            (Some(scheme @ ("http" | "https")), Some(authority)) => {
                sources.push(format!("{scheme}://{authority}"))
            }
            _ => anyhow::bail!("RUNNER_PUBLIC_BASE: '{base}' is not an http(s) URL"),
        }
    }
    Ok(sources)
}

fn init_tracing(format: LogFormat) -> alga_edge::log_writer::FlushOnDrop {
    let (writer, flush) = alga_edge::log_writer::BufferedStderr::start();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn")
    });
    // Colour only for a person at a terminal; log files and collectors get plain text.
    let ansi = std::io::stderr().is_terminal();
    if !ansi {
        let format = match format {
            LogFormat::Text => alga_edge::log_writer::LineFormat::Text,
            LogFormat::Json => alga_edge::log_writer::LineFormat::Json,
        };
        alga_edge::log_writer::NodeLog::install(writer.clone(), format);
    }
    let builder = tracing_subscriber::fmt()
        .with_ansi(ansi)
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    flush
}

/// A non-empty environment variable: the fallback names of Alga's runner settings, which a
/// clap argument (one `env` name each) cannot carry.
fn env_setting(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `settings`, refused when a platform URL could never be called.
fn platform_settings(settings: PlatformSettings) -> anyhow::Result<PlatformSettings> {
    settings.check()?;
    Ok(settings)
}
