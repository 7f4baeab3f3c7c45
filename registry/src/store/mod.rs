//! The content-addressed bundle store: bundles by `sha256/<hex>`, written atomically, re-hashed
//! on every read, idempotent on re-store.
//!
//! - [`LocalBundleStore`]: a local directory (the default).
//! - [`ObjectBundleStore`]: an S3-compatible bucket (or any `object_store` URL).
//!
//! [`BundleStore`] is what the registry and the host use; [`BundleStore::open`] picks the
//! backend from a path or URL.

mod local;
pub(crate) mod object;

use std::path::PathBuf;

pub use local::LocalBundleStore;
pub use object::ObjectBundleStore;

use crate::bundle::ContentHash;

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bytes do not hash to the content hash they were stored under.
    #[error("bundle bytes hash to {actual}, not {expected}")]
    HashMismatch {
        /// The hash asked for.
        expected: ContentHash,
        /// The hash of the bytes.
        actual: ContentHash,
    },
    /// A filesystem operation failed.
    #[error("bundle store {path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The store URL is not usable.
    #[error("invalid bundle store URL '{url}': {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why.
        reason: String,
    },
    /// An object store operation failed.
    #[error("bundle store {location}: {reason}")]
    Object {
        /// The object (store URL and key).
        location: String,
        /// The backend's message.
        reason: String,
    },
}

/// Whether a put wrote anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The bundle was written.
    Created,
    /// The same content was already there.
    AlreadyPresent,
}

/// A bundle store on one of the backends.
#[derive(Debug, Clone)]
pub enum BundleStore {
    /// A local directory.
    Local(LocalBundleStore),
    /// An object store bucket.
    Object(ObjectBundleStore),
}

impl BundleStore {
    /// Opens the store at `spec`: a URL with a scheme (`s3://bucket/prefix`, `file:///dir`,
    /// `memory://`) selects the object-store backend, anything else is a local directory.
    pub fn open(spec: &str) -> Result<Self, StoreError> {
        if spec.contains("://") {
            Ok(Self::Object(ObjectBundleStore::open(spec)?))
        } else {
            Self::local(spec)
        }
    }

    /// A store in the local directory `root`.
    pub fn local(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        Ok(Self::Local(LocalBundleStore::open(root)?))
    }

    /// Where the store is, for logs.
    pub fn describe(&self) -> String {
        match self {
            Self::Local(store) => store.root().display().to_string(),
            Self::Object(store) => store.url().to_owned(),
        }
    }

    /// Stores `bytes` under `hash`, which they must hash to.
    pub async fn put(&self, hash: &ContentHash, bytes: &[u8]) -> Result<Stored, StoreError> {
        match self {
            Self::Local(store) => store.put(hash, bytes),
            Self::Object(store) => store.put(hash, bytes).await,
        }
    }

    /// The bundle stored under `hash`, verified against it; `None` when absent.
    pub async fn get(&self, hash: &ContentHash) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Self::Local(store) => store.get(hash),
            Self::Object(store) => store.get(hash).await,
        }
    }

    /// Whether `hash` is stored.
    pub async fn contains(&self, hash: &ContentHash) -> Result<bool, StoreError> {
        match self {
            Self::Local(store) => Ok(store.contains(hash)),
            Self::Object(store) => store.contains(hash).await,
        }
    }

    /// Removes the bundle under `hash`, if stored.
    pub async fn remove(&self, hash: &ContentHash) -> Result<(), StoreError> {
        match self {
            Self::Local(store) => store.remove(hash),
            Self::Object(store) => store.remove(hash).await,
        }
    }
}

impl From<LocalBundleStore> for BundleStore {
    fn from(store: LocalBundleStore) -> Self {
        Self::Local(store)
    }
}
