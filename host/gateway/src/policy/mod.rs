//! Gateway policies that protect the node from any one tenant (DESIGN §5): request body and
//! header caps, concurrent instances per tenant, per extension and per install, a request rate
//! per tenant and per install, the node's memory budget and each tenant's share of it, and
//! optional manifest endpoint enforcement. Node-wide defaults
//! come from [`PolicyConfig`]; an install's [`InstallPolicy`] overrides them for its requests.
//! The gateway applies them after it has resolved the install, before the engine runs anything.

mod concurrency;
mod endpoints;
mod rate;

use std::time::Duration;

use alga_edge_engine::{MemoryBudget, MemoryRefusal};
use alga_edge_registry::InstallPolicy;
use http::HeaderMap;

pub use concurrency::{InFlight, InFlightGuard};
pub use endpoints::endpoint_declared;
pub use rate::RateLimiter;

use alga_edge_http::declared_length;

use crate::error::{GatewayError, MemoryScope};

/// Policy settings (node-wide defaults).
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Largest request body, in bytes (413 past it).
    pub max_body_bytes: u64,
    /// Most request headers (431 past it).
    pub max_headers: usize,
    /// Largest total size of request header names and values, in bytes (431 past it).
    pub max_header_bytes: usize,
    /// Concurrent requests per tenant (429 past it).
    pub tenant_concurrency: u32,
    /// Concurrent requests per extension across tenants (429 past it).
    pub extension_concurrency: u32,
    /// Sustained requests per second per tenant (0 = unlimited).
    pub tenant_rate_per_sec: f64,
    /// Burst size of the per-tenant token bucket.
    pub tenant_rate_burst: f64,
    /// Only routes declared in the manifest's `api.endpoints` are served (404 otherwise).
    pub enforce_endpoints: bool,
    /// Requests one warm instance of an install serves (`--instance-reuse`); below 2, off.
    pub instance_reuse: u32,
    /// CPU time one request's guest may use (`--cpu-budget-ms`); `None`: no budget.
    pub cpu_budget: Option<Duration>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 << 20,
            max_headers: 100,
            max_header_bytes: 32 << 10,
            tenant_concurrency: 64,
            extension_concurrency: 128,
            tenant_rate_per_sec: 200.0,
            tenant_rate_burst: 400.0,
            enforce_endpoints: false,
            instance_reuse: 0,
            cpu_budget: None,
        }
    }
}

/// The policies with their live state.
pub struct Policies {
    config: PolicyConfig,
    tenants: InFlight,
    extensions: InFlight,
    installs: InFlight,
    tenant_rate: RateLimiter,
    install_rate: RateLimiter,
}

/// Admission of one request: holds its concurrency slots until dropped.
pub struct Admission {
    _tenant: InFlightGuard,
    _extension: InFlightGuard,
    _install: Option<InFlightGuard>,
}

/// The limits that apply to one install's requests: node defaults with its overrides applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effective {
    /// Request body cap in bytes.
    pub max_body_bytes: u64,
    /// Deadline of the request, when the install overrides the engine's default.
    pub timeout: Option<Duration>,
    /// Whether only manifest endpoints are served.
    pub enforce_endpoints: bool,
    /// Requests one warm instance serves (below 2: every request gets a fresh instance).
    pub instance_reuse: u32,
    /// CPU time the guest may use per request; `None`: no budget.
    pub cpu_budget: Option<Duration>,
}

impl Policies {
    /// Policies enforcing `config`.
    pub fn new(config: PolicyConfig) -> Self {
        Self {
            tenants: InFlight::default(),
            extensions: InFlight::default(),
            installs: InFlight::default(),
            tenant_rate: RateLimiter::default(),
            install_rate: RateLimiter::default(),
            config,
        }
    }

    /// The limits for an install with `overrides`.
    pub fn effective(&self, overrides: &InstallPolicy) -> Effective {
        Effective {
            max_body_bytes: overrides
                .max_body_bytes
                .unwrap_or(self.config.max_body_bytes),
            timeout: overrides.timeout_ms.map(Duration::from_millis),
            enforce_endpoints: overrides
                .enforce_endpoints
                .unwrap_or(self.config.enforce_endpoints),
            instance_reuse: overrides
                .instance_reuse
                .unwrap_or(self.config.instance_reuse),
            // An install's 0 turns the node's budget off for it.
            cpu_budget: match overrides.cpu_budget_ms {
                Some(0) => None,
                Some(ms) => Some(Duration::from_millis(ms)),
                None => self.config.cpu_budget,
            },
        }
    }

    /// The settings.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Header count and size caps (checked before authentication, so oversized requests cost
    /// nothing).
    pub fn check_headers(&self, headers: &HeaderMap) -> Result<(), GatewayError> {
        check_header_caps(
            headers,
            self.config.max_headers,
            self.config.max_header_bytes,
        )
    }

    /// An install's own (tighter) header caps, checked once the install is known.
    pub fn check_install_headers(
        &self,
        headers: &HeaderMap,
        overrides: &InstallPolicy,
    ) -> Result<(), GatewayError> {
        match (overrides.max_headers, overrides.max_header_bytes) {
            (None, None) => Ok(()),
            (count, bytes) => check_header_caps(
                headers,
                count.unwrap_or(self.config.max_headers),
                bytes.unwrap_or(self.config.max_header_bytes),
            ),
        }
    }

    /// A declared body length over `limit` is refused before anything runs; bodies without a
    /// length are capped while streaming.
    pub fn check_declared_body(&self, headers: &HeaderMap, limit: u64) -> Result<(), GatewayError> {
        match declared_length(headers) {
            Some(length) if length > limit => {
                Err(GatewayError::BodyTooLarge { limit_bytes: limit })
            }
            _ => Ok(()),
        }
    }

    /// Rate, concurrency and memory admission for `tenant` on `extension` through `install`
    /// (refused while `memory` has no room for the tenant).
    pub fn admit(
        &self,
        tenant: &str,
        extension: &str,
        install: &str,
        overrides: &InstallPolicy,
        memory: &MemoryBudget,
    ) -> Result<Admission, GatewayError> {
        let config = &self.config;
        if let Err(wait) =
            self.tenant_rate
                .try_take(tenant, config.tenant_rate_per_sec, config.tenant_rate_burst)
        {
            return Err(GatewayError::RateLimited {
                limit: "tenant_rate",
                retry_after: retry_after(wait),
                reason: format!(
                    "tenant '{tenant}' exceeded {} requests per second",
                    config.tenant_rate_per_sec
                ),
            });
        }
        if let Some(rate) = overrides.rate_per_sec {
            let burst = overrides.rate_burst.unwrap_or(rate * 2.0);
            if let Err(wait) = self.install_rate.try_take(install, rate, burst) {
                return Err(GatewayError::RateLimited {
                    limit: "install_rate",
                    retry_after: retry_after(wait),
                    reason: format!(
                        "this install of '{extension}' exceeded {rate} requests per second"
                    ),
                });
            }
        }
        let busy = |limit: &'static str, what: String, cap: u32| GatewayError::RateLimited {
            limit,
            retry_after: 1,
            reason: format!("{what} has {cap} requests in flight, the most allowed"),
        };
        let tenant_slot = self
            .tenants
            .try_enter(tenant, config.tenant_concurrency)
            .ok_or_else(|| {
                busy(
                    "tenant_concurrency",
                    format!("tenant '{tenant}'"),
                    config.tenant_concurrency,
                )
            })?;
        let extension_slot = self
            .extensions
            .try_enter(extension, config.extension_concurrency)
            .ok_or_else(|| {
                busy(
                    "extension_concurrency",
                    format!("extension '{extension}'"),
                    config.extension_concurrency,
                )
            })?;
        let install_slot = match overrides.concurrency {
            Some(cap) => Some(self.installs.try_enter(install, cap).ok_or_else(|| {
                busy(
                    "install_concurrency",
                    format!("this install of '{extension}'"),
                    cap,
                )
            })?),
            None => None,
        };
        // Memory is charged as instances grow; a request is not even started while the
        // budget is spent.
        memory
            .check_room(tenant, ADMISSION_MEMORY_BYTES)
            .map_err(|refusal| memory_refused(refusal, tenant))?;
        Ok(Admission {
            _tenant: tenant_slot,
            _extension: extension_slot,
            _install: install_slot,
        })
    }
}

/// The room a request needs in the memory budget to be started: about what a small instance
/// holds at instantiation.
const ADMISSION_MEMORY_BYTES: u64 = 2 << 20;

/// The answer to refused memory: retry in a second, when running instances have likely ended.
pub fn memory_refused(refusal: MemoryRefusal, tenant: &str) -> GatewayError {
    let mib = |bytes: u64| bytes >> 20;
    match refusal {
        MemoryRefusal::Node { budget } => GatewayError::MemoryBudget {
            scope: MemoryScope::Node,
            retry_after: 1,
            reason: format!(
                "this node's memory budget ({} MiB) is in use by running extensions",
                mib(budget)
            ),
        },
        MemoryRefusal::Tenant { share } => GatewayError::MemoryBudget {
            scope: MemoryScope::Tenant,
            retry_after: 1,
            reason: format!(
                "tenant '{tenant}' has its share of this node's memory ({} MiB) in use",
                mib(share)
            ),
        },
    }
}

/// Header count and total size caps.
fn check_header_caps(
    headers: &HeaderMap,
    max_headers: usize,
    max_bytes: usize,
) -> Result<(), GatewayError> {
    if headers.len() > max_headers {
        return Err(GatewayError::HeadersTooLarge(format!(
            "{} request headers; at most {max_headers} are accepted",
            headers.len(),
        )));
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if bytes > max_bytes {
        return Err(GatewayError::HeadersTooLarge(format!(
            "request headers total {bytes} bytes; at most {max_bytes} are accepted"
        )));
    }
    Ok(())
}

/// Whole seconds to wait, at least one.
fn retry_after(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}
