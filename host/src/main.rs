//! `alga-edge`: the edge node binary.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use alga_edge::authoring;
use alga_edge::catalog::DevCatalog;
use alga_edge::config::EngineConfig;
use alga_edge::engine::Engine;
use alga_edge::gateway::Gateway;
use alga_edge::server::{self, App};

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
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway (`/api/ext/{extensionId}/…`) and `/healthz`.
    Serve(ServeArgs),
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

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the chosen address is printed).
    #[arg(long, env = "ALGA_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Dev shortcut: serve the component at PATH as extension ID for the dev tenant. Repeatable.
    #[arg(long = "component", value_name = "ID=PATH")]
    components: Vec<String>,
    /// Tenant that dev-mapped components run for.
    #[arg(long, env = "ALGA_DEV_TENANT", default_value = "dev-tenant")]
    dev_tenant: String,
    /// Node data directory (precompiled components live in `<data-dir>/compiled`).
    #[arg(long, env = "ALGA_DATA_DIR", default_value = ".alga-edge")]
    data_dir: PathBuf,
    /// Directory of precompiled components [default: <data-dir>/compiled].
    #[arg(long, env = "ALGA_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Keep compiled components in memory only.
    #[arg(long, env = "ALGA_NO_DISK_CACHE")]
    no_disk_cache: bool,
    /// Per-request deadline in milliseconds (504 past it).
    #[arg(long, env = "EXT_GATEWAY_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// Memory cap of each instance's linear memory, in MiB (502 past it).
    #[arg(long, env = "EXT_MEMORY_LIMIT_MIB", default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=4096))]
    memory_limit_mib: u64,
    /// Instances running at once on this node (503 past it).
    #[arg(long, env = "EXT_MAX_INSTANCES", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10000))]
    max_instances: u32,
    /// Largest response body an extension may stream, in MiB.
    #[arg(long, env = "EXT_MAX_RESPONSE_MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    max_response_mib: u64,
    /// Freed instance memories returned to the OS per batch (1 = immediately; see README).
    #[arg(long, env = "EXT_POOL_DECOMMIT_BATCH", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    pool_decommit_batch: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
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

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = EngineConfig {
        timeout: Duration::from_millis(args.timeout_ms),
        memory_limit_bytes: args.memory_limit_mib << 20,
        max_instances: args.max_instances,
        max_response_bytes: args.max_response_mib << 20,
        decommit_batch: args.pool_decommit_batch as usize,
        cache_dir: (!args.no_disk_cache).then(|| {
            args.cache_dir
                .unwrap_or_else(|| args.data_dir.join("compiled"))
        }),
        ..EngineConfig::default()
    };
    let catalog = DevCatalog::from_specs(&args.dev_tenant, &args.components)?;
    if args.components.is_empty() {
        tracing::warn!(
            "no extensions mapped: every /api/ext request will answer 404 (use --component ID=PATH)"
        );
    }
    let engine = Arc::new(Engine::new(config)?);
    let gateway = Gateway::new(engine.clone(), catalog);
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

    let listener = server::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to learn the port when --listen uses port 0.
    println!("alga-edge listening on http://{addr}");
    server::serve(listener, Arc::new(App::new(gateway)), shutdown_signal()).await?;
    Ok(())
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

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn")
    });
    // Colour only for a person at a terminal; log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
