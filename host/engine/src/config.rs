//! Settings with embedded defaults that work on one machine with no setup (DESIGN §8).
//! The binary's flags set them, each also readable from the environment variable it names.

use std::path::PathBuf;
use std::time::Duration;

/// Limits and sizing of the component engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Wall-clock deadline for one request, from instantiation to the last body byte
    /// (`EXT_GATEWAY_TIMEOUT_MS`).
    pub timeout: Duration,
    /// Cap on the linear memories of an instance, together; also what a request reserves
    /// against the node memory budget.
    pub memory_limit_bytes: u64,
    /// Instances that may run at once on this node; also sizes the pooling allocator.
    pub max_instances: u32,
    /// Largest response body a component may stream; the stream is cut past it.
    pub max_response_bytes: u64,
    /// Maximum wasm stack per instance.
    pub max_wasm_stack_bytes: usize,
    /// Bytes of guest stdout/stderr kept per request for the log; the rest is dropped and counted.
    pub guest_output_bytes: usize,
    /// Directory of precompiled components; `None` keeps compiled code in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Compiled components kept in memory (least recently used are evicted).
    pub memory_cache_entries: usize,
    /// Bound on the precompiled cache directory's size (oldest-used files are evicted).
    pub disk_cache_bytes: u64,
    /// Period of the epoch ticker that interrupts running guests. It is also the longest slice
    /// a guest runs before it gives its run slot back to a waiting one.
    pub epoch_tick: Duration,
    /// Guests that run at once (run slots, see `CpuScheduler`); the others wait for a turn,
    /// handed round-robin across tenants. About one per core.
    pub cpu_slots: usize,
    /// Freed instance resources returned to the OS per batch. Batching cuts the cross-core TLB
    /// shootdowns of one `madvise` per request (about +20% hello throughput at 8 on 2 cores);
    /// the price is that up to `min(cores, 16) * (batch - 1)` freed memories stay resident until
    /// their batch flushes. 1 disables batching.
    pub decommit_batch: usize,
    /// Linear memory all instances (running and warm) may hold together, bytes: growth past
    /// it is refused (503).
    pub memory_budget_bytes: u64,
    /// The fraction of the memory budget one tenant's instances may hold (429 past it).
    pub tenant_memory_share: f64,
    /// Bytes of each freed linear memory the pooling allocator keeps resident (reset with
    /// `memset` rather than returned to the OS) for the next instance in its slot.
    pub pool_memory_keep_resident: usize,
    /// Bytes of each freed table kept resident the same way.
    pub pool_table_keep_resident: usize,
    /// Reset freed memories by scanning which pages are resident (Linux `PAGEMAP_SCAN`, kernel
    /// 6.7+) instead of assuming the low addresses are.
    pub pool_pagemap_scan: bool,
    /// Instance reuse within one install (off by default).
    pub reuse: crate::ReuseConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(5000),
            memory_limit_bytes: 128 << 20,
            max_instances: 256,
            max_response_bytes: 64 << 20,
            max_wasm_stack_bytes: 512 << 10,
            guest_output_bytes: 16 << 10,
            cache_dir: None,
            memory_cache_entries: 128,
            disk_cache_bytes: 2 << 30,
            epoch_tick: Duration::from_millis(2),
            cpu_slots: default_cpu_slots(),
            decommit_batch: 8,
            memory_budget_bytes: crate::memory::default_memory_budget(),
            tenant_memory_share: 0.5,
            pool_memory_keep_resident: 1 << 20,
            pool_table_keep_resident: 64 << 10,
            pool_pagemap_scan: true,
            reuse: crate::ReuseConfig::default(),
        }
    }
}

/// Task polls between two looks for I/O events on a runtime worker (tokio's `event_interval`,
/// which the node's runtime is built with). A guest poll can last a whole CPU slice, so a
/// guest that used up its slice makes up the difference with as many cheap yields (see
/// [`crate::GuestTurn::yield_turn`]): a worker then looks for new connections and readable
/// requests once per slice, not once per `RUNTIME_EVENT_INTERVAL` slices.
pub const RUNTIME_EVENT_INTERVAL: u32 = 8;

/// One run slot per core this process may use.
pub fn default_cpu_slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
