//! Alga PSA's `runner` world (`wit/runner/runner.wit`, package `alga:extension` unversioned):
//! the host interfaces an extension built for Alga PSA imports, so it runs here unchanged.
//!
//! Each interface sits on the same backing as its standard counterpart, scoped to the install:
//!
//! | interface | capability | backing |
//! |---|---|---|
//! | `context` | `cap:context.read` (default) | the request context |
//! | `user`, `user-v2` | `cap:user.read` (default) | the tenant token's claims or the runner envelope's `user` |
//! | `secrets` | `cap:secrets.get` | the install's sealed secrets ([`crate::secrets`]) or the call's own |
//! | `http` | `cap:http.fetch` | the egress path of `wasi:http` ([`crate::egress`]) |
//! | `storage` | `cap:storage.kv` | the replicated KV database, namespace = bucket ([`crate::kv_service`]) |
//! | `logging` | `cap:log.emit` (default) | the node log and the execution log ([`crate::logging`]) |
//! | `scheduler` | `cap:scheduler.manage` | the install's schedules in the registry ([`crate::schedule_service`]) |
//! | `ui-proxy`, `invoicing`, `clients`, `services` | `cap:ui.proxy`, `cap:invoice.manual.create`, `cap:client.read`, `cap:service.read` | the platform's internal API and host-app routes ([`crate::platform_broker`], [`platform`]) |
//!
//! Deny by default and never a trap: an ungranted call answers its interface's own error
//! (`denied`, `not-allowed`) and is counted in `alga_capability_denials_total`.

mod identity;
mod logging;
pub mod outbound;
mod platform;
mod scheduler;
mod secrets;
mod storage;

use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

pub use identity::EndUser;

use super::{CapabilityMetrics, CapabilityView, Grant, RequestCapabilities, names};

/// Host bindings of the runner world; [`bindings::Runner`] also calls a component's `handler`.
/// Generated from the WIT, whose comments document the types.
#[allow(missing_docs)]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/runner/runner.wit",
        world: "alga:extension/runner",
        imports: { default: async },
        exports: { default: async },
    });
}

use bindings::alga::extension::types;

/// Per-request state of the runner world's own interfaces (the shared backings live in
/// [`RequestCapabilities`]).
pub struct RunnerState {
    context: types::ContextData,
    user: Option<Arc<EndUser>>,
    granted: Granted,
    schedules: Option<Arc<crate::schedule_service::ScheduleService>>,
    platform: Arc<crate::platform_broker::PlatformBroker>,
    journal: Arc<crate::Journal>,
    /// Platform calls this request made (the broker bounds them).
    platform_calls: std::sync::atomic::AtomicU32,
    metrics: Arc<CapabilityMetrics>,
}

/// Which of the runner-only capabilities the install holds.
#[derive(Debug, Clone, Copy, Default)]
struct Granted {
    user: bool,
    ui_proxy: bool,
    scheduler: bool,
    invoicing: bool,
    clients: bool,
    services: bool,
}

impl RunnerState {
    /// The runner-world state of `grant`'s request; `has` says whether a capability is granted.
    pub(crate) fn new(
        grant: &Grant,
        has: impl Fn(&str) -> bool,
        schedules: Option<Arc<crate::schedule_service::ScheduleService>>,
        platform: Arc<crate::platform_broker::PlatformBroker>,
        metrics: Arc<CapabilityMetrics>,
    ) -> Self {
        Self {
            context: types::ContextData {
                request_id: Some(grant.request_id.to_owned()),
                tenant_id: grant.tenant.to_owned(),
                extension_id: grant.extension.to_owned(),
                install_id: Some(grant.install_id.to_owned()).filter(|id| !id.is_empty()),
                version_id: grant.version_id.map(str::to_owned),
            },
            user: grant.user.clone(),
            granted: Granted {
                user: has(names::USER),
                ui_proxy: has(names::UI_PROXY),
                scheduler: has(names::SCHEDULER),
                invoicing: has(names::INVOICING),
                clients: has(names::CLIENTS),
                services: has(names::SERVICES),
            },
            schedules,
            platform,
            journal: grant.journal.clone(),
            platform_calls: Default::default(),
            metrics,
        }
    }

    /// Whether a capability is granted, counting a refusal under `label` when it is not.
    fn check(&self, granted: bool, label: &'static str) -> bool {
        if !granted {
            self.metrics.deny(label, "not_granted");
        }
        granted
    }
}

impl types::Host for RequestCapabilities {}

struct RunnerData;

impl HasData for RunnerData {
    type Data<'a> = &'a mut RequestCapabilities;
}

/// Links every import of the runner world (`alga:extension/*`, unversioned).
pub fn add_to_linker<T: CapabilityView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    bindings::Runner::add_to_linker::<T, RunnerData>(linker, |state: &mut T| state.capabilities())
}
