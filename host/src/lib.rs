//! Alga Edge host: one process per edge node that runs tenant extensions (WASI Preview 2
//! components) behind an HTTP gateway.
//!
//! The modules follow the data path of a request:
//! - [`server`]: accepts connections and routes `/healthz` and `/api/ext/…`.
//! - [`gateway`]: turns `/api/ext/{extensionId}/{path…}` into a component call for a tenant.
//! - [`catalog`]: which component serves which extension (dev mapping until the registry lands).
//! - [`engine`]: compiles, caches and instantiates components, enforces per-request limits.
//! - [`capabilities`]: host interfaces linked into every component (`alga:extension/*`).
//! - [`error`]: the JSON error contract and HTTP status of every failure.
//! - [`config`]: settings with embedded defaults, overridable by flags and environment.
//! - [`authoring`]: local author commands (keygen, pack, sign).

pub mod authoring;
pub mod capabilities;
pub mod catalog;
pub mod config;
pub mod engine;
pub mod error;
pub mod gateway;
pub mod server;
