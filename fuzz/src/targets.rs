//! The targets, one module each; [`crate::TARGETS`] lists them.

pub mod abi;
pub mod bundle;
pub mod headers;
pub mod kv;
pub mod manifest;
pub mod runner_envelope;
pub mod tenant_token;
pub mod ui;
