//! TEMPORARY placeholder until the KV revision store lands.
use super::bindings::alga::extension::storage;
use super::types::{StorageEntry, StorageError};
use crate::RequestCapabilities;
impl storage::Host for RequestCapabilities {
    async fn get(&mut self, _n: String, _k: String) -> Result<StorageEntry, StorageError> {
        Err(StorageError::Internal)
    }
    async fn put(&mut self, _e: StorageEntry) -> Result<StorageEntry, StorageError> {
        Err(StorageError::Internal)
    }
    async fn delete(&mut self, _n: String, _k: String) -> Result<(), StorageError> {
        Err(StorageError::Internal)
    }
    async fn list_entries(
        &mut self,
        _n: String,
        _c: Option<String>,
    ) -> Result<Vec<StorageEntry>, StorageError> {
        Err(StorageError::Internal)
    }
}
