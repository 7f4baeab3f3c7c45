//! Spin's key-value and variables as spin-sdk 5 imports them: synchronous functions.

use wasmtime::component::{Linker, Resource, ResourceType};

use super::super::CapabilityView;
use super::super::kv::{self, KvBucket};
use super::{SpinKvError, variable};
use crate::kv_service::KvOp;

/// Links the key-value interface `name`.
pub(super) fn add_key_value<T: CapabilityView>(
    linker: &mut Linker<T>,
    name: &str,
) -> wasmtime::Result<()> {
    let mut store = linker.instance(name)?;
    store.resource(
        "store",
        ResourceType::host::<KvBucket>(),
        kv::drop_resource::<KvBucket, T>,
    )?;
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
    Ok(())
}

/// Links the variables interface `name`.
pub(super) fn add_variables<T: CapabilityView>(
    linker: &mut Linker<T>,
    name: &str,
) -> wasmtime::Result<()> {
    linker
        .instance(name)?
        .func_wrap("get", |mut store, (name,): (String,)| {
            Ok((variable(store.data_mut(), &name),))
        })
}
