//! `wasi:keyvalue@0.2.0-draft2` (`cap:storage.kv`), the draft Spin hosts: the same buckets as
//! [`super::kv`] (one tenant × extension scope, the bucket name only a namespace inside it),
//! typed as that draft has them: string cursors, s64 counters, compare-and-swap, and
//! `get-many` answering every key asked for.
//!
//! Linked by hand (no WIT in this repository): the types mirror the draft as the spin-sdk
//! crate ships it (`wasi-keyvalue-2024-10-17`).

use wasmtime::component::{ComponentType, Lift, Linker, Lower, Resource, ResourceType};

use super::CapabilityView;
use super::kv::{self, KvBucket, KvError, Target};
use crate::kv_service::{KvOp, KvOutcome};

const STORE: &str = "wasi:keyvalue/store@0.2.0-draft2";
const ATOMICS: &str = "wasi:keyvalue/atomics@0.2.0-draft2";
const BATCH: &str = "wasi:keyvalue/batch@0.2.0-draft2";

/// `wasi:keyvalue/store.key-response` of this draft: the cursor is a string.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq)]
#[component(record)]
pub struct KeyResponse {
    /// A page of keys.
    keys: Vec<String>,
    /// Where the next page starts, when there is one.
    cursor: Option<String>,
}

/// The host side of a `cas` handle: the key and the value it saw when it was made.
pub struct KvCas {
    target: Target,
    key: String,
    current: Option<Vec<u8>>,
}

/// `wasi:keyvalue/atomics.cas-error`.
#[derive(ComponentType, Lift, Lower, Debug)]
#[component(variant)]
pub enum CasError {
    /// The store failed (or refused the write).
    #[component(name = "store-error")]
    StoreError(KvError),
    /// The value changed since the handle was made: a fresh handle over the new value.
    #[component(name = "cas-failed")]
    CasFailed(Resource<KvCas>),
}

/// A `cas` handle over `key` as it is now.
async fn snapshot(target: Target, key: String) -> Result<KvCas, KvError> {
    let current = kv::read(target.clone(), key.clone()).await?;
    Ok(KvCas {
        target,
        key,
        current,
    })
}

/// Links `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2`.
pub fn add_to_linker<T: CapabilityView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let mut store = linker.instance(STORE)?;
    kv::add_bucket(&mut store)?;
    store.func_wrap_async(
        "[method]bucket.list-keys",
        |mut store, (bucket, cursor): (Resource<KvBucket>, Option<String>)| {
            Box::new(async move {
                let target = kv::target(&mut store, &bucket)?;
                let listed = async {
                    // The cursor is ours: the offset of the next page, in decimal.
                    let offset = match cursor.as_deref() {
                        None => 0,
                        Some(text) => text.parse::<u64>().map_err(|_| {
                            KvError::Other(format!("'{text}' is not a cursor list-keys gave"))
                        })?,
                    };
                    let (keys, next) = kv::list_page(target, offset).await?;
                    Ok::<_, KvError>(KeyResponse {
                        keys,
                        cursor: next.map(|offset| offset.to_string()),
                    })
                }
                .await;
                Ok((listed,))
            })
        },
    )?;
    add_atomics(linker)?;
    let mut batch = linker.instance(BATCH)?;
    batch.func_wrap_async(
        "get-many",
        |mut store, (bucket, keys): (Resource<KvBucket>, Vec<String>)| {
            Box::new(async move {
                let target = kv::target(&mut store, &bucket)?;
                // This draft answers every key asked for, with its value if any.
                Ok((kv::read_each(target, keys).await,))
            })
        },
    )?;
    kv::add_batch_writes(&mut batch)?;
    Ok(())
}

/// `atomics`: increment and the `cas` resource (compare-and-swap over a snapshot).
fn add_atomics<T: CapabilityView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let mut atomics = linker.instance(ATOMICS)?;
    atomics.resource(
        "cas",
        ResourceType::host::<KvCas>(),
        kv::drop_resource::<KvCas, T>,
    )?;
    atomics.func_wrap_async(
        "increment",
        |mut store, (bucket, key, delta): (Resource<KvBucket>, String, i64)| {
            Box::new(async move {
                let target = kv::target(&mut store, &bucket)?;
                Ok((kv::increment::<i64>(target, key, delta.into(), "an s64").await,))
            })
        },
    )?;
    atomics.func_wrap_async(
        "[static]cas.new",
        |mut store, (bucket, key): (Resource<KvBucket>, String)| {
            Box::new(async move {
                let target = kv::target(&mut store, &bucket)?;
                let made = match snapshot(target, key).await {
                    Ok(cas) => Ok(store.data_mut().table().push(cas)?),
                    Err(e) => Err(e),
                };
                Ok((made,))
            })
        },
    )?;
    atomics.func_wrap(
        "[method]cas.current",
        |mut store, (cas,): (Resource<KvCas>,)| {
            let cas = store.data_mut().table().get(&cas)?;
            Ok((Ok::<_, KvError>(cas.current.clone()),))
        },
    )?;
    atomics.func_wrap_async(
        "swap",
        |mut store, (cas, value): (Resource<KvCas>, Vec<u8>)| {
            Box::new(async move {
                let cas = store.data_mut().table().delete(cas)?;
                let op = KvOp::Swap {
                    expected: cas.current,
                    value,
                };
                let swapped = match kv::write(cas.target.clone(), cas.key.clone(), op).await {
                    Ok(KvOutcome::Swapped(true)) => Ok(()),
                    Ok(KvOutcome::Swapped(false)) => match snapshot(cas.target, cas.key).await {
                        Ok(fresh) => {
                            Err(CasError::CasFailed(store.data_mut().table().push(fresh)?))
                        }
                        Err(e) => Err(CasError::StoreError(e)),
                    },
                    Ok(other) => Err(CasError::StoreError(KvError::Other(format!(
                        "unexpected outcome {other:?}"
                    )))),
                    Err(e) => Err(CasError::StoreError(e)),
                };
                Ok((swapped,))
            })
        },
    )?;
    Ok(())
}
