//! The gateway (DESIGN §1): everything between an authenticated HTTP request and the engine,
//! for `/api/ext/{extensionId}/{path…}` and Alga's `POST /v1/execute`. It knows policies, not
//! capabilities; it maps the engine's errors to HTTP.
//!
//! A request's path through it:
//! - [`tenant_auth`]: the tenant JWT (verified tokens cached until expiry).
//! - [`catalog`]: which component serves the extension for that tenant (registry installs on
//!   the local replica, or dev mappings).
//! - [`policy`]: body and header caps, rate and concurrency limits, endpoint enforcement, with
//!   per-install overrides.
//! - [`ext_api`]: the `/api/ext/…` route itself, which hands the request to the engine.
//! - [`runner`]: `POST /v1/execute`, Alga's runner envelope, over the same path.
//! - [`schedule_trigger`]: due cron schedules fired on the primary, over the same path.
//! - [`telemetry`]: Prometheus metrics and the batched execution log.
//! - [`error`]: every way such a request fails, with its status.
//! - [`keys`]: node key files created on first use (tenant dev key, tokens).

pub mod catalog;
pub mod error;
pub mod ext_api;
pub mod keys;
pub mod policy;
pub mod runner;
pub mod schedule_trigger;
pub mod telemetry;
pub mod tenant_auth;

pub use error::GatewayError;
pub use ext_api::{Gateway, ROUTE_PREFIX};
pub use runner::{EXECUTE_PATH, Runner};
pub use schedule_trigger::{ScheduleTrigger, TriggerConfig};
