//! Commands that talk to a primary's admin API: publish, install, uninstall, enable, disable,
//! update, list, `keys` (who may publish an extension name) and `schedules` ([`super::schedules`]).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use alga_edge::admin::{ADMIN_PREFIX, SIGNATURE_HEADER};
use alga_edge_registry::InstallPolicy;
use alga_edge_registry::signing::SigningKey;

/// Where the admin API is and how to authenticate to it.
#[derive(clap::Args, Clone)]
pub struct RegistryArgs {
    /// Base URL of the primary node.
    #[arg(
        long,
        env = "ALGA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub registry: String,
    /// Admin token [default: read from <data-dir>/keys/admin.token of a local node].
    #[arg(long, env = "ALGA_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Data directory of a local node, used to find its admin token when --token is absent.
    #[arg(long, env = "ALGA_DATA_DIR", default_value = ".alga-edge")]
    pub data_dir: PathBuf,
    /// Print the API's JSON answer instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// A client of one node's admin API.
pub struct AdminClient {
    base: String,
    token: String,
    agent: ureq::Agent,
    json: bool,
}

impl AdminClient {
    /// A client from the command line's registry options.
    pub fn new(args: &RegistryArgs) -> anyhow::Result<Self> {
        let token = match &args.token {
            Some(token) => token.clone(),
            None => {
                let path = super::node::key_path(&args.data_dir, "admin.token");
                std::fs::read_to_string(&path)
                    .map(|t| t.trim().to_owned())
                    .with_context(|| {
                        format!(
                            "no --token (ALGA_ADMIN_TOKEN) given and cannot read {}",
                            path.display()
                        )
                    })?
            }
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into();
        Ok(Self {
            base: args.registry.trim_end_matches('/').to_owned(),
            token,
            agent,
            json: args.json,
        })
    }

    /// Uploads a bundle and its detached signature.
    pub fn publish(&self, bundle: &Path, signature: &Path) -> anyhow::Result<Value> {
        let signature = std::fs::read_to_string(signature)
            .with_context(|| format!("cannot read the signature {}", signature.display()))?;
        let file = std::fs::File::open(bundle)
            .with_context(|| format!("cannot open the bundle {}", bundle.display()))?;
        let size = file.metadata()?.len();
        let progress = indicatif::ProgressBar::new(size);
        if std::io::stderr().is_terminal() {
            progress.set_style(
                indicatif::ProgressStyle::with_template(
                    "uploading {bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
                )
                .expect("static template is valid"),
            );
        } else {
            progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let mut reader = progress.wrap_read(file);
        let url = self.url("bundles");
        let response = self
            .agent
            .post(&url)
            .header("authorization", &format!("Bearer {}", self.token))
            .header(SIGNATURE_HEADER, signature.trim())
            .header("content-type", "application/zstd")
            .header("content-length", &size.to_string())
            .send(ureq::SendBody::from_reader(&mut reader));
        progress.finish_and_clear();
        self.answer("POST", &url, response)
    }

    /// Calls `method path` with an optional JSON body.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = self.url(path);
        let auth = format!("Bearer {}", self.token);
        let response = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("authorization", &auth).call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("authorization", &auth)
                .call(),
            ("POST", Some(body)) => self
                .agent
                .post(&url)
                .header("authorization", &auth)
                .send_json(body),
            ("POST", None) => self
                .agent
                .post(&url)
                .header("authorization", &auth)
                .send_empty(),
            ("PATCH", Some(body)) => self
                .agent
                .patch(&url)
                .header("authorization", &auth)
                .send_json(body),
            _ => bail!("unsupported admin call {method} {path}"),
        };
        self.answer(method, &url, response)
    }

    /// `GET path` as a stream that stays open (the live tail): no overall deadline, only a
    /// connect one; a refusal is an error with the API's message.
    pub fn stream(&self, path: &str) -> anyhow::Result<impl std::io::Read + use<>> {
        let url = self.url(path);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .into();
        let response = agent
            .get(&url)
            .header("authorization", &format!("Bearer {}", self.token))
            .header("accept", "text/event-stream")
            .call();
        let response = response.with_context(|| format!("GET {url}: the node is unreachable"))?;
        if !response.status().is_success() {
            self.answer("GET", &url, Ok(response))?;
            bail!("GET {url}: refused");
        }
        Ok(response.into_body().into_reader())
    }

    /// Prints `answer` as JSON with --json, else runs `summary`.
    pub fn show(&self, answer: &Value, summary: impl FnOnce()) {
        if self.json {
            println!("{answer:#}");
        } else {
            summary();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{ADMIN_PREFIX}{path}", self.base)
    }

    fn answer(
        &self,
        method: &str,
        url: &str,
        response: Result<http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Value> {
        let mut response =
            response.with_context(|| format!("{method} {url}: the registry is unreachable"))?;
        let status = response.status();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let mut message = body
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| body.to_string());
            // A refused schedule names each field at fault.
            if let Some(fields) = body.get("fields").and_then(Value::as_object) {
                for (field, problem) in fields {
                    message.push_str(&format!("\n  {field}: {}", problem.as_str().unwrap_or("?")));
                }
            }
            bail!("{method} {url}: HTTP {}: {message}", status.as_u16());
        }
        Ok(body)
    }
}

/// `K=V` pairs from repeated flags, refusing malformed or duplicate keys.
fn key_values(pairs: &[String], flag: &str) -> anyhow::Result<Value> {
    let mut map = serde_json::Map::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            bail!("invalid {flag} '{pair}': expected KEY=VALUE");
        };
        if map.insert(key.to_owned(), json!(value)).is_some() {
            bail!("{flag} '{key}' is given more than once");
        }
    }
    Ok(Value::Object(map))
}

/// One line per install.
fn print_installs(installs: &[Value]) {
    if installs.is_empty() {
        println!("(no installs)");
    }
    for install in installs {
        println!(
            "{}@{} {} grants=[{}]",
            install["extension"].as_str().unwrap_or("?"),
            install["version"].as_str().unwrap_or("?"),
            if install["enabled"].as_bool() == Some(true) {
                "enabled"
            } else {
                "disabled"
            },
            install["grants"]
                .as_array()
                .map(|g| g
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
        );
    }
}

/// One line per published version.
fn print_extensions(extensions: &[Value]) {
    if extensions.is_empty() {
        println!("(no extensions published)");
    }
    for extension in extensions {
        let name = extension["name"].as_str().unwrap_or("?");
        let publisher = extension["publisher"].as_str().unwrap_or("?");
        for version in extension["versions"].as_array().into_iter().flatten() {
            println!(
                "{name}@{} {} publisher={publisher} signer={}{}",
                version["version"].as_str().unwrap_or("?"),
                version["content_hash"].as_str().unwrap_or("?"),
                version["signer"].as_str().unwrap_or("?"),
                if version["deprecated"].as_bool() == Some(true) {
                    " (deprecated)"
                } else {
                    ""
                }
            );
        }
    }
}

/// A tenant on a registry.
#[derive(clap::Args)]
pub struct TenantArgs {
    /// Tenant id.
    #[arg(long)]
    pub tenant: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// The admin API client commands.
#[derive(clap::Subcommand)]
pub enum RemoteCommand {
    /// Upload a signed bundle to a primary's registry.
    Publish {
        /// The bundle (.tar.zst).
        bundle: PathBuf,
        /// Its detached signature [default: <bundle>.sig].
        #[arg(long)]
        signature: Option<PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Install an extension version for a tenant.
    Install {
        /// Extension id (manifest name).
        extension: String,
        /// Version to install.
        #[arg(long)]
        version: String,
        #[command(flatten)]
        target: TenantArgs,
        /// Capability to grant (must be requested by the manifest). Repeatable.
        #[arg(long = "grant", value_name = "CAP")]
        grants: Vec<String>,
        /// Config entry. Repeatable.
        #[arg(long = "config", value_name = "K=V")]
        config: Vec<String>,
        /// Secret (sealed at rest, never shown again). Repeatable.
        #[arg(long = "secret", value_name = "K=V")]
        secrets: Vec<String>,
        /// Policy override (max_body_bytes, timeout_ms, max_headers, max_header_bytes,
        /// concurrency, rate_per_sec, rate_burst, enforce_endpoints, egress_allow (comma list),
        /// egress_max_requests, egress_max_response_bytes, egress_timeout_ms, kv_max_keys,
        /// instance_reuse, cpu_budget_ms, schedule_max, schedule_min_interval_secs).
        /// Repeatable.
        #[arg(long = "policy", value_name = "K=V")]
        policy: Vec<String>,
    },
    /// Move a tenant's install to another version and/or change its policy overrides.
    Update {
        /// Extension id.
        extension: String,
        /// Version to move to.
        #[arg(long)]
        version: Option<String>,
        /// Policy override to set, merged into the current ones. Repeatable.
        #[arg(long = "policy", value_name = "K=V")]
        policy: Vec<String>,
        /// Drop every current policy override first (then apply --policy, if any).
        #[arg(long)]
        clear_policy: bool,
        #[command(flatten)]
        target: TenantArgs,
    },
    /// Remove a tenant's install.
    Uninstall {
        /// Extension id.
        extension: String,
        #[command(flatten)]
        target: TenantArgs,
    },
    /// Serve a tenant's install again.
    Enable {
        /// Extension id.
        extension: String,
        #[command(flatten)]
        target: TenantArgs,
    },
    /// Stop serving a tenant's install (its requests answer 404) without removing it.
    Disable {
        /// Extension id.
        extension: String,
        #[command(flatten)]
        target: TenantArgs,
    },
    /// Mark a published version deprecated (installs keep it; new installs are refused).
    Deprecate {
        /// Extension id.
        extension: String,
        /// Version.
        #[arg(long)]
        version: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Let `/ext-ui` serve a version's UI before any tenant installs it (or stop, with --off).
    Preview {
        /// Extension id.
        extension: String,
        /// Version.
        #[arg(long)]
        version: String,
        /// Stop serving it until some tenant installs it.
        #[arg(long)]
        off: bool,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Which keys may publish an extension name: list them, delegate to another key (signed
    /// with the owner's private key), or revoke a delegation.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// A tenant's install schedules: list, create, update, delete, run-now.
    #[command(subcommand)]
    Schedules(super::schedules::ScheduleCommand),
    /// Print a node's live tail of one install: each request's log lines and stdout/stderr as
    /// they happen, then its status and duration (`--registry` names the node, edge or primary).
    Tail(super::tail::TailArgs),
    /// List published extensions, or a tenant's installs with --tenant.
    List {
        /// List this tenant's installs instead.
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

/// `keys …`: publishing rights on an extension name. The name belongs to the key that first
/// published it; a version signed by any other key is refused unless the owner delegated.
#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Show the owner key, delegated keys and the audit trail of an extension name.
    List {
        /// Extension id.
        extension: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Let another key publish versions of an extension (signed with the owner's key).
    Delegate {
        /// Extension id.
        extension: String,
        /// Fingerprint of the key to delegate to (`alga-edge keygen` prints it).
        #[arg(long = "to", value_name = "FINGERPRINT")]
        delegate: String,
        /// The owner's private key (PEM), the key that first published the extension.
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Take publishing rights away from a delegated key (its published versions stay).
    Revoke {
        /// Extension id.
        extension: String,
        /// Fingerprint of the delegated key.
        fingerprint: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

/// Runs one `keys` command.
fn keys(command: KeysCommand) -> anyhow::Result<()> {
    let (client, answer) = match command {
        KeysCommand::List {
            extension,
            registry,
        } => {
            let client = AdminClient::new(&registry)?;
            let answer = client.call("GET", &format!("extensions/{extension}/keys"), None)?;
            (client, answer)
        }
        KeysCommand::Delegate {
            extension,
            delegate,
            key,
            registry,
        } => {
            let pem = std::fs::read_to_string(&key)
                .with_context(|| format!("cannot read the owner key {}", key.display()))?;
            let owner = SigningKey::from_pem(&pem)?;
            let delegation = owner.sign_delegation(&extension, delegate.trim())?;
            let client = AdminClient::new(&registry)?;
            let path = format!("extensions/{extension}/keys");
            let answer = client.call("POST", &path, Some(json!({ "delegation": delegation })))?;
            (client, answer)
        }
        KeysCommand::Revoke {
            extension,
            fingerprint,
            registry,
        } => {
            let client = AdminClient::new(&registry)?;
            let path = format!("extensions/{extension}/keys/{fingerprint}");
            let answer = client.call("DELETE", &path, None)?;
            (client, answer)
        }
    };
    client.show(&answer, || {
        println!(
            "{} owner={}",
            answer["extension"].as_str().unwrap_or("?"),
            answer["owner"].as_str().unwrap_or("?")
        );
        for delegate in answer["delegates"].as_array().into_iter().flatten() {
            println!(
                "  delegate {}",
                delegate["fingerprint"].as_str().unwrap_or("?")
            );
        }
    });
    Ok(())
}

/// Runs one admin API client command, printing a summary (or the JSON answer with --json).
pub fn run(command: RemoteCommand) -> anyhow::Result<()> {
    match command {
        RemoteCommand::Publish {
            bundle,
            signature,
            registry,
        } => publish(&bundle, signature, &registry),
        RemoteCommand::Install {
            extension,
            version,
            target,
            grants,
            config,
            secrets,
            policy,
        } => {
            let client = AdminClient::new(&target.registry)?;
            let body = json!({
                "extension": extension,
                "version": version,
                "grants": grants,
                "config": key_values(&config, "--config")?,
                "secrets": key_values(&secrets, "--secret")?,
                "policy": apply_policy(InstallPolicy::default(), &policy)?,
            });
            let path = format!("tenants/{}/installs", target.tenant);
            let answer = client.call("POST", &path, Some(body))?;
            client.show(&answer, || println!("installed {}", install_line(&answer)));
            Ok(())
        }
        RemoteCommand::Update {
            extension,
            version,
            policy,
            clear_policy,
            target,
        } => update(&extension, version, &policy, clear_policy, &target),
        RemoteCommand::Uninstall { extension, target } => {
            let client = AdminClient::new(&target.registry)?;
            let path = format!("tenants/{}/installs/{extension}", target.tenant);
            let answer = client.call("DELETE", &path, None)?;
            client.show(&answer, || {
                println!("uninstalled {extension} for tenant {}", target.tenant)
            });
            Ok(())
        }
        RemoteCommand::Enable { extension, target } => toggle(&extension, &target, "enable"),
        RemoteCommand::Disable { extension, target } => toggle(&extension, &target, "disable"),
        RemoteCommand::Deprecate {
            extension,
            version,
            registry,
        } => {
            let client = AdminClient::new(&registry)?;
            let path = format!("extensions/{extension}/versions/{version}/deprecate");
            let answer = client.call("POST", &path, None)?;
            client.show(&answer, || println!("deprecated {extension}@{version}"));
            Ok(())
        }
        RemoteCommand::Preview {
            extension,
            version,
            off,
            registry,
        } => {
            let client = AdminClient::new(&registry)?;
            let path = format!("extensions/{extension}/versions/{version}/preview");
            let method = if off { "DELETE" } else { "POST" };
            let answer = client.call(method, &path, None)?;
            client.show(&answer, || {
                let state = if off {
                    "not previewable"
                } else {
                    "previewable"
                };
                println!("{extension}@{version} {state}")
            });
            Ok(())
        }
        RemoteCommand::Keys(command) => keys(command),
        RemoteCommand::Schedules(command) => super::schedules::run(command),
        RemoteCommand::Tail(args) => super::tail::run(args),
        RemoteCommand::List { tenant, registry } => list(tenant.as_deref(), &registry),
    }
}

/// `publish BUNDLE`: sends the bundle with its detached signature (default `BUNDLE.sig`).
fn publish(
    bundle: &Path,
    signature: Option<PathBuf>,
    registry: &RegistryArgs,
) -> anyhow::Result<()> {
    let client = AdminClient::new(registry)?;
    let signature = signature.unwrap_or_else(|| {
        let mut name = bundle.as_os_str().to_owned();
        name.push(".sig");
        PathBuf::from(name)
    });
    let answer = client.publish(bundle, &signature)?;
    client.show(&answer, || {
        let note = if answer["created"].as_bool() == Some(false) {
            "already published"
        } else {
            "published"
        };
        println!(
            "{} {}@{} {note}",
            answer["content_hash"].as_str().unwrap_or("?"),
            answer["name"].as_str().unwrap_or("?"),
            answer["version"].as_str().unwrap_or("?"),
        )
    });
    Ok(())
}

/// `update EXTENSION`: a new version and/or policy changes applied to the current policy.
fn update(
    extension: &str,
    version: Option<String>,
    policy: &[String],
    clear_policy: bool,
    target: &TenantArgs,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        version.is_some() || !policy.is_empty() || clear_policy,
        "nothing to update: give --version, --policy or --clear-policy"
    );
    let client = AdminClient::new(&target.registry)?;
    let path = format!("tenants/{}/installs/{extension}", target.tenant);
    let mut body = serde_json::Map::new();
    if let Some(version) = version {
        body.insert("version".into(), json!(version));
    }
    if !policy.is_empty() || clear_policy {
        let current = if clear_policy {
            InstallPolicy::default()
        } else {
            let install = client.call("GET", &path, None)?;
            serde_json::from_value(install["policy"].clone())
                .context("the node answered with a policy this CLI cannot read")?
        };
        body.insert("policy".into(), json!(apply_policy(current, policy)?));
    }
    let answer = client.call("PATCH", &path, Some(Value::Object(body)))?;
    client.show(&answer, || println!("updated {}", install_line(&answer)));
    Ok(())
}

/// `list`: a tenant's installs, or the registry's extensions.
fn list(tenant: Option<&str>, registry: &RegistryArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(registry)?;
    match tenant {
        Some(tenant) => {
            let answer = client.call("GET", &format!("tenants/{tenant}/installs"), None)?;
            client.show(&answer, || {
                print_installs(answer["installs"].as_array().map_or(&[], Vec::as_slice))
            });
        }
        None => {
            let answer = client.call("GET", "extensions", None)?;
            client.show(&answer, || {
                print_extensions(answer["extensions"].as_array().map_or(&[], Vec::as_slice))
            });
        }
    }
    Ok(())
}

fn toggle(extension: &str, target: &TenantArgs, action: &str) -> anyhow::Result<()> {
    let client = AdminClient::new(&target.registry)?;
    let path = format!("tenants/{}/installs/{extension}/{action}", target.tenant);
    let answer = client.call("POST", &path, None)?;
    client.show(&answer, || println!("{action}d {}", install_line(&answer)));
    Ok(())
}

/// `policy` with each `K=V` setting applied.
fn apply_policy(mut policy: InstallPolicy, settings: &[String]) -> anyhow::Result<InstallPolicy> {
    for setting in settings {
        policy.set(setting).context("--policy")?;
    }
    Ok(policy)
}

fn install_line(install: &Value) -> String {
    format!(
        "{}@{} for tenant {} ({})",
        install["extension"].as_str().unwrap_or("?"),
        install["version"].as_str().unwrap_or("?"),
        install["tenant"].as_str().unwrap_or("?"),
        if install["enabled"].as_bool() == Some(true) {
            "enabled"
        } else {
            "disabled"
        }
    )
}
