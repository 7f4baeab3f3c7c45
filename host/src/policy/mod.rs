//! Gateway policies that protect the node from any one tenant (DESIGN §5): request body and
//! header caps, concurrent instances per tenant and per extension, and a request rate per tenant.
//! The gateway applies them after it has resolved the install, before the engine runs anything.

mod body;
mod concurrency;
mod rate;

use std::time::Duration;

use http::HeaderMap;

pub use body::CappedBody;
pub use concurrency::{InFlight, InFlightGuard};
pub use rate::RateLimiter;

use crate::error::GatewayError;

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
        }
    }
}

/// The policies with their live state.
pub struct Policies {
    config: PolicyConfig,
    tenants: InFlight,
    extensions: InFlight,
    rate: RateLimiter,
}

/// Admission of one request: holds its concurrency slots until dropped.
pub struct Admission {
    _tenant: InFlightGuard,
    _extension: InFlightGuard,
}

impl Policies {
    /// Policies enforcing `config`.
    pub fn new(config: PolicyConfig) -> Self {
        Self {
            tenants: InFlight::new(config.tenant_concurrency),
            extensions: InFlight::new(config.extension_concurrency),
            rate: RateLimiter::new(config.tenant_rate_per_sec, config.tenant_rate_burst),
            config,
        }
    }

    /// The settings.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Header count and size caps (checked before authentication, so oversized requests cost
    /// nothing).
    pub fn check_headers(&self, headers: &HeaderMap) -> Result<(), GatewayError> {
        if headers.len() > self.config.max_headers {
            return Err(GatewayError::HeadersTooLarge(format!(
                "{} request headers; at most {} are accepted",
                headers.len(),
                self.config.max_headers
            )));
        }
        let bytes: usize = headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        if bytes > self.config.max_header_bytes {
            return Err(GatewayError::HeadersTooLarge(format!(
                "request headers total {bytes} bytes; at most {} are accepted",
                self.config.max_header_bytes
            )));
        }
        Ok(())
    }

    /// A declared body length over the cap is refused before anything runs; bodies without a
    /// length are capped while streaming.
    pub fn check_declared_body(&self, headers: &HeaderMap) -> Result<(), GatewayError> {
        match declared_length(headers) {
            Some(length) if length > self.config.max_body_bytes => Err(self.body_too_large()),
            _ => Ok(()),
        }
    }

    /// The 413 for a body over the cap.
    pub fn body_too_large(&self) -> GatewayError {
        GatewayError::BodyTooLarge {
            limit_bytes: self.config.max_body_bytes,
        }
    }

    /// Rate and concurrency admission for `tenant` on `extension`.
    pub fn admit(&self, tenant: &str, extension: &str) -> Result<Admission, GatewayError> {
        if let Err(wait) = self.rate.try_take(tenant) {
            return Err(GatewayError::RateLimited {
                retry_after: retry_after(wait),
                reason: format!(
                    "tenant '{tenant}' exceeded {} requests per second",
                    self.config.tenant_rate_per_sec
                ),
            });
        }
        let tenant_slot =
            self.tenants
                .try_enter(tenant)
                .ok_or_else(|| GatewayError::RateLimited {
                    retry_after: 1,
                    reason: format!(
                        "tenant '{tenant}' has {} requests in flight, the most allowed",
                        self.config.tenant_concurrency
                    ),
                })?;
        let extension_slot =
            self.extensions
                .try_enter(extension)
                .ok_or_else(|| GatewayError::RateLimited {
                    retry_after: 1,
                    reason: format!(
                        "extension '{extension}' has {} requests in flight, the most allowed",
                        self.config.extension_concurrency
                    ),
                })?;
        Ok(Admission {
            _tenant: tenant_slot,
            _extension: extension_slot,
        })
    }
}

/// The request's `content-length`, when it declares a valid one.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Whole seconds to wait, at least one.
fn retry_after(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}
