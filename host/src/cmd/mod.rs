//! The binary's commands that assemble or drive nodes (library code stays in `alga_edge`).
//!
//! - [`node`]: builds a serving node from its settings (`serve`, `demo`).
//! - [`demo`]: `alga-edge demo`.
//! - [`remote`]: admin API client commands (publish, install, …).
//! - [`schedules`]: `schedules …`, a tenant's install schedules through the admin API.
//! - [`tail`]: `tail EXT --tenant T`, a node's live tail of one install.
//! - [`ext`]: author commands `ext new` and `ext build`.

pub mod demo;
pub mod ext;
pub mod node;
pub mod remote;
pub mod schedules;
pub mod tail;
