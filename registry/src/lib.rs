//! Alga Edge registry: what extensions exist, which versions were published, and the signed,
//! content-addressed bundles behind them (DESIGN §4).
//!
//! - [`manifest`]: manifest v2, its validation rules and normalisation.
//! - [`bundle`]: tar + zstd bundles, content hashes, safe unpacking.
//! - [`signing`]: Ed25519 compact-JWS bundle signatures and the trust bundle that verifies them.
//! - [`store`]: the content-addressed bundle store (local directory).

pub mod bundle;
pub mod manifest;
pub mod signing;
pub mod store;
