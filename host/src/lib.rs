//! Alga Edge host: one process per edge node that runs tenant extensions (WASI Preview 2
//! components) behind an HTTP gateway.
//!
//! The modules follow the data path of a request:
//! - [`server`]: accepts connections and routes `/healthz`, `/api/ext/…` and `/admin/v1/…`.
//! - [`tenant_auth`]: the tenant JWT on gateway routes.
//! - [`policy`]: body/header caps, per-tenant and per-extension concurrency, per-tenant rate.
//! - [`gateway`]: turns `/api/ext/{extensionId}/{path…}` into a component call for a tenant.
//! - [`catalog`]: which component serves which extension: registry installs, or dev mappings.
//! - [`engine`]: compiles, caches and instantiates components, enforces per-request limits.
//! - [`capabilities`]: host interfaces linked into every component (`alga:extension/*`).
//! - [`error`]: the JSON error contract and HTTP status of every failure.
//! - [`config`]: settings with embedded defaults, overridable by flags and environment.
//! - [`admin`]: the admin API (publish, installs) of a primary node.
//! - [`keys`]: node key files created on first use.
//! - [`authoring`]: local author commands (keygen, pack, sign).

pub mod admin;
pub mod authoring;
pub mod capabilities;
pub mod catalog;
pub mod config;
pub mod engine;
pub mod error;
pub mod gateway;
pub mod keys;
pub mod policy;
pub mod server;
pub mod tenant_auth;
