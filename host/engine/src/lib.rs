//! The component engine (DESIGN §3): two `wasmtime::Engine`s (see [`Engines`]) with the
//! pooling allocator and copy-on-write memory images, one epoch ticker, compile-once caches, and
//! a fresh `Store` + instance per request (or, opt-in, a warm one of the same install) with
//! memory, time and response-size limits. Its errors
//! ([`EngineError`] at start-up, [`InvokeError`] per call) know nothing of HTTP.
//!
//! - [`config`]: the engine's limits and cache settings.
//! - `cache`: compile once per content hash (memory and disk), pre-instantiate per ABI.
//! - `handlers`: start a component's handler: wasi:http WASIp2 or WASIp3, or Alga's `runner`
//!   world (`runner` converts its request and response).
//! - `invoke`: one request through one fresh instance, and how it ended.
//! - `limits`, `output`, `state`, `ticker`: store limits, captured stdio, per-store state, the
//!   epoch ticker that enforces deadlines.
//! - [`memory`](MemoryBudget): instance memory charged to the node budget and tenant shares.
//! - [`scheduler`](CpuScheduler): run slots guests take in turns, fair between tenants.
//! - `cpu`: the CPU time of a guest's polls, against its per-request CPU budget.
//! - [`reuse`](WarmPool): warm instances kept per install between its requests (opt-in).

pub mod config;

mod cache;
mod cpu;
mod handlers;
mod invoke;
mod limits;
mod memory;
mod output;
mod reuse;
pub mod runner;
mod scheduler;
mod state;
mod ticker;

use std::path::PathBuf;
use std::sync::Arc;

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::Semaphore;
use wasmtime::component::Linker;
use wasmtime::{InstanceAllocationStrategy, PoolingAllocationConfig};

pub use cache::{CacheStats, LoadError, Prepared};
pub use config::EngineConfig;
pub use cpu::CpuBudgetExceeded;
pub use invoke::{InvokeError, RunLimits};
pub use memory::{
    DEFAULT_MACHINE_FRACTION, MemoryBudget, MemoryCharge, MemoryRefusal, default_memory_budget,
    machine_memory_bytes,
};
pub use reuse::{Reuse, ReuseConfig, WarmInstall, WarmPool};
pub use scheduler::{CpuScheduler, GuestTurn};
pub use state::HostState;

use alga_edge_capabilities as capabilities;
use ticker::EpochTicker;

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime rejected the configuration (e.g. the pool does not fit this machine).
    #[error("cannot configure the wasm engine: {0}")]
    Config(String),
    /// Linking the host interfaces failed.
    #[error("cannot link host interfaces: {0}")]
    Link(String),
    /// The precompiled cache directory is unusable.
    #[error(transparent)]
    Cache(#[from] LoadError),
    /// The epoch ticker thread could not start.
    #[error("cannot start the epoch ticker: {0}")]
    Ticker(std::io::Error),
}

/// The two wasmtime engines a node compiles components for. They differ in one setting:
/// component-model concurrency (WASIp3's async lifts and lowers, streams, futures). With it
/// on, wasmtime 48 wraps every guest-to-host call in a host task (created, entered, left and
/// freed in its concurrent-state tables) and runs every call in an event loop; components
/// that use none of it (WASIp2 and Alga `runner` ones, nearly all of them) run on the
/// `plain` engine and skip that bookkeeping on each of their host calls. A component goes to
/// `plain` when it validates there, else to `concurrent`. Both share the epoch ticker and the
/// node's instance slots; each has its own instance pool (reserved address space, sized for
/// every slot, since any mix of the two may run).
#[derive(Clone)]
pub(crate) struct Engines {
    /// No component-model concurrency: WASIp2 and runner-world components.
    pub plain: wasmtime::Engine,
    /// Component-model concurrency on: WASIp3 components, and anything else that needs it.
    pub concurrent: wasmtime::Engine,
}

/// Runs extension components; one per process, shared by all requests.
pub struct Engine {
    cache: ComponentCache,
    config: EngineConfig,
    slots: Arc<Semaphore>,
    scheduler: Arc<CpuScheduler>,
    warm: Arc<WarmPool>,
    memory: Arc<MemoryBudget>,
    instantiation: Histogram,
    _ticker: EpochTicker,
}

use cache::{ComponentCache, Linkers};

impl Engine {
    /// Builds the engine, its linker and caches, and starts the epoch ticker.
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        // Each engine's pool reserves address space up front for every instance slot (about
        // 16 GiB each: four memory slots of a 4 GiB reservation, which keeps bounds checks out
        // of guest code), so a large --max-instances can run out of it; say which knob.
        let build = |concurrent| {
            wasmtime::Engine::new(&wasmtime_config(&config, concurrent)?).map_err(|e| {
                EngineError::Config(format!(
                    "{e:#} (the instance pools reserve about 32 GiB of address space per \
                     instance slot; {} slots may not fit: lower --max-instances)",
                    config.max_instances
                ))
            })
        };
        let engines = Engines {
            plain: build(false)?,
            concurrent: build(true)?,
        };
        let linkers = host_linkers(&engines).map_err(|e| EngineError::Link(format!("{e:#}")))?;
        let disk = config
            .cache_dir
            .clone()
            .map(|dir: PathBuf| (dir, config.disk_cache_bytes));
        let cache =
            ComponentCache::new(engines.clone(), linkers, config.memory_cache_entries, disk)?;
        let ticker = EpochTicker::start(vec![engines.plain, engines.concurrent], config.epoch_tick)
            .map_err(EngineError::Ticker)?;
        Ok(Self {
            slots: Arc::new(Semaphore::new(config.max_instances as usize)),
            scheduler: CpuScheduler::new(config.cpu_slots),
            warm: Arc::new(WarmPool::new(config.reuse)),
            memory: MemoryBudget::new(
                config.memory_budget_bytes,
                (config.memory_budget_bytes as f64 * config.tenant_memory_share.clamp(0.0, 1.0))
                    as u64,
            ),
            // 50 µs .. ~1.6 s
            instantiation: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            cache,
            config,
            _ticker: ticker,
        })
    }

    /// The component with `content_hash`, ready to instantiate; `wasm` supplies its bytes when
    /// it is in no cache yet.
    pub async fn prepare<F, Fut>(&self, content_hash: &str, wasm: F) -> Result<Prepared, LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<[u8]>, LoadError>>,
    {
        self.cache.get_or_load(content_hash, wasm).await
    }

    /// Compile-cache counters.
    pub fn cache_stats(&self) -> &CacheStats {
        self.cache.stats()
    }

    /// Instantiation times of every request (exported by the metrics module).
    pub fn instantiation_histogram(&self) -> Histogram {
        self.instantiation.clone()
    }

    /// The run slots guests take turns on (exported by the metrics module).
    pub fn scheduler(&self) -> &Arc<CpuScheduler> {
        &self.scheduler
    }

    /// The node's memory budget, which every instance's memory is charged to.
    pub fn memory_budget(&self) -> &Arc<MemoryBudget> {
        &self.memory
    }

    /// The idle warm instances (reuse mode).
    pub fn warm_pool(&self) -> &Arc<WarmPool> {
        &self.warm
    }

    /// The limits this engine enforces.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }
}

/// The wasmtime configuration of both [`Engines`]; `concurrent` turns component-model
/// concurrency (and the async component-model features that need it) on.
fn wasmtime_config(
    config: &EngineConfig,
    concurrent: bool,
) -> Result<wasmtime::Config, EngineError> {
    let instances = config.max_instances.max(1);
    let memory_cap = usize::try_from(config.memory_limit_bytes)
        .map_err(|_| EngineError::Config("memory limit does not fit this platform".into()))?;

    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        // Components built from interpreted languages hold many core instances and a few
        // memories/tables each; size the pool so every admitted request can instantiate.
        .total_core_instances(instances.saturating_mul(16))
        .total_memories(instances.saturating_mul(4))
        .total_tables(instances.saturating_mul(8))
        .total_stacks(instances)
        .max_memory_size(memory_cap)
        .max_core_instances_per_component(64)
        .max_memories_per_component(8)
        .max_tables_per_component(32)
        .table_elements(100_000)
        .decommit_batch_size(config.decommit_batch.max(1))
        .linear_memory_keep_resident(config.pool_memory_keep_resident)
        .table_keep_resident(config.pool_table_keep_resident)
        // Auto: used where the kernel has it, ignored elsewhere.
        .pagemap_scan(if config.pool_pagemap_scan {
            wasmtime::Enabled::Auto
        } else {
            wasmtime::Enabled::No
        });

    let mut wt = wasmtime::Config::new();
    wt.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        .epoch_interruption(true)
        .max_wasm_stack(config.max_wasm_stack_bytes)
        // The async fiber stack must hold the wasm stack plus host frames.
        .async_stack_size(config.max_wasm_stack_bytes + (1 << 20))
        .wasm_component_model(true)
        .concurrency_support(concurrent)
        .parallel_compilation(true);
    if concurrent {
        // WASIp3 components: async lifts/lowers, streams, futures.
        wt.wasm_component_model_async(true);
    }
    Ok(wt)
}

/// The linkers components are instantiated with: WASI (granting nothing but clocks, random and
/// captured stdio, see [`HostState::new`]), wasi:http, and the Alga capabilities; the WASIp3
/// one adds the 0.3 interfaces and links Spin's interfaces as spin-sdk 7 types them.
///
/// Linking does not depend on what an install was granted (ungranted capabilities are linked
/// and deny at call time, DESIGN §2), so one prepared instance per content hash serves every
/// install of that bundle. WASIp2 is linked for both [`Engines`] (a WASIp2 component lands on
/// the concurrent one when it needs component-model async features), WASIp3 for the
/// concurrent one only.
fn host_linkers(engines: &Engines) -> wasmtime::Result<Linkers> {
    let base = |engine: &wasmtime::Engine,
                abi: capabilities::Abi|
     -> wasmtime::Result<Linker<HostState>> {
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        capabilities::context::add_to_linker(&mut linker, |state: &mut HostState| {
            &mut state.context
        })?;
        capabilities::add_to_linker(&mut linker, abi)?;
        Ok(linker)
    };
    let plain_p2 = base(&engines.plain, capabilities::Abi::P2)?;
    let p2 = base(&engines.concurrent, capabilities::Abi::P2)?;
    let mut p3 = base(&engines.concurrent, capabilities::Abi::P3)?;
    wasmtime_wasi::p3::add_to_linker(&mut p3)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut p3)?;
    Ok(Linkers { plain_p2, p2, p3 })
}
