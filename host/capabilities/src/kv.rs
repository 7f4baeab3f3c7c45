//! `wasi:keyvalue` (`cap:storage.kv`): buckets backed by the node's replicated KV database.
//!
//! Every key lives under (tenant, extension, bucket) taken from the request's install, never
//! from the guest: a bucket name is only the author's namespace inside that scope, and keys are
//! stored as a separate column, so no bucket or key bytes (separators, `..`, NUL) can reach
//! another tenant's or extension's data. Reads are local; writes go to the primary (forwarded
//! from edges, then synced back) through [`KvService`].
//!
//! Linked by hand (no WIT in this repository): the types and functions mirror
//! `wasi:keyvalue@0.2.0-draft` (`store`, `atomics`, `batch`) as the `wasmtime-wasi-keyvalue`
//! crate ships it. Values written by `increment` are decimal text, like that crate's.

use std::sync::Arc;

use alga_edge_registry::kv::KvScope;
use wasmtime::StoreContextMut;
use wasmtime::component::{
    ComponentType, Lift, Linker, LinkerInstance, Lower, Resource, ResourceType,
};

use super::{CapabilityMetrics, CapabilityView};
use crate::kv_service::{KvOp, KvOutcome, KvService, KvServiceError};

const STORE: &str = "wasi:keyvalue/store@0.2.0-draft";
const ATOMICS: &str = "wasi:keyvalue/atomics@0.2.0-draft";
const BATCH: &str = "wasi:keyvalue/batch@0.2.0-draft";

/// Keys per `list-keys` page.
const PAGE: u32 = 1000;
/// Longest bucket name, in bytes.
const MAX_BUCKET_BYTES: usize = 128;

/// `wasi:keyvalue/store.error`.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq)]
#[component(variant)]
pub enum KvError {
    /// No such bucket.
    #[component(name = "no-such-store")]
    NoSuchStore,
    /// The install was not granted `cap:storage.kv`.
    #[component(name = "access-denied")]
    AccessDenied,
    /// Anything else, with a message for the author.
    #[component(name = "other")]
    Other(String),
}

/// `wasi:keyvalue/store.key-response`.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq)]
#[component(record)]
pub struct KeyResponse {
    /// A page of keys.
    keys: Vec<String>,
    /// Where the next page starts, when there is one.
    cursor: Option<u64>,
}

/// The host side of a `bucket` resource (Spin's `store` too): just its name; the scope comes
/// from the request.
pub struct KvBucket {
    name: String,
}

/// Per-request state behind `wasi:keyvalue`.
pub struct KvState {
    service: Option<Arc<KvService>>,
    granted: bool,
    tenant: String,
    extension: String,
    max_keys: u64,
    metrics: Arc<CapabilityMetrics>,
}

impl KvState {
    /// KV for `tenant` × `extension` on `service` when `granted`, at most `max_keys` keys.
    pub fn new(
        service: Option<Arc<KvService>>,
        granted: bool,
        tenant: &str,
        extension: &str,
        max_keys: u64,
        metrics: Arc<CapabilityMetrics>,
    ) -> Self {
        Self {
            service,
            granted,
            tenant: tenant.to_owned(),
            extension: extension.to_owned(),
            max_keys,
            metrics,
        }
    }

    pub(super) fn open(&self, name: String) -> Result<KvBucket, KvError> {
        if !self.granted {
            self.metrics.deny("kv", "not_granted");
            return Err(KvError::AccessDenied);
        }
        if name.is_empty() || name.len() > MAX_BUCKET_BYTES {
            return Err(KvError::Other(format!(
                "bucket names are 1-{MAX_BUCKET_BYTES} bytes"
            )));
        }
        Ok(KvBucket { name })
    }

    /// What a call on `bucket` needs once the store is released: the service and the scope.
    pub(crate) fn target(
        &self,
        bucket: &KvBucket,
    ) -> Result<(Arc<KvService>, KvScope, u64), KvError> {
        if !self.granted {
            self.metrics.deny("kv", "not_granted");
            return Err(KvError::AccessDenied);
        }
        let service = self
            .service
            .clone()
            .ok_or_else(|| KvError::Other("this node has no KV store".into()))?;
        let scope = KvScope {
            tenant: self.tenant.clone(),
            extension: self.extension.clone(),
            bucket: bucket.name.clone(),
        };
        Ok((service, scope, self.max_keys))
    }
}

fn failed(error: KvServiceError) -> KvError {
    match &error {
        KvServiceError::Store(e) if e.status() < 500 => KvError::Other(e.to_string()),
        KvServiceError::Refused(message) => KvError::Other(message.clone()),
        _ => {
            tracing::warn!(error = %error, "KV call failed");
            KvError::Other(format!("the store is unavailable: {error}"))
        }
    }
}

/// What a KV call needs once the store is released, or why it is refused.
pub(super) type Target = Result<(Arc<KvService>, KvScope, u64), KvError>;

/// The scope of `bucket` for the calling request.
pub(super) fn target<T: CapabilityView>(
    store: &mut StoreContextMut<'_, T>,
    bucket: &Resource<KvBucket>,
) -> wasmtime::Result<Target> {
    let data = store.data_mut();
    let name = data.table().get(bucket)?.name.clone();
    Ok(data.capabilities().kv.target(&KvBucket { name }))
}

pub(super) async fn write(target: Target, key: String, op: KvOp) -> Result<KvOutcome, KvError> {
    let (service, scope, max_keys) = target?;
    service
        .write(&scope, &key, op, Some(max_keys))
        .await
        .map_err(failed)
}

pub(super) async fn read(target: Target, key: String) -> Result<Option<Vec<u8>>, KvError> {
    let (service, scope, _) = target?;
    service.get(&scope, &key).await.map_err(failed)
}

/// Adds `delta` to the counter at `key`; the new value, as the caller's draft types it
/// (`kind` names that type in the error when the value does not fit).
pub(super) async fn increment<N: TryFrom<i128>>(
    target: Target,
    key: String,
    delta: i128,
    kind: &str,
) -> Result<N, KvError> {
    match write(target, key, KvOp::Increment(delta)).await? {
        KvOutcome::Counter(value) => N::try_from(value)
            .map_err(|_| KvError::Other(format!("the counter is {value}, not {kind}"))),
        other => Err(KvError::Other(format!("unexpected outcome {other:?}"))),
    }
}

/// Up to `limit` keys of the bucket from `offset` on, in key order.
pub(super) async fn page(target: Target, offset: u64, limit: u32) -> Result<Vec<String>, KvError> {
    let (service, scope, _) = target?;
    service
        .store()
        .list(&scope, offset, limit)
        .await
        .map_err(|e| failed(e.into()))
}

/// One `list-keys` page from `offset` on, and the offset of the next page when there is one.
pub(super) async fn list_page(
    target: Target,
    offset: u64,
) -> Result<(Vec<String>, Option<u64>), KvError> {
    let keys = page(target, offset, PAGE).await?;
    let next = (keys.len() as u32 == PAGE).then(|| offset + u64::from(PAGE));
    Ok((keys, next))
}

/// Every key of the bucket, page by page.
pub(super) async fn all_keys(target: Target) -> Result<Vec<String>, KvError> {
    let mut keys = Vec::new();
    loop {
        let page = page(target.clone(), keys.len() as u64, PAGE).await?;
        let full = page.len() as u32 == PAGE;
        keys.extend(page);
        if !full {
            return Ok(keys);
        }
    }
}

/// Opens bucket `name` for the calling request into the store's resource table (the guest's
/// own refusal inside, a host failure outside).
pub(super) fn open_bucket<T: CapabilityView>(
    store: &mut StoreContextMut<'_, T>,
    name: String,
) -> wasmtime::Result<Result<Resource<KvBucket>, KvError>> {
    let data = store.data_mut();
    Ok(match data.capabilities().kv.open(name) {
        Ok(bucket) => Ok(data.table().push(bucket)?),
        Err(e) => Err(e),
    })
}

/// The destructor of a host resource `R` (a bucket, a `cas` handle) in the store's table.
pub(super) fn drop_resource<R: Send + 'static, T: CapabilityView>(
    mut store: StoreContextMut<'_, T>,
    rep: u32,
) -> wasmtime::Result<()> {
    store
        .data_mut()
        .table()
        .delete(Resource::<R>::new_own(rep))?;
    Ok(())
}

/// Links `bucket` and the functions both drafts type alike (`open`, `get`, `set`, `delete`,
/// `exists`) into the store interface `store`.
pub(super) fn add_bucket<T: CapabilityView>(
    store: &mut LinkerInstance<'_, T>,
) -> wasmtime::Result<()> {
    store.resource(
        "bucket",
        ResourceType::host::<KvBucket>(),
        drop_resource::<KvBucket, T>,
    )?;
    store.func_wrap("open", |mut store, (name,): (String,)| {
        Ok((open_bucket(&mut store, name)?,))
    })?;
    store.func_wrap_async(
        "[method]bucket.get",
        |mut store, (bucket, key): (Resource<KvBucket>, String)| {
            Box::new(async move {
                let target = target(&mut store, &bucket)?;
                Ok((read(target, key).await,))
            })
        },
    )?;
    store.func_wrap_async(
        "[method]bucket.set",
        |mut store, (bucket, key, value): (Resource<KvBucket>, String, Vec<u8>)| {
            Box::new(async move {
                let target = target(&mut store, &bucket)?;
                Ok((write(target, key, KvOp::Set(value)).await.map(|_| ()),))
            })
        },
    )?;
    store.func_wrap_async(
        "[method]bucket.delete",
        |mut store, (bucket, key): (Resource<KvBucket>, String)| {
            Box::new(async move {
                let target = target(&mut store, &bucket)?;
                Ok((write(target, key, KvOp::Delete).await.map(|_| ()),))
            })
        },
    )?;
    store.func_wrap_async(
        "[method]bucket.exists",
        |mut store, (bucket, key): (Resource<KvBucket>, String)| {
            Box::new(async move {
                let target = target(&mut store, &bucket)?;
                Ok((read(target, key).await.map(|v| v.is_some()),))
            })
        },
    )?;
    Ok(())
}

/// Links `set-many` and `delete-many` (typed alike in both drafts) into the batch interface.
pub(super) fn add_batch_writes<T: CapabilityView>(
    batch: &mut LinkerInstance<'_, T>,
) -> wasmtime::Result<()> {
    batch.func_wrap_async(
        "set-many",
        |mut store, (bucket, pairs): (Resource<KvBucket>, Vec<(String, Vec<u8>)>)| {
            Box::new(async move {
                let target = target(&mut store, &bucket)?;
                let done = async {
                    for (key, value) in pairs {
                        write(target.clone(), key, KvOp::Set(value)).await?;
                    }
                    Ok::<_, KvError>(())
                }
                .await;
                Ok((done,))
            })
        },
    )?;
    batch.func_wrap_async(
        "delete-many",
        |mut store, (bucket, keys): (Resource<KvBucket>, Vec<String>)| {
            Box::new(async move {
                let target = target(&mut store, &bucket)?;
                let done = async {
                    for key in keys {
                        write(target.clone(), key, KvOp::Delete).await?;
                    }
                    Ok::<_, KvError>(())
                }
                .await;
                Ok((done,))
            })
        },
    )?;
    Ok(())
}

/// Each of `keys` with its value, if any.
pub(super) async fn read_each(
    target: Target,
    keys: Vec<String>,
) -> Result<Vec<(String, Option<Vec<u8>>)>, KvError> {
    let mut found = Vec::with_capacity(keys.len());
    for key in keys {
        let value = read(target.clone(), key.clone()).await?;
        found.push((key, value));
    }
    Ok(found)
}

/// Links `wasi:keyvalue/{store,atomics,batch}`.
pub fn add_to_linker<T: CapabilityView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let mut store = linker.instance(STORE)?;
    add_bucket(&mut store)?;
    store.func_wrap_async(
        "[method]bucket.list-keys",
        |mut store, (bucket, cursor): (Resource<KvBucket>, Option<u64>)| {
            Box::new(async move {
                let target = target(&mut store, &bucket)?;
                let listed = async {
                    let (keys, cursor) = list_page(target, cursor.unwrap_or(0)).await?;
                    Ok::<_, KvError>(KeyResponse { keys, cursor })
                }
                .await;
                Ok((listed,))
            })
        },
    )?;

    let mut atomics = linker.instance(ATOMICS)?;
    atomics.func_wrap_async(
        "increment",
        |mut store, (bucket, key, delta): (Resource<KvBucket>, String, u64)| {
            Box::new(async move {
                let target = target(&mut store, &bucket)?;
                Ok((increment::<u64>(target, key, delta.into(), "a u64").await,))
            })
        },
    )?;

    let mut batch = linker.instance(BATCH)?;
    batch.func_wrap_async(
        "get-many",
        |mut store, (bucket, keys): (Resource<KvBucket>, Vec<String>)| {
            Box::new(async move {
                let target = target(&mut store, &bucket)?;
                // This draft answers only the keys that exist.
                let found = read_each(target, keys).await.map(|found| {
                    found
                        .into_iter()
                        .map(|(key, value)| value.map(|value| (key, value)))
                        .collect::<Vec<_>>()
                });
                Ok((found,))
            })
        },
    )?;
    add_batch_writes(&mut batch)?;
    Ok(())
}
