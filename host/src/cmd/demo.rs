//! `alga-edge demo`: a node on embedded defaults with the sample extensions published and
//! installed for a demo tenant, ready to call. Re-running reuses the data directory: keys stay,
//! unchanged samples are not republished, installs move to the samples' current versions.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use alga_edge::authoring;
use alga_edge_engine::config::EngineConfig;
use alga_edge_gateway::policy::PolicyConfig;
use alga_edge_gateway::telemetry::{ExecutionLogConfig, TailConfig};
use alga_edge_gateway::tenant_auth::DevTokenIssuer;
use alga_edge_registry::manifest::Manifest;
use alga_edge_registry::{InstallRequest, RegistryError};

use super::node::{self, Node, NodeSettings};

/// Options of `alga-edge demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Address to listen on.
    #[arg(long, env = "ALGA_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Data directory [default: $XDG_DATA_HOME/alga-edge/demo or ~/.local/share/alga-edge/demo].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Folder of sample extension folders (each with manifest.json and dist/main.wasm), as
    /// scripts/build-components.sh lays them out.
    #[arg(
        long,
        env = "ALGA_SAMPLES_DIR",
        default_value = "target/components/extensions"
    )]
    pub samples: PathBuf,
    /// Directory of precompiled components [default: <data-dir>/compiled].
    #[arg(long, env = "ALGA_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Tenant the samples are installed for.
    #[arg(long, default_value = "demo-tenant")]
    pub tenant: String,
}

/// How long the printed demo token stays valid.
const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Runs the demo until interrupted.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let keys = data_dir.join("keys");
    let publisher_key = keys.join("publisher.pem");
    if !publisher_key.exists() {
        authoring::keygen(&keys, false)?;
    }
    // The host page gets the tenant token; the node's dev key is created on first use, so the
    // token can be minted before the node starts.
    let token = DevTokenIssuer::open(&data_dir)?.mint(
        &args.tenant,
        Some("demo-user"),
        None,
        Vec::new(),
        TOKEN_TTL,
    )?;
    let node = node::start(NodeSettings {
        ui_frame_ancestors: Vec::new(),
        ui_cache_bytes: 256 << 20,
        host_page: Some((args.tenant.clone(), token.clone())),
        listen: args.listen,
        engine: EngineConfig {
            cache_dir: Some(args.cache_dir.unwrap_or_else(|| data_dir.join("compiled"))),
            ..EngineConfig::default()
        },
        policy: PolicyConfig::default(),
        dev_components: Vec::new(),
        dev_tenant: args.tenant.clone(),
        trust_bundle: Some(keys.join("publisher.pub.pem").display().to_string()),
        admin_token: None,
        secrets_key: None,
        tenant_jwt_public_key: None,
        tenant_jwt_hs256_secret: None,
        // The host page's token lives exactly this long.
        tenant_token_max_ttl: TOKEN_TTL,
        max_bundle_bytes: 64 << 20,
        bundle_store: None,
        service_token: None,
        metrics_token: None,
        egress_allowlist: None,
        capabilities: Default::default(),
        platform: Default::default(),
        execution_log: ExecutionLogConfig::default(),
        tail: TailConfig::default(),
        role: node::Role::Primary,
        sync_token: None,
        trace_stats: None,
        replication: node::ReplicationSettings::default(),
        schedules: node::ScheduleSettings::default(),
        data_dir: data_dir.clone(),
    })
    .await?;

    let samples = sample_dirs(&args.samples)?;
    let mut names = Vec::new();
    for sample in &samples {
        names.push(
            publish_and_install(&node, &data_dir, sample, &publisher_key, &args.tenant).await?,
        );
    }
    println!("alga-edge listening on http://{}", node.addr);
    println!("data directory: {}", data_dir.display());
    for name in &names {
        println!("{name} http://{}/api/ext/{name}/", node.addr);
    }
    println!("tenant {} token: {token}", args.tenant);
    println!(
        "host page http://{}/ (extension UIs in sandboxed iframes)",
        node.addr
    );
    // Point at the friendliest sample for a first request.
    let first = names
        .iter()
        .find(|n| n.ends_with(".hello"))
        .or(names.first());
    if let Some(first) = first {
        println!(
            "try: curl -H \"authorization: Bearer $TOKEN\" http://{}/api/ext/{first}/",
            node.addr
        );
    }
    node::run(node).await
}

/// Packs, signs, publishes (unless already published) and installs one sample; returns its name.
async fn publish_and_install(
    node: &Node,
    data_dir: &Path,
    sample: &Path,
    key: &Path,
    tenant: &str,
) -> anyhow::Result<String> {
    let packed_dir = data_dir.join("packed");
    std::fs::create_dir_all(&packed_dir)?;
    let manifest = Manifest::parse(
        &std::fs::read(sample.join("manifest.json"))
            .with_context(|| format!("cannot read {}/manifest.json", sample.display()))?,
    )?;
    let out = packed_dir.join(format!("{}-{}.tar.zst", manifest.name, manifest.version));
    let packed = authoring::pack(sample, Some(&out))?;
    let signature_path = authoring::sign(&packed.path, key, None)?;
    let bytes = std::fs::read(&packed.path)?;
    let signature = std::fs::read_to_string(&signature_path)?;
    let trust = node
        .trust
        .as_ref()
        .context("the demo node has no trust bundle")?;
    match node
        .registry
        .publish(&bytes, &signature, trust, &node.store)
        .await
    {
        Ok(published) if published.created => tracing::info!(name = %published.name,
            version = %published.version, content_hash = %published.content_hash, "sample published"),
        Ok(_) => {}
        // The sample changed without a version bump: keep serving what was published.
        Err(RegistryError::VersionConflict { existing, .. }) => tracing::warn!(
            name = %manifest.name, version = %manifest.version, %existing,
            "sample changed since it was published under this version; bump its version to republish"
        ),
        Err(e) => return Err(e.into()),
    }

    let registry = &node.registry;
    match registry.install_of(tenant, &manifest.name).await? {
        None => {
            registry
                .install(&InstallRequest {
                    tenant: tenant.to_owned(),
                    extension: manifest.name.clone(),
                    version: manifest.version.clone(),
                    grants: manifest.capability_set().into_iter().collect(),
                    ..InstallRequest::default()
                })
                .await?;
        }
        Some(install) => {
            if install.version != manifest.version {
                registry
                    .update(tenant, &manifest.name, &manifest.version)
                    .await?;
            }
            if !install.enabled {
                registry.set_enabled(tenant, &manifest.name, true).await?;
            }
        }
    }
    Ok(manifest.name)
}

/// Sample folders (those with a manifest.json), sorted.
fn sample_dirs(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(root).with_context(|| {
        format!(
            "cannot read the samples folder {} (build them with scripts/build-components.sh, \
             or pass --samples)",
            root.display()
        )
    })?;
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        anyhow::bail!(
            "no sample extension (a folder with manifest.json) in {}",
            root.display()
        );
    }
    Ok(dirs)
}

/// The per-user data directory of the demo.
fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".local/share"))
        })
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("alga-edge").join("demo")
}
