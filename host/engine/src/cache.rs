//! Compile once per content hash (DESIGN §3): an in-memory LRU of ready-to-instantiate components
//! and an on-disk cache of precompiled artifacts keyed by content hash and engine compatibility.
//!
//! Concurrent first requests for the same hash compile it once: the memory cache holds a
//! per-hash cell that the first caller fills while the others wait.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use lru::LruCache;
use tokio::sync::OnceCell;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use alga_edge_capabilities::runner::bindings::RunnerPre;

use super::state::HostState;

/// A component linked and ready to instantiate, once per request, by the wasi:http handler
/// it exports.
#[derive(Clone)]
pub enum Prepared {
    /// WASIp2: `wasi:http/incoming-handler@0.2.x` (wstd, componentize-py/-js, spin-sdk ≤ 5).
    P2(ProxyPre<HostState>),
    /// WASIp3: `wasi:http/handler@0.3.x` (spin-sdk 7).
    P3(ServicePre<HostState>),
    /// Alga PSA's `runner` world: `handler: func(execute-request) -> execute-response`.
    Runner(RunnerPre<HostState>),
}

/// Which handler a component exports.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Export {
    P2,
    P3,
    Runner,
}

/// The linkers components are prepared with, one per handler ABI: a few interfaces share a
/// name but differ in type between the two (spin-sdk 7 made Spin's key-value and variables
/// functions `async` under the same package versions spin-sdk 5 imports synchronously).
pub struct Linkers {
    /// For WASIp2 components.
    pub p2: Linker<HostState>,
    /// For WASIp3 components (also links WASIp2 interfaces, which their std still imports).
    pub p3: Linker<HostState>,
}

/// The export that marks a WASIp3 `wasi:http` service.
const P3_HANDLER: &str = "wasi:http/handler@0.3";
/// The export of Alga's `runner` world: a function, not an interface.
const RUNNER_HANDLER: &str = "handler";

/// Why a component could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The content hash is not of the form `sha256:<64 hex>`.
    #[error("invalid content hash '{0}': expected sha256:<64 lowercase hex digits>")]
    BadContentHash(String),
    /// The bytes are not a valid component for this engine.
    #[error("component {hash} does not compile: {reason}")]
    Compile {
        /// Content hash of the component.
        hash: String,
        /// Compiler message.
        reason: String,
    },
    /// The component is valid but does not fit this host (missing export, unknown import).
    #[error("component {hash} cannot run here: {reason}")]
    Link {
        /// Content hash of the component.
        hash: String,
        /// Linker message.
        reason: String,
    },
    /// The component's bytes could not be read.
    #[error("component {hash} could not be read: {reason}")]
    Source {
        /// Content hash of the component.
        hash: String,
        /// Why.
        reason: String,
    },
    /// The on-disk cache failed (I/O).
    #[error("precompiled cache: {0}")]
    Disk(String),
}

/// The handler `component` exports: Alga's `handler` function, a WASIp3 service, or (anything
/// else) a WASIp2 proxy, whose pre-instantiation names what is missing.
fn export_of(component: &Component, engine: &wasmtime::Engine) -> Export {
    let mut export = Export::P2;
    for (name, item) in component.component_type().exports(engine) {
        if name.starts_with(P3_HANDLER) {
            export = Export::P3;
        } else if name == RUNNER_HANDLER
            && matches!(
                item.ty,
                wasmtime::component::types::ComponentItem::ComponentFunc(_)
            )
        {
            return Export::Runner;
        }
    }
    export
}

/// Hit/miss counters, for metrics and tests.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Requests served by an already-prepared component.
    pub memory_hits: AtomicU64,
    /// Components loaded from the precompiled disk cache.
    pub disk_hits: AtomicU64,
    /// Components compiled from wasm.
    pub compiles: AtomicU64,
}

/// The per-process cache of prepared components.
pub struct ComponentCache {
    engine: wasmtime::Engine,
    linkers: Arc<Linkers>,
    memory: Mutex<LruCache<String, Arc<OnceCell<Prepared>>>>,
    disk: Option<DiskCache>,
    stats: CacheStats,
}

impl ComponentCache {
    /// A cache compiling with `engine` and linking with `linkers`.
    pub fn new(
        engine: wasmtime::Engine,
        linkers: Linkers,
        memory_entries: usize,
        disk: Option<(PathBuf, u64)>,
    ) -> Result<Self, LoadError> {
        let disk = disk
            .map(|(dir, max_bytes)| DiskCache::open(&engine, dir, max_bytes))
            .transpose()?;
        let entries = NonZeroUsize::new(memory_entries).unwrap_or(NonZeroUsize::MIN);
        Ok(Self {
            engine,
            linkers: Arc::new(linkers),
            memory: Mutex::new(LruCache::new(entries)),
            disk,
            stats: CacheStats::default(),
        })
    }

    /// Hit/miss counters.
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// The prepared component for `content_hash`, compiling `wasm()` only when neither cache has it.
    pub async fn get_or_load<F, Fut>(
        &self,
        content_hash: &str,
        wasm: F,
    ) -> Result<Prepared, LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<[u8]>, LoadError>>,
    {
        let hex = content_hash
            .strip_prefix("sha256:")
            .filter(|hex| {
                hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            })
            .ok_or_else(|| LoadError::BadContentHash(content_hash.to_owned()))?
            .to_owned();
        let cell = {
            let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
            memory
                .get_or_insert(content_hash.to_owned(), || Arc::new(OnceCell::new()))
                .clone()
        };
        if let Some(ready) = cell.get() {
            self.stats.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(ready.clone());
        }
        cell.get_or_try_init(|| self.load(content_hash, hex, wasm))
            .await
            .cloned()
    }

    async fn load<F, Fut>(&self, hash: &str, hex: String, wasm: F) -> Result<Prepared, LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<[u8]>, LoadError>>,
    {
        let cached = match &self.disk {
            Some(disk) => disk.load(&self.engine, &hex).await,
            None => None,
        };
        let component = match cached {
            Some(component) => {
                self.stats.disk_hits.fetch_add(1, Ordering::Relaxed);
                component
            }
            None => {
                let bytes = wasm().await?;
                self.stats.compiles.fetch_add(1, Ordering::Relaxed);
                self.compile(hash, hex, bytes).await?
            }
        };
        let link_error = |e: wasmtime::Error| LoadError::Link {
            hash: hash.to_owned(),
            reason: format!("{e:#}"),
        };
        let export = export_of(&component, &self.engine);
        let linker = match export {
            Export::P3 => &self.linkers.p3,
            Export::P2 | Export::Runner => &self.linkers.p2,
        };
        let pre = linker.instantiate_pre(&component).map_err(link_error)?;
        Ok(match export {
            Export::P3 => Prepared::P3(ServicePre::new(pre).map_err(link_error)?),
            Export::Runner => Prepared::Runner(RunnerPre::new(pre).map_err(link_error)?),
            Export::P2 => Prepared::P2(ProxyPre::new(pre).map_err(link_error)?),
        })
    }

    async fn compile(
        &self,
        hash: &str,
        hex: String,
        wasm: Arc<[u8]>,
    ) -> Result<Component, LoadError> {
        let engine = self.engine.clone();
        let disk = self.disk.clone();
        let owned_hash = hash.to_owned();
        let compile_error = move |e: wasmtime::Error| LoadError::Compile {
            hash: owned_hash.clone(),
            reason: format!("{e:#}"),
        };
        // Compilation is CPU-bound (up to tens of seconds for interpreted-language components):
        // keep it off the request-serving workers.
        tokio::task::spawn_blocking(move || match disk {
            Some(disk) => {
                let artifact = engine.precompile_component(&wasm).map_err(&compile_error)?;
                disk.store(&hex, &artifact)?;
                // SAFETY: `artifact` was produced by this engine a moment ago.
                unsafe { Component::deserialize(&engine, &artifact) }.map_err(&compile_error)
            }
            None => Component::new(&engine, &wasm).map_err(compile_error),
        })
        .await
        .map_err(|e| LoadError::Compile {
            hash: hash.to_owned(),
            reason: format!("compiler task failed: {e}"),
        })?
    }
}

/// Precompiled artifacts on disk: `<dir>/<hex>-<engine compatibility>.cwasm`.
///
/// Only this process writes the directory; loading an artifact executes it as native code, so the
/// directory must never be writable by anyone the node does not trust.
#[derive(Clone)]
struct DiskCache {
    dir: PathBuf,
    compatibility: String,
    max_bytes: u64,
}

impl DiskCache {
    fn open(engine: &wasmtime::Engine, dir: PathBuf, max_bytes: u64) -> Result<Self, LoadError> {
        fs::create_dir_all(&dir)
            .map_err(|e| LoadError::Disk(format!("cannot create {}: {e}", dir.display())))?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir,
            compatibility: format!("{:016x}", hasher.finish()),
            max_bytes,
        })
    }

    fn path(&self, hex: &str) -> PathBuf {
        self.dir.join(format!("{hex}-{}.cwasm", self.compatibility))
    }

    async fn load(&self, engine: &wasmtime::Engine, hex: &str) -> Option<Component> {
        let path = self.path(hex);
        if !path.exists() {
            return None;
        }
        let engine = engine.clone();
        tokio::task::spawn_blocking(move || {
            // SAFETY: files in this directory are written only by `store` below, by this engine
            // version (the compatibility hash is in the name).
            match unsafe { Component::deserialize_file(&engine, &path) } {
                Ok(component) => {
                    touch(&path);
                    Some(component)
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), "discarding unusable precompiled component: {e:#}");
                    let _ = fs::remove_file(&path);
                    None
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    fn store(&self, hex: &str, artifact: &[u8]) -> Result<(), LoadError> {
        let path = self.path(hex);
        let temp = self
            .dir
            .join(format!(".{hex}.{}.tmp", uuid::Uuid::new_v4()));
        let io = |e: std::io::Error| LoadError::Disk(format!("writing {}: {e}", path.display()));
        fs::write(&temp, artifact).map_err(io)?;
        // Atomic publish: a concurrent reader sees the old state or the whole file.
        fs::rename(&temp, &path).map_err(|e| {
            let _ = fs::remove_file(&temp);
            io(e)
        })?;
        self.evict();
        Ok(())
    }

    /// Removes least-recently-used artifacts until the directory fits its bound.
    fn evict(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(SystemTime, u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|ext| ext == "cwasm"))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_bytes {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

/// Marks an artifact as recently used (its mtime orders eviction).
fn touch(path: &Path) {
    if let Ok(file) = fs::File::options().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}
