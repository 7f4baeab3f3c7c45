//! Spin SDK compatibility: components built with spin-sdk 5.x import Spin's own key-value
//! and variables interfaces (`fermyon:spin/key-value@2.0.0`, `fermyon:spin/variables@2.0.0`;
//! Spin 3 also names them `spin:key-value/key-value@3.0.0`, `spin:variables/variables@3.0.0`).
//! They run here unchanged: key-value stores are [`super::kv`] buckets of the same tenant ×
//! extension scope (the store label is the bucket, Spin's `default` included) under
//! `cap:storage.kv`, and variables are the install's config under `cap:config.get`.
//!
//! Linked by hand (no WIT in this repository): the types mirror those interfaces as the
//! spin-sdk crate ships them.

use wasmtime::component::{ComponentType, Lift, Linker, Lower, Resource, ResourceType};

use super::CapabilityView;
use super::kv::{self, KvBucket, KvError};
use crate::kv::KvOp;

const KEY_VALUE: [&str; 2] = [
    "fermyon:spin/key-value@2.0.0",
    "spin:key-value/key-value@3.0.0",
];
const VARIABLES: [&str; 2] = [
    "fermyon:spin/variables@2.0.0",
    "spin:variables/variables@3.0.0",
];

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

/// Links Spin's key-value and variables interfaces under every name above.
pub fn add_to_linker<T: CapabilityView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    for name in KEY_VALUE {
        let mut store = linker.instance(name)?;
        store.resource("store", ResourceType::host::<KvBucket>(), kv::drop_bucket)?;
        store.func_wrap("[static]store.open", |mut store, (label,): (String,)| {
            Ok((kv::open_bucket(&mut store, label)?.map_err(SpinKvError::from),))
        })?;
        store.func_wrap_async(
            "[method]store.get",
            |mut store, (bucket, key): (Resource<KvBucket>, String)| {
                Box::new(async move {
                    let target = kv::target(&mut store, &bucket)?;
                    Ok((kv::read(target, key).await.map_err(SpinKvError::from),))
                })
            },
        )?;
        store.func_wrap_async(
            "[method]store.set",
            |mut store, (bucket, key, value): (Resource<KvBucket>, String, Vec<u8>)| {
                Box::new(async move {
                    let target = kv::target(&mut store, &bucket)?;
                    let written = kv::write(target, key, KvOp::Set(value)).await;
                    Ok((written.map(|_| ()).map_err(SpinKvError::from),))
                })
            },
        )?;
        store.func_wrap_async(
            "[method]store.delete",
            |mut store, (bucket, key): (Resource<KvBucket>, String)| {
                Box::new(async move {
                    let target = kv::target(&mut store, &bucket)?;
                    let written = kv::write(target, key, KvOp::Delete).await;
                    Ok((written.map(|_| ()).map_err(SpinKvError::from),))
                })
            },
        )?;
        store.func_wrap_async(
            "[method]store.exists",
            |mut store, (bucket, key): (Resource<KvBucket>, String)| {
                Box::new(async move {
                    let target = kv::target(&mut store, &bucket)?;
                    let found = kv::read(target, key).await;
                    Ok((found.map(|v| v.is_some()).map_err(SpinKvError::from),))
                })
            },
        )?;
        store.func_wrap_async(
            "[method]store.get-keys",
            |mut store, (bucket,): (Resource<KvBucket>,)| {
                Box::new(async move {
                    let target = kv::target(&mut store, &bucket)?;
                    Ok((kv::all_keys(target).await.map_err(SpinKvError::from),))
                })
            },
        )?;
    }
    for name in VARIABLES {
        linker
            .instance(name)?
            .func_wrap("get", |mut store, (name,): (String,)| {
                let config = &store.data_mut().capabilities().config;
                let value = match config.get(&name) {
                    Ok(Some(value)) => Ok(value),
                    Ok(None) => Err(SpinVariablesError::Undefined(format!(
                        "no variable '{name}' in the install's config"
                    ))),
                    Err(denied) => Err(SpinVariablesError::Provider(denied.message())),
                };
                Ok((value,))
            })?;
    }
    Ok(())
}
