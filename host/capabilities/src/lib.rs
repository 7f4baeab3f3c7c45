//! Host capabilities: one module per interface a component may import (DESIGN §2). Each module
//! owns its WIT binding, its scoping and its backing store; none knows about HTTP routing.
//!
//! | capability | module | interface |
//! |---|---|---|
//! | (always) | [`context`] | `alga:extension/context` |
//! | `cap:storage.kv` | [`kv`] | `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft` |
//! | `cap:storage.kv` | [`kv_draft2`] | the same `@0.2.0-draft2` (what Spin hosts) |
//! | `cap:config.get` | [`config`] | `wasi:config/store` |
//! | `cap:secrets.get` | [`secrets`] | `alga:extension/secrets` |
//! | `cap:log.emit` | [`logging`] | `wasi:logging/logging` |
//! | `cap:http.fetch` | [`egress`] | `wasi:http/outgoing-handler`, WASIp3 `wasi:http/client` (the send hook) |
//! | `cap:storage.kv`, `cap:config.get` | [`spin`] | Spin SDK's key-value and variables |
//! | Alga's `cap:*` names | [`runner`] | Alga PSA's `runner` world (`alga:extension/*`, unversioned) |
//!
//! Every interface is linked for every component; what an install was not granted answers
//! the interface's own "denied" error at call time and is counted in
//! `alga_capability_denials_total`, so a component built for more than it was granted still
//! runs (and one compiled instance serves every install of a bundle).
//!
//! [`Capabilities`] holds the node-wide services; [`Capabilities::for_request`] turns a
//! [`Grant`] (one install, one request) into the [`RequestCapabilities`] a `Store` carries.
//!
//! Beside the interfaces: [`kv_service`], extension KV data as the node reads and writes it
//! (writes forwarded to the primary on edges), which the KV interfaces and the admin API share;
//! [`schedule_service`], install schedules the same way (Alga's `scheduler` and the admin API);
//! [`capped_body`], a body capped while it streams (inbound requests and egress both ways);
//! [`platform_broker`], calls to the platform's internal API and host-app routes (Alga's
//! `clients`, `services`, `invoicing`, `ui-proxy`).

mod bindings;
pub mod capped_body;
pub mod config;
pub mod context;
pub mod egress;
pub mod journal;
pub mod kv;
pub mod kv_draft2;
pub mod kv_service;
pub mod logging;
pub mod platform_broker;
pub mod runner;
pub mod schedule_service;
pub mod secrets;
pub mod spin;

use std::collections::BTreeMap;
use std::sync::Arc;

use alga_edge_registry::secrets::SecretSealer;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use wasmtime::component::{Linker, ResourceTable};

use crate::kv_service::KvService;
pub use journal::Journal;

/// Manifest capability names (DESIGN §2).
pub mod names {
    /// Outbound HTTP.
    pub const HTTP: &str = "cap:http.fetch";
    /// Key-value storage.
    pub const KV: &str = "cap:storage.kv";
    /// The install's config.
    pub const CONFIG: &str = "cap:config.get";
    /// The install's secrets.
    pub const SECRETS: &str = "cap:secrets.get";
    /// Logging.
    pub const LOG: &str = "cap:log.emit";
    /// The request context (Alga's runner world).
    pub const CONTEXT: &str = "cap:context.read";
    /// The end user (Alga's runner world).
    pub const USER: &str = "cap:user.read";
    /// Calls to the host application's routes.
    pub const UI_PROXY: &str = "cap:ui.proxy";
    /// The install's schedules.
    pub const SCHEDULER: &str = "cap:scheduler.manage";
    /// Manual invoices.
    pub const INVOICING: &str = "cap:invoice.manual.create";
    /// The tenant's clients.
    pub const CLIENTS: &str = "cap:client.read";
    /// The tenant's service catalog.
    pub const SERVICES: &str = "cap:service.read";
    /// Granted to every install whether or not its manifest lists them, as Alga's runner does.
    pub use alga_edge_registry::manifest::DEFAULT_GRANTS;
}

/// Labels of refused capability calls.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabels {
    /// `kv`, `config`, `secrets`, `log`, `http`.
    pub capability: &'static str,
    /// Why (`not_granted`, `not_allowlisted`, `private_address`, `limit`…).
    pub reason: &'static str,
}

/// Labels of per-extension egress series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EgressLabels {
    /// Extension id.
    pub extension: String,
    /// `sent` or `received` (bytes); `ok` or `failed` (requests).
    pub kind: &'static str,
}

/// Labels of platform broker series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlatformLabels {
    /// Extension id.
    pub extension: String,
    /// `clients`, `services`, `invoicing` or `ui_proxy`.
    pub interface: &'static str,
    /// Calls: `ok`, `status`, `timeout`, `unreachable`, `too_large`, `malformed`,
    /// `not_configured`, `bad_route`; bytes: `sent` or `received`.
    pub outcome: &'static str,
}

/// The capability metrics (registered by the telemetry module).
#[derive(Clone, Default)]
pub struct CapabilityMetrics {
    /// Refused calls by capability and reason.
    pub denials: Family<DenialLabels, Counter>,
    /// Outbound HTTP body bytes by extension and direction.
    pub egress_bytes: Family<EgressLabels, Counter>,
    /// Outbound HTTP requests by extension and outcome.
    pub egress_requests: Family<EgressLabels, Counter>,
    /// Platform broker calls by extension, interface and outcome.
    pub platform_requests: Family<PlatformLabels, Counter>,
    /// Platform broker body bytes by extension, interface and direction.
    pub platform_bytes: Family<PlatformLabels, Counter>,
}

impl CapabilityMetrics {
    /// Counts one refused call.
    pub fn deny(&self, capability: &'static str, reason: &'static str) {
        self.denials
            .get_or_create(&DenialLabels { capability, reason })
            .inc();
    }
}

/// Node-wide limits of the capabilities (per request or per install).
#[derive(Debug, Clone)]
pub struct CapabilityLimits {
    /// Keys one install (tenant × extension) may hold across its buckets.
    pub kv_max_keys: u64,
    /// Longest log message kept, in bytes (longer ones are cut and marked).
    pub log_max_message_bytes: usize,
    /// Log lines kept per request in the execution log (more are counted, not kept).
    pub log_max_lines: usize,
    /// Outbound HTTP limits.
    pub egress: egress::EgressLimits,
}

impl Default for CapabilityLimits {
    fn default() -> Self {
        Self {
            kv_max_keys: 10_000,
            log_max_message_bytes: 4096,
            log_max_lines: 64,
            egress: egress::EgressLimits::default(),
        }
    }
}

/// The services behind the capabilities, shared by every request of the node.
pub struct Capabilities {
    kv: Option<Arc<KvService>>,
    schedules: Option<Arc<schedule_service::ScheduleService>>,
    platform: Arc<platform_broker::PlatformBroker>,
    sealer: Option<SecretSealer>,
    egress: Arc<egress::EgressClient>,
    node_allowlist: Option<Arc<egress::Allowlist>>,
    limits: CapabilityLimits,
    /// Shared by every request's states: one reference count per state, not one per family.
    metrics: Arc<CapabilityMetrics>,
}

/// One request's install, as the gateway resolved it.
#[derive(Debug, Clone)]
pub struct Grant<'a> {
    /// Tenant.
    pub tenant: &'a str,
    /// Extension id.
    pub extension: &'a str,
    /// The install (secrets are sealed to it).
    pub install_id: &'a str,
    /// Request id (in log lines).
    pub request_id: &'a str,
    /// The version's id, as the runner world's context reports it.
    pub version_id: Option<&'a str>,
    /// The end user, when the caller named one.
    pub user: Option<Arc<runner::EndUser>>,
    /// Granted capabilities (`cap:*`).
    pub granted: &'a [String],
    /// The install's config.
    pub config: &'a Arc<BTreeMap<String, String>>,
    /// The install's sealed secrets envelope.
    pub sealed_secrets: Option<&'a Arc<[u8]>>,
    /// Secrets the caller supplied for this one call (the runner envelope's
    /// `secret_envelope`); they replace the install's.
    pub call_secrets: Option<Arc<alga_edge_registry::secrets::Secrets>>,
    /// The install's outbound HTTP allowlist, parsed when the install was resolved.
    pub egress_allow: &'a egress::InstallAllowlist,
    /// Overrides of the node's limits by the install's policy.
    pub limits: GrantLimits,
    /// Where log lines and egress bytes of the request are collected.
    pub journal: Arc<Journal>,
}

/// Per-install overrides of [`CapabilityLimits`] (each can only tighten).
#[derive(Debug, Clone, Copy, Default)]
pub struct GrantLimits {
    /// Keys the install may hold.
    pub kv_max_keys: Option<u64>,
    /// Outbound requests per request.
    pub egress_max_requests: Option<u32>,
    /// Outbound response body bytes per outbound request.
    pub egress_max_response_bytes: Option<u64>,
    /// Per outbound request deadline, milliseconds.
    pub egress_timeout_ms: Option<u64>,
}

/// Tightest of a node limit and an optional install override.
fn tighter<T: Ord + Copy>(node: T, install: Option<T>) -> T {
    install.map_or(node, |v| v.min(node))
}

impl Capabilities {
    /// Capabilities over `kv` (absent: every KV call fails with `other`), opening secrets with
    /// `sealer`; outbound HTTP through `egress`, limited to `node_allowlist` when set
    /// (`EXT_EGRESS_ALLOWLIST`).
    pub fn new(
        kv: Option<Arc<KvService>>,
        sealer: Option<SecretSealer>,
        node_allowlist: Option<egress::Allowlist>,
        limits: CapabilityLimits,
        metrics: CapabilityMetrics,
    ) -> Self {
        Self {
            kv,
            schedules: None,
            platform: Arc::new(platform_broker::PlatformBroker::new(
                platform_broker::PlatformSettings::default(),
                metrics.clone(),
            )),
            sealer,
            egress: Arc::new(egress::EgressClient::new()),
            node_allowlist: node_allowlist.map(Arc::new),
            limits,
            metrics: Arc::new(metrics),
        }
    }

    /// Serves Alga's `scheduler` interface from `schedules`.
    pub fn with_schedules(mut self, schedules: Arc<schedule_service::ScheduleService>) -> Self {
        self.schedules = Some(schedules);
        self
    }

    /// Brokers Alga's `clients`, `services`, `invoicing` and `ui-proxy` to the platform
    /// `settings` name (without it they answer their "not configured" errors).
    pub fn with_platform(mut self, settings: platform_broker::PlatformSettings) -> Self {
        self.platform = Arc::new(platform_broker::PlatformBroker::new(
            settings,
            CapabilityMetrics::clone(&self.metrics),
        ));
        self
    }

    /// The node's capability limits.
    pub fn limits(&self) -> &CapabilityLimits {
        &self.limits
    }

    /// The metrics every capability reports into.
    pub fn metrics(&self) -> &CapabilityMetrics {
        &self.metrics
    }

    /// The per-request capability states for `grant`.
    pub fn for_request(&self, grant: Grant) -> RequestCapabilities {
        let has = |name: &str| {
            names::DEFAULT_GRANTS.contains(&name) || grant.granted.iter().any(|g| g == name)
        };
        let limits = &self.limits;
        RequestCapabilities {
            kv: kv::KvState::new(
                has(names::KV).then(|| self.kv.clone()).flatten(),
                has(names::KV),
                grant.tenant,
                grant.extension,
                tighter(limits.kv_max_keys, grant.limits.kv_max_keys),
                self.metrics.clone(),
            ),
            config: config::ConfigState::new(
                has(names::CONFIG),
                grant.config.clone(),
                self.metrics.clone(),
            ),
            secrets: secrets::SecretsState::new(
                has(names::SECRETS),
                grant.install_id.to_owned(),
                grant.sealed_secrets.cloned(),
                self.sealer.clone(),
                grant.call_secrets.clone(),
                grant.journal.clone(),
                self.metrics.clone(),
            ),
            logging: logging::LoggingState::new(
                has(names::LOG),
                &grant,
                limits.log_max_message_bytes,
                self.metrics.clone(),
            ),
            runner: runner::RunnerState::new(
                &grant,
                has,
                self.schedules.clone(),
                self.platform.clone(),
                self.metrics.clone(),
            ),
            egress: egress::EgressHooks::new(
                has(names::HTTP),
                egress::EgressPolicy::new(
                    grant.egress_allow.clone(),
                    self.node_allowlist.clone(),
                    limits.egress.tightened(&grant.limits),
                ),
                self.egress.clone(),
                grant.extension.to_owned(),
                grant.journal.clone(),
                self.metrics.clone(),
            ),
        }
    }
}

/// What one request's `Store` holds for the capabilities.
pub struct RequestCapabilities {
    kv: kv::KvState,
    config: config::ConfigState,
    secrets: secrets::SecretsState,
    logging: logging::LoggingState,
    runner: runner::RunnerState,
    egress: egress::EgressHooks,
}

impl RequestCapabilities {
    /// The request's journal: its log lines, masking and live tap (the engine writes guest
    /// stdout/stderr into it).
    pub fn journal(&self) -> &Arc<Journal> {
        self.logging.journal()
    }

    /// The wasi-http hooks (outbound requests go through [`egress`]).
    pub fn egress(&mut self) -> &mut egress::EgressHooks {
        &mut self.egress
    }
}

/// A `Store` data type that carries [`RequestCapabilities`] and a resource table.
pub trait CapabilityView: Send + 'static {
    /// The request's capabilities.
    fn capabilities(&mut self) -> &mut RequestCapabilities;
    /// The store's resource table (KV buckets live there).
    fn table(&mut self) -> &mut ResourceTable;
}

/// The wasi:http handler ABI a linker serves. Only Spin's interfaces differ between the two:
/// spin-sdk 7 imports them with `async` functions under the names spin-sdk 5 imports
/// synchronously.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abi {
    /// WASIp2 components (`wasi:http/incoming-handler@0.2.x`).
    P2,
    /// WASIp3 components (`wasi:http/handler@0.3.x`).
    P3,
}

/// Links every capability interface (not `context` or wasi:http, which the engine links),
/// typed for `abi`.
pub fn add_to_linker<T: CapabilityView>(linker: &mut Linker<T>, abi: Abi) -> wasmtime::Result<()> {
    kv::add_to_linker(linker)?;
    kv_draft2::add_to_linker(linker)?;
    config::add_to_linker(linker)?;
    secrets::add_to_linker(linker)?;
    logging::add_to_linker(linker)?;
    spin::add_to_linker(linker, abi)?;
    runner::add_to_linker(linker)?;
    Ok(())
}
