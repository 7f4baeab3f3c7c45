//! Alga Edge host: one process per edge node that runs tenant extensions (WASI Preview 2
//! components) behind an HTTP gateway.
//!
//! The modules follow the data path of a request:
//! - [`server`]: accepts connections and routes `/api/ext/…`, `/v1/execute`, `/admin/v1/…`,
//!   `/healthz`, `/readyz` and `/metrics`.
//! - [`tenant_auth`]: the tenant JWT on gateway routes (verified tokens cached until expiry).
//! - [`policy`]: body/header caps, concurrency and rate limits, endpoint enforcement, with
//!   per-install overrides.
//! - [`gateway`]: turns `/api/ext/{extensionId}/{path…}` into a component call for a tenant.
//! - [`runner`]: `POST /v1/execute`, the Alga runner envelope over the same path.
//! - [`telemetry`]: Prometheus metrics and the batched execution log.
//! - [`replication`]: the primary's sync API and the edge's sync loop.
//! - [`kv`]: extension KV data: local reads, writes on the primary (forwarded from edges).
//! - [`catalog`]: which component serves which extension: registry installs, or dev mappings.
//! - [`engine`]: compiles, caches and instantiates components, enforces per-request limits.
//! - [`capabilities`]: host interfaces linked into every component (`alga:extension/*`).
//! - [`error`]: the JSON error contract and HTTP status of every failure.
//! - [`config`]: settings with embedded defaults, overridable by flags and environment.
//! - [`admin`]: the admin API (publish, installs) of a primary node.
//! - [`keys`]: node key files created on first use.
//! - [`authoring`]: local author commands (keygen, pack, sign).
//! - [`ui`]: `/ext-ui/{extensionId}/{content_hash}/{path…}`, extension iframe UI files.
//! - [`host_page`]: the demo host page at `/` that opens extension UIs in sandboxed iframes.

pub mod admin;
pub mod authoring;
pub mod capabilities;
pub mod catalog;
pub mod config;
pub mod engine;
pub mod error;
pub mod gateway;
pub mod host_page;
pub mod keys;
pub mod kv;
pub mod policy;
pub mod replication;
pub mod runner;
pub mod server;
pub mod telemetry;
pub mod tenant_auth;
pub mod ui;
