//! Key-value storage (`cap:storage.kv`, `wasi:keyvalue`): buckets scoped by the host to this
//! tenant and extension; the bucket name is only your own namespace.

use crate::CapabilityError;
use crate::bindings::wasi::keyvalue::{atomics, store};

const CAP: &str = "cap:storage.kv";

fn error(e: store::Error) -> CapabilityError {
    match e {
        store::Error::AccessDenied => CapabilityError::Denied(CAP),
        store::Error::NoSuchStore => CapabilityError::Failed("no such bucket".into()),
        store::Error::Other(message) => CapabilityError::Failed(message),
    }
}

/// An open bucket.
pub struct Bucket(store::Bucket);

impl Bucket {
    /// Opens bucket `name` (1-128 bytes).
    pub fn open(name: &str) -> Result<Self, CapabilityError> {
        store::open(name).map(Bucket).map_err(error)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CapabilityError> {
        self.0.get(key).map_err(error)
    }

    /// The value of `key` as UTF-8 text (lossy).
    pub fn get_string(&self, key: &str) -> Result<Option<String>, CapabilityError> {
        Ok(self
            .get(key)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Stores `value` at `key`.
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<(), CapabilityError> {
        self.0.set(key, value.as_ref()).map_err(error)
    }

    /// Removes `key`.
    pub fn delete(&self, key: &str) -> Result<(), CapabilityError> {
        self.0.delete(key).map_err(error)
    }

    /// Every key of the bucket, sorted (all pages).
    pub fn keys(&self) -> Result<Vec<String>, CapabilityError> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.0.list_keys(cursor).map_err(error)?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// Adds `delta` to the counter at `key` (absent counts as 0); the new value.
    pub fn increment(&self, key: &str, delta: u64) -> Result<u64, CapabilityError> {
        atomics::increment(&self.0, key, delta).map_err(error)
    }
}
