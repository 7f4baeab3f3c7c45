//! Spin's key-value and variables as spin-sdk 7 (WASIp3) imports them: `async` functions, and
//! `get-keys` answering a stream of keys plus a future of the listing's result.

use wasmtime::AsContextMut;
use wasmtime::component::{Accessor, FutureReader, Linker, Resource, ResourceType, StreamReader};

use super::super::CapabilityView;
use super::super::kv::{self, KvBucket, Target};
use super::{SpinKvError, variable};
use crate::kv_service::KvOp;

/// The KV scope of `bucket` for the calling request.
fn target<T: CapabilityView>(
    accessor: &Accessor<T>,
    bucket: &Resource<KvBucket>,
) -> wasmtime::Result<Target> {
    accessor.with(|mut access| kv::target(&mut access.as_context_mut(), bucket))
}

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
    store.func_wrap_concurrent(
        "[static]store.open",
        |accessor: &Accessor<T>, (label,): (String,)| {
            Box::pin(async move {
                let opened = accessor
                    .with(|mut access| kv::open_bucket(&mut access.as_context_mut(), label))?;
                Ok((opened.map_err(SpinKvError::from),))
            })
        },
    )?;
    store.func_wrap_concurrent(
        "[method]store.get",
        |accessor: &Accessor<T>, (bucket, key): (Resource<KvBucket>, String)| {
            Box::pin(async move {
                let target = target(accessor, &bucket)?;
                Ok((kv::read(target, key).await.map_err(SpinKvError::from),))
            })
        },
    )?;
    store.func_wrap_concurrent(
        "[method]store.set",
        |accessor: &Accessor<T>, (bucket, key, value): (Resource<KvBucket>, String, Vec<u8>)| {
            Box::pin(async move {
                let target = target(accessor, &bucket)?;
                let written = kv::write(target, key, KvOp::Set(value)).await;
                Ok((written.map(|_| ()).map_err(SpinKvError::from),))
            })
        },
    )?;
    store.func_wrap_concurrent(
        "[method]store.delete",
        |accessor: &Accessor<T>, (bucket, key): (Resource<KvBucket>, String)| {
            Box::pin(async move {
                let target = target(accessor, &bucket)?;
                let written = kv::write(target, key, KvOp::Delete).await;
                Ok((written.map(|_| ()).map_err(SpinKvError::from),))
            })
        },
    )?;
    store.func_wrap_concurrent(
        "[method]store.exists",
        |accessor: &Accessor<T>, (bucket, key): (Resource<KvBucket>, String)| {
            Box::pin(async move {
                let target = target(accessor, &bucket)?;
                let found = kv::read(target, key).await;
                Ok((found.map(|v| v.is_some()).map_err(SpinKvError::from),))
            })
        },
    )?;
    store.func_wrap_concurrent(
        "[method]store.get-keys",
        |accessor: &Accessor<T>, (bucket,): (Resource<KvBucket>,)| {
            Box::pin(async move {
                let target = target(accessor, &bucket)?;
                // The keys per install are bounded (`kv_max_keys`), so one listing is sent
                // whole: the stream carries it, the future says whether it was complete.
                let (keys, outcome) = match kv::all_keys(target).await {
                    Ok(keys) => (keys, Ok(())),
                    Err(error) => (Vec::new(), Err(SpinKvError::from(error))),
                };
                accessor.with(|mut access| {
                    let keys: StreamReader<String> = StreamReader::new(&mut access, keys)?;
                    let outcome: FutureReader<Result<(), SpinKvError>> =
                        FutureReader::new(&mut access, async move {
                            Ok::<_, wasmtime::Error>(outcome)
                        })?;
                    Ok(((keys, outcome),))
                })
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
    linker.instance(name)?.func_wrap_concurrent(
        "get",
        |accessor: &Accessor<T>, (name,): (String,)| {
            Box::pin(
                async move { Ok((accessor.with(|mut access| variable(access.get(), &name)),)) },
            )
        },
    )
}
