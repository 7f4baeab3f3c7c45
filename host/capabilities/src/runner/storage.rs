//! `storage.get/put/delete/list-entries` (`cap:storage.kv`): entries of the install's
//! replicated KV data ([`crate::kv_service`]), with the namespace as the bucket, so the data is
//! the same as what `wasi:keyvalue` sees under that bucket name. Every write gives the key a
//! new revision; `put` with a revision writes only over that revision (`conflict` otherwise).
//! Writes at an edge go to the primary, as every KV write does.

use super::bindings::alga::extension::storage;
use super::types::{StorageEntry, StorageError};
use crate::RequestCapabilities;
use crate::kv::{KvError, Target};
use crate::kv_service::{KvOp, KvOutcome, KvServiceError};

/// Entries per `list-entries` page. The next page starts after the cursor, the last key of
/// the page before (the interface returns no cursor of its own).
const PAGE: u32 = 100;

impl RequestCapabilities {
    /// The KV scope of `namespace` for this request, or why there is none.
    fn namespace(&self, namespace: &str) -> Target {
        let bucket = self.kv.open(namespace.to_owned())?;
        self.kv.target(&bucket)
    }
}

/// Alga's error for a refused scope.
fn refused(error: KvError) -> StorageError {
    match error {
        KvError::AccessDenied => StorageError::Denied,
        other => {
            tracing::info!(error = ?other, "storage call refused");
            StorageError::Internal
        }
    }
}

/// Alga's error for a failed read or write (the interface has no room for a message: it goes
/// to the node log).
fn failed(error: KvServiceError) -> StorageError {
    tracing::warn!(error = %error, "storage call failed");
    StorageError::Internal
}

impl storage::Host for RequestCapabilities {
    async fn get(&mut self, namespace: String, key: String) -> Result<StorageEntry, StorageError> {
        let (service, scope, _) = self.namespace(&namespace).map_err(refused)?;
        match service.get_entry(&scope, &key).await.map_err(failed)? {
            Some((value, revision)) => Ok(StorageEntry {
                namespace,
                key,
                value,
                revision: Some(revision),
            }),
            None => Err(StorageError::Missing),
        }
    }

    async fn put(&mut self, entry: StorageEntry) -> Result<StorageEntry, StorageError> {
        let (service, scope, max_keys) = self.namespace(&entry.namespace).map_err(refused)?;
        let op = KvOp::Put {
            value: entry.value.clone(),
            if_revision: entry.revision,
        };
        match service
            .write(&scope, &entry.key, op, Some(max_keys))
            .await
            .map_err(failed)?
        {
            KvOutcome::Revision(Some(revision)) => Ok(StorageEntry {
                revision: Some(revision),
                ..entry
            }),
            KvOutcome::Revision(None) => Err(StorageError::Conflict),
            other => Err(failed(KvServiceError::Forward(format!(
                "unexpected outcome {other:?}"
            )))),
        }
    }

    async fn delete(&mut self, namespace: String, key: String) -> Result<(), StorageError> {
        let (service, scope, _) = self.namespace(&namespace).map_err(refused)?;
        // Deleting an absent key succeeds, as in `wasi:keyvalue`.
        service
            .write(&scope, &key, KvOp::Delete, None)
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn list_entries(
        &mut self,
        namespace: String,
        cursor: Option<String>,
    ) -> Result<Vec<StorageEntry>, StorageError> {
        let (service, scope, _) = self.namespace(&namespace).map_err(refused)?;
        let entries = service
            .list_entries(&scope, cursor.as_deref().filter(|c| !c.is_empty()), PAGE)
            .await
            .map_err(failed)?;
        Ok(entries
            .into_iter()
            .map(|(key, value, revision)| StorageEntry {
                namespace: namespace.clone(),
                key,
                value,
                revision: Some(revision),
            })
            .collect())
    }
}
