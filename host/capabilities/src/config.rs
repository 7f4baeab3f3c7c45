//! `wasi:config/store` (`cap:config.get`): the install's config map, read-only.
//!
//! Linked by hand (no WIT in this repository): the functions and types below mirror
//! `wasi:config/store` as the `wasmtime-wasi-config` crate ships it (`0.2.0-rc.1`), and the same
//! implementation is linked under the `0.2.0-draft-2024-09-27` name Spin hosts.

use alga_edge_http::trace_context;
use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{ComponentType, Lift, Linker, Lower};

use super::{CapabilityMetrics, CapabilityView};

/// Interface names this module serves.
const INTERFACES: [&str; 2] = [
    "wasi:config/store@0.2.0-rc.1",
    "wasi:config/store@0.2.0-draft-2024-09-27",
];

/// `wasi:config/store.error`.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq)]
#[component(variant)]
pub enum ConfigError {
    /// The store could not answer (here: the capability was not granted).
    #[component(name = "upstream")]
    Upstream(String),
    /// I/O failure.
    #[component(name = "io")]
    Io(String),
}

impl ConfigError {
    /// The message of the error.
    pub fn message(&self) -> String {
        match self {
            Self::Upstream(m) | Self::Io(m) => m.clone(),
        }
    }
}

/// Per-request state behind `wasi:config/store`.
pub struct ConfigState {
    granted: bool,
    values: Arc<BTreeMap<String, String>>,
    metrics: Arc<CapabilityMetrics>,
}

impl ConfigState {
    /// The install's `values`, readable when `granted`.
    pub fn new(
        granted: bool,
        values: Arc<BTreeMap<String, String>>,
        metrics: Arc<CapabilityMetrics>,
    ) -> Self {
        Self {
            granted,
            values,
            metrics,
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let mut span = trace_context::span("config");
        if self.granted {
            Ok(())
        } else {
            span.fail("not granted");
            self.metrics.deny("config", "not_granted");
            Err(ConfigError::Upstream(
                "access denied: the install was not granted cap:config.get".into(),
            ))
        }
    }

    /// `get`.
    pub fn get(&self, key: &str) -> Result<Option<String>, ConfigError> {
        self.check()?;
        Ok(self.values.get(key).cloned())
    }

    /// `get-all`.
    pub fn get_all(&self) -> Result<Vec<(String, String)>, ConfigError> {
        self.check()?;
        Ok(self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// Links `wasi:config/store` under every name in [`INTERFACES`].
pub fn add_to_linker<T: CapabilityView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    for name in INTERFACES {
        let mut instance = linker.instance(name)?;
        instance.func_wrap("get", |mut store, (key,): (String,)| {
            Ok((store.data_mut().capabilities().config.get(&key),))
        })?;
        instance.func_wrap("get-all", |mut store, (): ()| {
            Ok((store.data_mut().capabilities().config.get_all(),))
        })?;
    }
    Ok(())
}
