//! Alga Edge node: one process per edge node. This crate is the top of the dependency order
//! (http → capabilities → engine → gateway → node) and the composition root: it routes HTTP to
//! the parts below, serves what only a node has, and wires everything together.
//!
//! - [`server`]: accepts connections and routes by one table: `/api/ext/…` and `/v1/execute`
//!   (the gateway crate), `/admin/v1/…`, `/replication/v1/…`, `/ext-ui/…`, the host page,
//!   `/healthz`, `/readyz`, `/metrics`.
//! - [`routes`]: the route tables (matchit) the server, admin and replication APIs declare.
//! - [`health`]: what the probes and the replication gauges report.
//! - [`request_log`]: the node's request log lines, rate-limited for unidentified callers.
//! - [`log_writer`]: the node log's buffered stderr writer.
//! - [`admin`]: the admin API (publish, installs, KV, execution log).
//! - [`replication`]: the primary's replication API and the sync and rollover loops.
//! - [`ui`]: `/ext-ui/{extensionId}/{content_hash}/{path…}`, extension iframe UI files.
//! - [`host_page`]: the demo host page at `/` that opens extension UIs in sandboxed iframes.
//! - [`authoring`]: local author commands (keygen, pack, sign).
//! - [`traces`]: OpenTelemetry trace export (OTLP/HTTP), off unless configured.
//! - [`config_file`]: the node's TOML configuration file, layered under env and flags.
//!
//! The binary's `cmd` modules hold the CLI and the node's start-up (one builder per role).

pub mod admin;
pub mod authoring;
pub mod config_file;
pub mod health;
pub mod host_page;
pub mod log_writer;
pub mod replication;
pub mod request_log;
pub mod routes;
pub mod server;
pub mod traces;
pub mod ui;
