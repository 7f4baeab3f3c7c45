//! Bundles in an object store: `s3://bucket/prefix` (credentials, region and endpoint from the
//! standard `AWS_*` environment variables, so MinIO and other S3-compatible services work through
//! `AWS_ENDPOINT` + `AWS_ALLOW_HTTP`), or any other `object_store` URL (`file:///dir`,
//! `memory://`). Keys are `<prefix>/sha256/<hex>`.
//!
//! An object PUT is atomic (readers see all of it or nothing), so no temp-and-rename is needed;
//! reads re-check the hash.

use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::{StoreError, Stored};
use crate::bundle::ContentHash;

/// Bundles by content hash in an object store.
#[derive(Clone)]
pub struct ObjectBundleStore {
    inner: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    url: String,
}

impl std::fmt::Debug for ObjectBundleStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBundleStore")
            .field("url", &self.url)
            .finish()
    }
}

impl ObjectBundleStore {
    /// Opens the store at `url`.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let bad = |reason: String| StoreError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let (inner, prefix): (Arc<dyn ObjectStore>, ObjectPath) = match parsed.scheme() {
            "s3" | "s3a" => {
                install_tls_provider();
                let store = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                let prefix =
                    ObjectPath::from_url_path(parsed.path()).map_err(|e| bad(e.to_string()))?;
                (Arc::new(store), prefix)
            }
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| bad("not an absolute file path".into()))?;
                std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
                    path: dir.display().to_string(),
                    source,
                })?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| bad(e.to_string()))?;
                (Arc::new(store), ObjectPath::default())
            }
            "memory" => (
                Arc::new(object_store::memory::InMemory::new()),
                ObjectPath::default(),
            ),
            other => {
                return Err(bad(format!(
                    "unsupported scheme '{other}' (use s3://, file:// or memory://)"
                )));
            }
        };
        Ok(Self {
            inner,
            prefix,
            url: url.to_owned(),
        })
    }

    /// The URL it was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn key(&self, hash: &ContentHash) -> ObjectPath {
        self.prefix.clone().join("sha256").join(hash.hex())
    }

    fn error(&self, key: &ObjectPath, error: object_store::Error) -> StoreError {
        StoreError::Object {
            location: format!("{} key {key}", self.url),
            reason: error.to_string(),
        }
    }

    /// Stores `bytes` under `hash`, which they must hash to.
    pub async fn put(&self, hash: &ContentHash, bytes: &[u8]) -> Result<Stored, StoreError> {
        let actual = ContentHash::of(bytes);
        if &actual != hash {
            return Err(StoreError::HashMismatch {
                expected: hash.clone(),
                actual,
            });
        }
        if self.contains(hash).await? {
            return Ok(Stored::AlreadyPresent);
        }
        // Content-addressed: a racing writer of the same key writes the same bytes, so a plain
        // overwrite is safe and works on S3-compatible services without conditional PUT.
        let key = self.key(hash);
        self.inner
            .put(&key, PutPayload::from(bytes.to_vec()))
            .await
            .map_err(|e| self.error(&key, e))?;
        Ok(Stored::Created)
    }

    /// The bundle stored under `hash`, verified against it; `None` when absent.
    pub async fn get(&self, hash: &ContentHash) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.key(hash);
        let result = match self.inner.get(&key).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error(&key, e)),
        };
        let bytes = result.bytes().await.map_err(|e| self.error(&key, e))?;
        let actual = ContentHash::of(&bytes);
        if &actual != hash {
            return Err(StoreError::HashMismatch {
                expected: hash.clone(),
                actual,
            });
        }
        Ok(Some(bytes.to_vec()))
    }

    /// Whether `hash` is stored.
    pub async fn contains(&self, hash: &ContentHash) -> Result<bool, StoreError> {
        let key = self.key(hash);
        match self.inner.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error(&key, e)),
        }
    }

    /// Removes the bundle under `hash`, if stored.
    pub async fn remove(&self, hash: &ContentHash) -> Result<(), StoreError> {
        let key = self.key(hash);
        match self.inner.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(&key, e)),
        }
    }
}

/// HTTPS to S3 uses rustls with the ring provider (the one the rest of the binary already
/// builds), installed once per process; a provider installed earlier by someone else is kept.
pub(crate) fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_by_hash_idempotently_and_verifies_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("bucket").display());
        let store = ObjectBundleStore::open(&url).unwrap();
        let bytes = b"bundle bytes".to_vec();
        let hash = ContentHash::of(&bytes);
        assert!(!store.contains(&hash).await.unwrap());
        assert_eq!(store.get(&hash).await.unwrap(), None);
        assert_eq!(store.put(&hash, &bytes).await.unwrap(), Stored::Created);
        assert_eq!(
            store.put(&hash, &bytes).await.unwrap(),
            Stored::AlreadyPresent
        );
        assert_eq!(store.get(&hash).await.unwrap().unwrap(), bytes);
        let on_disk = dir.path().join("bucket/sha256").join(hash.hex());
        assert_eq!(std::fs::read(&on_disk).unwrap(), bytes);

        let other = ContentHash::of(b"something else");
        assert!(matches!(
            store.put(&other, &bytes).await,
            Err(StoreError::HashMismatch { .. })
        ));
        assert!(!store.contains(&other).await.unwrap());

        // Altered in the bucket: refused on read.
        std::fs::write(&on_disk, b"tampered").unwrap();
        assert!(matches!(
            store.get(&hash).await,
            Err(StoreError::HashMismatch { .. })
        ));
        store.remove(&hash).await.unwrap();
        assert!(!store.contains(&hash).await.unwrap());
        store.remove(&hash).await.unwrap();
    }

    #[test]
    fn refuses_unusable_urls_with_the_reason() {
        for url in ["ftp://host/x", "file://relative", "::nope"] {
            let error = ObjectBundleStore::open(url).unwrap_err();
            assert!(matches!(error, StoreError::BadUrl { .. }), "{url}: {error}");
            assert!(error.to_string().contains(url), "{error}");
        }
    }

    #[test]
    fn s3_urls_take_the_bucket_and_prefix() {
        let store = ObjectBundleStore::open("s3://bundles/edge/eu").unwrap();
        let hash = ContentHash::of(b"x");
        assert_eq!(
            store.key(&hash).to_string(),
            format!("edge/eu/sha256/{}", hash.hex())
        );
    }
}
