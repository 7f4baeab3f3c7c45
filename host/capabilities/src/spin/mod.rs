//! Spin SDK compatibility: components built with spin-sdk 5.x import Spin's own key-value
//! and variables interfaces (`fermyon:spin/key-value@2.0.0`, `fermyon:spin/variables@2.0.0`;
//! Spin 3 also names them `spin:key-value/key-value@3.0.0`, `spin:variables/variables@3.0.0`).
//! They run here unchanged: key-value stores are [`super::kv`] buckets of the same tenant ×
//! extension scope (the store label is the bucket, Spin's `default` included) under
//! `cap:storage.kv`, and variables are the install's config under `cap:config.get`.
//!
//! spin-sdk 7 (WASIp3) imports the same `@3.0.0` names with `async` functions and `get-keys`
//! as a stream; WASIp3 components get those ([`concurrent`]), everything else the synchronous
//! ones ([`blocking`]).
//!
//! Linked by hand (no WIT in this repository): the types mirror those interfaces as the
//! spin-sdk crates ship them.

mod blocking;
mod concurrent;

use wasmtime::component::{ComponentType, Lift, Linker, Lower};

use super::kv::KvError;
use super::{Abi, CapabilityView};

/// spin-sdk 5's key-value (Spin 2 and Spin 3 names), always synchronous.
const KEY_VALUE_V2: &str = "fermyon:spin/key-value@2.0.0";
/// Spin 3's name: synchronous from spin-sdk 5, `async` from spin-sdk 7.
const KEY_VALUE_V3: &str = "spin:key-value/key-value@3.0.0";
const VARIABLES_V2: &str = "fermyon:spin/variables@2.0.0";
const VARIABLES_V3: &str = "spin:variables/variables@3.0.0";

/// Spin's key-value `error`.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq)]
#[component(variant)]
pub enum SpinKvError {
    /// Too many open stores.
    #[component(name = "store-table-full")]
    StoreTableFull,
    /// No such store.
    #[component(name = "no-such-store")]
    NoSuchStore,
    /// The install was not granted `cap:storage.kv`.
    #[component(name = "access-denied")]
    AccessDenied,
    /// Anything else.
    #[component(name = "other")]
    Other(String),
}

impl From<KvError> for SpinKvError {
    fn from(error: KvError) -> Self {
        match error {
            KvError::NoSuchStore => Self::NoSuchStore,
            KvError::AccessDenied => Self::AccessDenied,
            KvError::Other(message) => Self::Other(message),
        }
    }
}

/// Spin's variables `error`.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq)]
#[component(variant)]
pub enum SpinVariablesError {
    /// Not a valid variable name.
    #[component(name = "invalid-name")]
    InvalidName(String),
    /// No such variable.
    #[component(name = "undefined")]
    Undefined(String),
    /// The provider failed (here: the capability was not granted).
    #[component(name = "provider")]
    Provider(String),
    /// Anything else.
    #[component(name = "other")]
    Other(String),
}

/// Links Spin's key-value and variables interfaces under every name above, typed for `abi`.
pub fn add_to_linker<T: CapabilityView>(linker: &mut Linker<T>, abi: Abi) -> wasmtime::Result<()> {
    blocking::add_key_value(linker, KEY_VALUE_V2)?;
    blocking::add_variables(linker, VARIABLES_V2)?;
    match abi {
        Abi::P2 => {
            blocking::add_key_value(linker, KEY_VALUE_V3)?;
            blocking::add_variables(linker, VARIABLES_V3)?;
        }
        Abi::P3 => {
            concurrent::add_key_value(linker, KEY_VALUE_V3)?;
            concurrent::add_variables(linker, VARIABLES_V3)?;
        }
    }
    Ok(())
}

/// The install's config value `name`, as Spin's variables answer it.
fn variable<T: CapabilityView>(data: &mut T, name: &str) -> Result<String, SpinVariablesError> {
    match data.capabilities().config.get(name) {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err(SpinVariablesError::Undefined(format!(
            "no variable '{name}' in the install's config"
        ))),
        Err(denied) => Err(SpinVariablesError::Provider(denied.message())),
    }
}
