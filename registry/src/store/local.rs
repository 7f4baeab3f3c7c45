//! Bundles in a local directory: `<root>/sha256/<hex>`.
//!
//! Writes are atomic (temp file, fsync, rename), so a crash mid-write leaves either nothing or
//! the whole bundle; re-storing the same hash is a no-op. Reads re-check the hash, so a bundle
//! altered on disk is refused rather than served.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{StoreError, Stored};
use crate::bundle::ContentHash;

/// Bundles by content hash in a local directory.
#[derive(Debug, Clone)]
pub struct LocalBundleStore {
    root: PathBuf,
}

impl LocalBundleStore {
    /// Opens (creating if needed) a store rooted at `root`, removing temp files a crash left.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        let dir = root.join("sha256");
        fs::create_dir_all(&dir).map_err(|source| io_error(&dir, source))?;
        let entries = fs::read_dir(&dir).map_err(|source| io_error(&dir, source))?;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Self { root })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `hash` lives (whether or not it is stored).
    pub fn path(&self, hash: &ContentHash) -> PathBuf {
        self.root.join("sha256").join(hash.hex())
    }

    /// Whether `hash` is stored.
    pub fn contains(&self, hash: &ContentHash) -> bool {
        self.path(hash).is_file()
    }

    /// Stores `bytes` under `hash`, which they must hash to.
    pub fn put(&self, hash: &ContentHash, bytes: &[u8]) -> Result<Stored, StoreError> {
        let actual = ContentHash::of(bytes);
        if &actual != hash {
            return Err(StoreError::HashMismatch {
                expected: hash.clone(),
                actual,
            });
        }
        let path = self.path(hash);
        if path.is_file() {
            return Ok(Stored::AlreadyPresent);
        }
        let dir = path.parent().expect("store paths have a parent");
        // Unique per writer, so concurrent puts of one hash never share (and truncate) a file.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let writer = NEXT.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(
            ".tmp-{}-{}-{writer}",
            hash.hex(),
            std::process::id()
        ));
        let write = || -> std::io::Result<()> {
            let mut file = fs::File::create(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&temp, &path)?;
            // Persist the rename itself.
            fs::File::open(dir)?.sync_all()
        };
        write().map_err(|source| {
            let _ = fs::remove_file(&temp);
            io_error(&path, source)
        })?;
        Ok(Stored::Created)
    }

    /// The bundle stored under `hash`, verified against it; `None` when absent.
    pub fn get(&self, hash: &ContentHash) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(hash);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(io_error(&path, source)),
        };
        let actual = ContentHash::of(&bytes);
        if &actual != hash {
            return Err(StoreError::HashMismatch {
                expected: hash.clone(),
                actual,
            });
        }
        Ok(Some(bytes))
    }

    /// Removes the bundle under `hash`, if stored.
    pub fn remove(&self, hash: &ContentHash) -> Result<(), StoreError> {
        let path = self.path(hash);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(io_error(&path, source)),
        }
    }
}

fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_by_hash_idempotently_and_verifies_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBundleStore::open(dir.path()).unwrap();
        let bytes = b"bundle bytes".to_vec();
        let hash = ContentHash::of(&bytes);
        assert!(!store.contains(&hash));
        assert_eq!(store.get(&hash).unwrap(), None);
        assert_eq!(store.put(&hash, &bytes).unwrap(), Stored::Created);
        assert_eq!(store.put(&hash, &bytes).unwrap(), Stored::AlreadyPresent);
        assert_eq!(store.get(&hash).unwrap().unwrap(), bytes);
        assert_eq!(
            store.path(&hash),
            dir.path().join("sha256").join(hash.hex())
        );

        // Bytes under the wrong hash are refused and leave nothing behind.
        let other = ContentHash::of(b"something else");
        assert!(matches!(
            store.put(&other, &bytes),
            Err(StoreError::HashMismatch { .. })
        ));
        assert!(!store.contains(&other));
        assert_eq!(
            std::fs::read_dir(dir.path().join("sha256"))
                .unwrap()
                .count(),
            1
        );

        // Altered on disk: refused on read.
        std::fs::write(store.path(&hash), b"tampered").unwrap();
        assert!(matches!(
            store.get(&hash),
            Err(StoreError::HashMismatch { .. })
        ));
        store.remove(&hash).unwrap();
        assert!(!store.contains(&hash));
    }

    #[test]
    fn concurrent_puts_of_one_bundle_store_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBundleStore::open(dir.path()).unwrap();
        let bytes = vec![7u8; 4 << 20];
        let hash = ContentHash::of(&bytes);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| store.put(&hash, &bytes).unwrap());
            }
        });
        assert_eq!(store.get(&hash).unwrap().unwrap().len(), bytes.len());
        assert_eq!(
            std::fs::read_dir(dir.path().join("sha256"))
                .unwrap()
                .count(),
            1,
            "no temp files left"
        );
    }

    #[test]
    fn reopening_clears_temp_files_a_crash_left() {
        let dir = tempfile::tempdir().unwrap();
        LocalBundleStore::open(dir.path()).unwrap();
        let leftover = dir.path().join("sha256/.tmp-abc-1");
        std::fs::write(&leftover, b"half").unwrap();
        LocalBundleStore::open(dir.path()).unwrap();
        assert!(!leftover.exists());
    }
}
