//! End-to-end tests of the real `alga-edge` binary, one module per area, linked as one test
//! binary (as wasmtime's `tests/all`) so the suite builds and links once. The harness they share
//! is the `alga-edge-e2e` crate (`tests/src`); what only this target can know lives here.

mod alga;
mod architecture;
mod authoring;
mod authors;
mod capabilities;
mod config;
mod foundation;
mod gateway;
mod hardening;
mod lifecycle;
mod platform;
mod policies;
mod replication;
mod reuse;
mod schedules;
mod tail;
mod traces;
mod ui;

/// The `alga-edge` binary cargo built for this test target. `CARGO_BIN_EXE_*` is set only when
/// a test target is compiled, so it cannot live in the support crate (which finds the binary at
/// run time instead: `alga_edge_e2e::publishing::binary`).
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_alga-edge");
