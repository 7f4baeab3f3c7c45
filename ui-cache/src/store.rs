//! Extracted bundles on disk, indexes and hot files in memory, all bounded.

use std::collections::HashMap;
use std::fmt::Display;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lru::LruCache;

use crate::compress::Encoding;
use crate::index::{UiFile, UiIndex, extract};

/// Why the cache could not answer.
#[derive(Debug, thiserror::Error)]
pub enum UiCacheError {
    /// The bundle could not be loaded.
    #[error("cannot load the bundle: {0}")]
    Load(String),
    /// Disk I/O failed.
    #[error("UI cache I/O on {path}: {source}")]
    Io {
        /// What was being read or written.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A stored index is unreadable.
    #[error("corrupt UI index {0}: {1}")]
    Corrupt(PathBuf, String),
    /// The bundle was evicted while being read; index it again.
    #[error("the bundle was evicted from the UI cache")]
    Evicted,
    /// Not a content hash this cache can name a folder after.
    #[error("'{0}' is not 64 lowercase hex characters")]
    BadHash(String),
}

/// Bounds of the cache.
#[derive(Debug, Clone, Copy)]
pub struct UiCacheLimits {
    /// Bytes of extracted bundles kept on disk.
    pub disk_bytes: u64,
    /// Bytes of hot files kept in memory.
    pub memory_bytes: u64,
    /// Largest file kept in memory.
    pub memory_file_bytes: u64,
    /// Bundle indexes kept in memory.
    pub indexes: usize,
}

impl Default for UiCacheLimits {
    fn default() -> Self {
        Self {
            disk_bytes: 1 << 30,
            memory_bytes: 64 << 20,
            memory_file_bytes: 256 << 10,
            indexes: 1024,
        }
    }
}

/// Hot files: LRU bounded by total bytes.
struct Hot {
    files: LruCache<(String, String), Bytes>,
    bytes: u64,
}

/// Extension UI files by bundle content hash.
pub struct UiCache {
    dir: PathBuf,
    limits: UiCacheLimits,
    indexes: Mutex<LruCache<String, Arc<UiIndex>>>,
    hot: Mutex<Hot>,
    /// One extraction at a time per bundle (a second request waits and reuses it).
    extracting: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> UiCacheError + '_ {
    move |source| UiCacheError::Io {
        path: path.to_owned(),
        source,
    }
}

impl UiCache {
    /// A cache under `dir` (created if needed).
    pub fn open(dir: impl Into<PathBuf>, limits: UiCacheLimits) -> Result<Self, UiCacheError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let entries = NonZeroUsize::new(limits.indexes.max(1)).expect("at least one");
        Ok(Self {
            dir,
            limits,
            indexes: Mutex::new(LruCache::new(entries)),
            hot: Mutex::new(Hot {
                files: LruCache::unbounded(),
                bytes: 0,
            }),
            extracting: Mutex::new(HashMap::new()),
        })
    }

    fn bundle_dir(&self, hex: &str) -> PathBuf {
        self.dir.join(hex)
    }

    /// The index of the bundle `hex` (its content hash without `sha256:`); `load` supplies its
    /// `ui/` files (path below `ui/`, bytes) when it is not extracted yet.
    pub async fn index<F, Fut, E>(&self, hex: &str, load: F) -> Result<Arc<UiIndex>, UiCacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<(String, Vec<u8>)>, E>>,
        E: Display,
    {
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(UiCacheError::BadHash(hex.to_owned()));
        }
        if let Some(index) = self.lock_indexes().get(hex) {
            return Ok(index.clone());
        }
        let gate = self
            .extracting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(hex.to_owned())
            .or_default()
            .clone();
        let _extracting = gate.lock().await;
        let found = match self.read_index(hex).await? {
            Some(index) => index,
            None => {
                let files = load()
                    .await
                    .map_err(|e| UiCacheError::Load(e.to_string()))?;
                let dir = self.dir.clone();
                let hex_owned = hex.to_owned();
                let index =
                    tokio::task::spawn_blocking(move || write_bundle(&dir, &hex_owned, files))
                        .await
                        .map_err(|e| {
                            UiCacheError::Load(format!("extraction task failed: {e}"))
                        })??;
                self.evict_disk(hex).await;
                index
            }
        };
        let index = Arc::new(found);
        self.lock_indexes().put(hex.to_owned(), index.clone());
        self.extracting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(hex);
        Ok(index)
    }

    /// The bytes of `file` of bundle `hex` in `encoding` (which `file` must have).
    pub async fn read(
        &self,
        hex: &str,
        file: &UiFile,
        encoding: Encoding,
    ) -> Result<Bytes, UiCacheError> {
        let blob = format!("{}{}", file.sha256, encoding.suffix());
        let key = (hex.to_owned(), blob);
        if let Some(bytes) = self.lock_hot().files.get(&key) {
            return Ok(bytes.clone());
        }
        let path = self.bundle_dir(hex).join("f").join(&key.1);
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Evicted under us: forget the index so the next request extracts again.
                self.lock_indexes().pop(hex);
                return Err(UiCacheError::Evicted);
            }
            Err(e) => return Err(io(&path)(e)),
        };
        if (bytes.len() as u64) <= self.limits.memory_file_bytes {
            let mut hot = self.lock_hot();
            hot.bytes += bytes.len() as u64;
            if let Some(old) = hot.files.put(key, bytes.clone()) {
                hot.bytes -= old.len() as u64;
            }
            while hot.bytes > self.limits.memory_bytes {
                match hot.files.pop_lru() {
                    Some((_, old)) => hot.bytes -= old.len() as u64,
                    None => break,
                }
            }
        }
        Ok(bytes)
    }

    async fn read_index(&self, hex: &str) -> Result<Option<UiIndex>, UiCacheError> {
        let path = self.bundle_dir(hex).join("index.json");
        match tokio::fs::read(&path).await {
            Ok(bytes) => {
                // Touch: eviction keeps the most recently used bundles.
                let _ = std::fs::File::options()
                    .append(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(std::time::SystemTime::now()));
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| UiCacheError::Corrupt(path, e.to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Removes least recently used bundles (never `keep`) until the disk bound holds.
    async fn evict_disk(&self, keep: &str) {
        let dir = self.dir.clone();
        let limit = self.limits.disk_bytes;
        let keep = keep.to_owned();
        let evicted = tokio::task::spawn_blocking(move || evict(&dir, limit, &keep))
            .await
            .unwrap_or_default();
        if !evicted.is_empty() {
            let mut indexes = self.lock_indexes();
            let mut hot = self.lock_hot();
            for hex in &evicted {
                indexes.pop(hex);
                let gone: Vec<_> = hot
                    .files
                    .iter()
                    .filter(|((h, _), _)| h == hex)
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in gone {
                    if let Some(bytes) = hot.files.pop(&key) {
                        hot.bytes -= bytes.len() as u64;
                    }
                }
            }
            tracing::info!(bundles = evicted.len(), "UI cache evicted bundles");
        }
    }

    fn lock_indexes(&self) -> std::sync::MutexGuard<'_, LruCache<String, Arc<UiIndex>>> {
        self.indexes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_hot(&self) -> std::sync::MutexGuard<'_, Hot> {
        self.hot.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Extracts `files` into `<dir>/<hex>` atomically (a temporary folder renamed into place).
fn write_bundle(
    dir: &Path,
    hex: &str,
    files: Vec<(String, Vec<u8>)>,
) -> Result<UiIndex, UiCacheError> {
    let (index, blobs) = extract(files.iter().map(|(p, b)| (p.as_str(), b.as_slice())));
    let mut suffix = [0u8; 8];
    getrandom::getrandom(&mut suffix).map_err(|e| UiCacheError::Load(e.to_string()))?;
    let tmp = dir.join(format!(".tmp-{hex}-{}", hex::encode(suffix)));
    let blob_dir = tmp.join("f");
    std::fs::create_dir_all(&blob_dir).map_err(io(&blob_dir))?;
    for (name, bytes) in &blobs {
        let path = blob_dir.join(name);
        std::fs::write(&path, bytes).map_err(io(&path))?;
    }
    let index_path = tmp.join("index.json");
    let json = serde_json::to_vec(&index)
        .map_err(|e| UiCacheError::Corrupt(index_path.clone(), e.to_string()))?;
    std::fs::write(&index_path, json).map_err(io(&index_path))?;
    let target = dir.join(hex);
    if let Err(e) = std::fs::rename(&tmp, &target) {
        let _ = std::fs::remove_dir_all(&tmp);
        // Another process extracted it first: theirs is identical.
        if !target.join("index.json").exists() {
            return Err(io(&target)(e));
        }
    }
    Ok(index)
}

/// Bundle folders under `dir` by last use, oldest first, removed until `limit` holds.
fn evict(dir: &Path, limit: u64, keep: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut bundles: Vec<(std::time::SystemTime, String, u64)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            if name.starts_with('.') {
                return None;
            }
            let used = std::fs::metadata(entry.path().join("index.json"))
                .and_then(|m| m.modified())
                .ok()?;
            let size = std::fs::read_dir(entry.path().join("f"))
                .map(|files| {
                    files
                        .flatten()
                        .filter_map(|f| f.metadata().ok())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0);
            Some((used, name, size))
        })
        .collect();
    let mut total: u64 = bundles.iter().map(|b| b.2).sum();
    bundles.sort();
    let mut evicted = Vec::new();
    for (_, name, size) in bundles {
        if total <= limit {
            break;
        }
        if name == keep {
            continue;
        }
        if std::fs::remove_dir_all(dir.join(&name)).is_ok() {
            total -= size;
            evicted.push(name);
        }
    }
    evicted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn files(text: &str) -> Vec<(String, Vec<u8>)> {
        vec![
            ("index.html".into(), text.repeat(100).into_bytes()),
            ("app.js".into(), b"console.log(1)".to_vec()),
        ]
    }

    #[tokio::test]
    async fn extracts_once_reads_variants_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cache = UiCache::open(dir.path(), UiCacheLimits::default()).unwrap();
        let loads = std::sync::atomic::AtomicUsize::new(0);
        let load = || async {
            loads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok::<_, String>(files("<p>hi</p>"))
        };
        let index = cache.index(&hex(1), load).await.unwrap();
        let again = cache.index(&hex(1), load).await.unwrap();
        assert!(Arc::ptr_eq(&index, &again));
        let page = &index.files["index.html"];
        let plain = cache.read(&hex(1), page, Encoding::Identity).await.unwrap();
        assert_eq!(plain, "<p>hi</p>".repeat(100));
        let br = cache.read(&hex(1), page, Encoding::Brotli).await.unwrap();
        assert_eq!(br.len() as u64, page.br.unwrap());

        let reopened = UiCache::open(dir.path(), UiCacheLimits::default()).unwrap();
        let from_disk = reopened
            .index(&hex(1), || async {
                Err::<Vec<(String, Vec<u8>)>, _>("must not load")
            })
            .await
            .unwrap();
        assert_eq!(*from_disk, *index);
        assert_eq!(loads.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(matches!(
            cache.index("../etc", load).await,
            Err(UiCacheError::BadHash(_))
        ));
    }

    #[tokio::test]
    async fn keeps_disk_under_its_bound_by_evicting_the_oldest_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let limits = UiCacheLimits {
            disk_bytes: 2500,
            ..UiCacheLimits::default()
        };
        let cache = UiCache::open(dir.path(), limits).unwrap();
        for n in 1..=3u8 {
            let text = format!("<p>{n} {}</p>", "x".repeat(n as usize * 7));
            cache
                .index(&hex(n), || async move { Ok::<_, String>(files(&text)) })
                .await
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            !dir.path().join(hex(1)).exists(),
            "the oldest bundle went first"
        );
        assert!(dir.path().join(hex(3)).exists());
    }
}
