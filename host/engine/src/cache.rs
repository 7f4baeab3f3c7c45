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

use super::Engines;
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

impl Prepared {
    /// The engine the component was compiled for, which its stores must be created in.
    pub fn engine(&self) -> &wasmtime::Engine {
        match self {
            Prepared::P2(pre) => pre.instance_pre().engine(),
            Prepared::P3(pre) => pre.instance_pre().engine(),
            Prepared::Runner(pre) => pre.instance_pre().engine(),
        }
    }
}

/// Which of the [`Engines`] a component is compiled for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Plain,
    Concurrent,
}

impl Kind {
    /// Preferred first: the plain engine, whose host calls are cheaper.
    const ALL: [Kind; 2] = [Kind::Plain, Kind::Concurrent];

    fn engine(self, engines: &Engines) -> &wasmtime::Engine {
        match self {
            Kind::Plain => &engines.plain,
            Kind::Concurrent => &engines.concurrent,
        }
    }
}

/// Which handler a component exports.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Export {
    P2,
    P3,
    Runner,
}

/// The linkers components are prepared with, one per handler ABI and engine: a few interfaces
/// share a name but differ in type between the two ABIs (spin-sdk 7 made Spin's key-value and
/// variables functions `async` under the same package versions spin-sdk 5 imports
/// synchronously).
pub struct Linkers {
    /// For WASIp2 and runner-world components on the plain engine.
    pub plain_p2: Linker<HostState>,
    /// For WASIp2 and runner-world components that need the concurrent engine.
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
fn export_of(component: &Component) -> Export {
    let mut export = Export::P2;
    for (name, item) in component.component_type().exports(component.engine()) {
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
    engines: Engines,
    linkers: Arc<Linkers>,
    memory: Mutex<LruCache<String, Arc<OnceCell<Prepared>>>>,
    disk: Option<DiskCache>,
    stats: CacheStats,
}

impl ComponentCache {
    /// A cache compiling with `engines` and linking with `linkers`.
    pub(crate) fn new(
        engines: Engines,
        linkers: Linkers,
        memory_entries: usize,
        disk: Option<(PathBuf, u64)>,
    ) -> Result<Self, LoadError> {
        let disk = disk
            .map(|(dir, max_bytes)| DiskCache::open(&engines, dir, max_bytes))
            .transpose()?;
        let entries = NonZeroUsize::new(memory_entries).unwrap_or(NonZeroUsize::MIN);
        Ok(Self {
            engines,
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
            Some(disk) => disk.load(&self.engines, &hex).await,
            None => None,
        };
        let (kind, component) = match cached {
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
        let export = export_of(&component);
        let linker = match (kind, export) {
            (Kind::Concurrent, Export::P3) => &self.linkers.p3,
            (Kind::Plain, Export::P2 | Export::Runner) => &self.linkers.plain_p2,
            (Kind::Concurrent, Export::P2 | Export::Runner) => &self.linkers.p2,
            // `compile` never does this (a WASIp3 handler does not validate without
            // component-model async); say so rather than link across engines.
            (Kind::Plain, Export::P3) => {
                return Err(LoadError::Link {
                    hash: hash.to_owned(),
                    reason: "a WASIp3 handler was compiled without component-model concurrency"
                        .into(),
                });
            }
        };
        let pre = linker.instantiate_pre(&component).map_err(link_error)?;
        Ok(match export {
            Export::P3 => Prepared::P3(ServicePre::new(pre).map_err(link_error)?),
            Export::Runner => Prepared::Runner(RunnerPre::new(pre).map_err(link_error)?),
            Export::P2 => Prepared::P2(ProxyPre::new(pre).map_err(link_error)?),
        })
    }

    /// Compiles `wasm` for the plain engine when it validates there (a WASIp3 handler never
    /// does: its exports are async functions), else for the concurrent one, whose error is
    /// the one reported.
    async fn compile(
        &self,
        hash: &str,
        hex: String,
        wasm: Arc<[u8]>,
    ) -> Result<(Kind, Component), LoadError> {
        let engines = self.engines.clone();
        let disk = self.disk.clone();
        let owned_hash = hash.to_owned();
        let compile_error = move |e: wasmtime::Error| LoadError::Compile {
            hash: owned_hash.clone(),
            reason: format!("{e:#}"),
        };
        // The component for `kind`'s engine; `None` when it validates there but is a WASIp3
        // handler, which only the concurrent engine can run.
        let build = move |kind: Kind| -> Result<Option<Component>, LoadError> {
            let engine = kind.engine(&engines);
            let (component, artifact) = match &disk {
                Some(_) => {
                    let artifact = engine.precompile_component(&wasm).map_err(&compile_error)?;
                    // SAFETY: `artifact` was produced by this engine a moment ago.
                    let component = unsafe { Component::deserialize(engine, &artifact) }
                        .map_err(&compile_error)?;
                    (component, Some(artifact))
                }
                None => (Component::new(engine, &wasm).map_err(&compile_error)?, None),
            };
            if kind == Kind::Plain && export_of(&component) == Export::P3 {
                return Ok(None);
            }
            if let (Some(disk), Some(artifact)) = (&disk, artifact) {
                disk.store(kind, &hex, &artifact)?;
            }
            Ok(Some(component))
        };
        // Compilation is CPU-bound (up to tens of seconds for interpreted-language components):
        // keep it off the request-serving workers.
        let declined = LoadError::Link {
            hash: hash.to_owned(),
            reason: "the concurrent engine declined a component (a bug)".into(),
        };
        tokio::task::spawn_blocking(move || match build(Kind::Plain) {
            Ok(Some(component)) => Ok((Kind::Plain, component)),
            Ok(None) | Err(_) => build(Kind::Concurrent)?
                .map(|component| (Kind::Concurrent, component))
                .ok_or(declined),
        })
        .await
        .map_err(|e| LoadError::Compile {
            hash: hash.to_owned(),
            reason: format!("compiler task failed: {e}"),
        })?
    }
}

/// Precompiled artifacts on disk: `<dir>/<hex>-<engine compatibility>.cwasm`, for whichever of
/// the [`Engines`] compiled them (the hash covers wasm features and tunables, which differ
/// between the two).
///
/// Only this process writes the directory; loading an artifact executes it as native code, so the
/// directory must never be writable by anyone the node does not trust.
#[derive(Clone)]
struct DiskCache {
    dir: PathBuf,
    /// Per [`Kind`], in [`Kind::ALL`] order.
    compatibility: [String; 2],
    max_bytes: u64,
}

impl DiskCache {
    fn open(engines: &Engines, dir: PathBuf, max_bytes: u64) -> Result<Self, LoadError> {
        fs::create_dir_all(&dir)
            .map_err(|e| LoadError::Disk(format!("cannot create {}: {e}", dir.display())))?;
        let compatibility = Kind::ALL.map(|kind| {
            let mut hasher = DefaultHasher::new();
            kind.engine(engines)
                .precompile_compatibility_hash()
                .hash(&mut hasher);
            format!("{:016x}", hasher.finish())
        });
        Ok(Self {
            dir,
            compatibility,
            max_bytes,
        })
    }

    fn path(&self, kind: Kind, hex: &str) -> PathBuf {
        let compatibility = &self.compatibility[kind as usize];
        self.dir.join(format!("{hex}-{compatibility}.cwasm"))
    }

    /// The artifact of `hex` for whichever engine has one, the plain engine's first.
    async fn load(&self, engines: &Engines, hex: &str) -> Option<(Kind, Component)> {
        for kind in Kind::ALL {
            let path = self.path(kind, hex);
            if !path.exists() {
                continue;
            }
            let engine = kind.engine(engines).clone();
            let component = tokio::task::spawn_blocking(move || {
                // SAFETY: files in this directory are written only by `store` below, by this
                // engine version and settings (the compatibility hash is in the name).
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
            .flatten();
            if let Some(component) = component {
                return Some((kind, component));
            }
        }
        None
    }

    fn store(&self, kind: Kind, hex: &str, artifact: &[u8]) -> Result<(), LoadError> {
        let path = self.path(kind, hex);
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
