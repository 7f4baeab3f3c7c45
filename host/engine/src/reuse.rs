//! Warm instances (issue 19): with reuse on, an instance that served a request cleanly goes back
//! to a pool keyed by its install, and the install's next request runs on it instead of a fresh
//! one. An instance is never shared outside one install (tenant × extension × version), so
//! reuse trades isolation only between requests the same tenant's same code serves.
//!
//! What persists between the requests of one instance is the guest's own state: its linear
//! memories, globals and tables, and any resource it keeps. Everything the host gives a request
//! is renewed for each ([`HostState::renew`](super::HostState)): context, granted capabilities
//! with their journal, egress counters and KV scope, deadline, CPU turn, output capture.
//!
//! An instance leaves the pool for good after `max_requests` requests, after `idle_timeout`
//! without one, after any request that did not end cleanly (trap, timeout, memory-limit hit,
//! a response not delivered whole), and as soon as its install's generation changes
//! (update, disable, uninstall, grants, config, secrets, policy). Idle instances hold
//! instance slots and memory: the pool keeps at most `max_idle_bytes` of linear memory
//! idle, and a fresh request that finds every instance slot taken evicts the oldest idle one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::p3::bindings::Service;

use alga_edge_capabilities::runner::bindings::Runner;

use super::HostState;

/// Which instance a request may reuse, and for how many requests.
#[derive(Debug, Clone)]
pub struct Reuse {
    /// The install the instance serves (one tenant's install of one extension).
    pub install_id: Arc<str>,
    /// Its tenant and extension, to look the install up again.
    pub tenant: Arc<str>,
    /// See `tenant`.
    pub extension: Arc<str>,
    /// A digest of everything about the install an instance may have seen (version, grants,
    /// config, secrets, policy): instances of another generation are dropped.
    pub generation: u64,
    /// Requests one instance serves before it is dropped (at least 2, or reuse is off).
    pub max_requests: u32,
}

/// An install with idle instances, as [`WarmPool::installs`] lists it.
#[derive(Debug, Clone)]
pub struct WarmInstall {
    /// The install.
    pub install_id: Arc<str>,
    /// Its tenant.
    pub tenant: Arc<str>,
    /// Its extension.
    pub extension: Arc<str>,
    /// The generation its idle instances served.
    pub generation: u64,
}

/// Reuse settings of a node.
#[derive(Debug, Clone, Copy)]
pub struct ReuseConfig {
    /// Requests per instance when an install does not override it; 0 or 1: reuse off.
    pub max_requests: u32,
    /// An idle instance is dropped after this long without a request.
    pub idle_timeout: Duration,
    /// Linear memory all idle instances may hold together, bytes.
    pub max_idle_bytes: u64,
}

impl Default for ReuseConfig {
    fn default() -> Self {
        Self {
            max_requests: 0,
            idle_timeout: Duration::from_secs(10),
            max_idle_bytes: 512 << 20,
        }
    }
}

/// A component instance of one of the handler ABIs.
pub(super) enum Live {
    P2(Proxy),
    P3(Service),
    Runner(Runner),
}

/// An idle instance with its store.
pub(super) struct Warm {
    pub store: Store<HostState>,
    pub live: Live,
    /// Requests it has served.
    pub served: u32,
    /// Its node instance slot, held while it idles.
    pub slot: OwnedSemaphorePermit,
    idle_since: Instant,
    bytes: u64,
}

impl Warm {
    /// An instance back from a request, ready for the next one.
    pub fn new(
        store: Store<HostState>,
        live: Live,
        served: u32,
        slot: OwnedSemaphorePermit,
    ) -> Self {
        let bytes = store.data().limiter.memory_bytes() as u64;
        Self {
            store,
            live,
            served,
            slot,
            idle_since: Instant::now(),
            bytes,
        }
    }
}

/// The idle instances of a node, by install.
pub struct WarmPool {
    config: ReuseConfig,
    state: Mutex<Pools>,
    reused: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Pools {
    installs: HashMap<Arc<str>, Idle>,
    tally: Tally,
}

/// What the idle instances hold together.
#[derive(Default)]
struct Tally {
    bytes: u64,
    count: usize,
}

impl Tally {
    fn add(&mut self, warm: &Warm) {
        self.bytes += warm.bytes;
        self.count += 1;
    }

    fn remove(&mut self, warm: &Warm) {
        self.bytes -= warm.bytes;
        self.count -= 1;
    }
}

struct Idle {
    tenant: Arc<str>,
    extension: Arc<str>,
    generation: u64,
    /// Oldest first.
    instances: Vec<Warm>,
}

impl WarmPool {
    /// An empty pool.
    pub fn new(config: ReuseConfig) -> Self {
        Self {
            config,
            state: Mutex::new(Pools::default()),
            reused: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// The node's reuse settings.
    pub fn config(&self) -> &ReuseConfig {
        &self.config
    }

    /// Idle instances now.
    pub fn idle(&self) -> usize {
        self.lock().tally.count
    }

    /// Requests served by a reused instance so far.
    pub fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    /// Idle instances dropped so far (expired, stale, evicted, over the memory bound).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The installs with idle instances.
    pub fn installs(&self) -> Vec<WarmInstall> {
        self.lock()
            .installs
            .iter()
            .map(|(id, idle)| WarmInstall {
                install_id: id.clone(),
                tenant: idle.tenant.clone(),
                extension: idle.extension.clone(),
                generation: idle.generation,
            })
            .collect()
    }

    /// An idle instance for `reuse`'s install and generation; drops the install's instances of
    /// another generation and the expired ones on the way.
    pub(super) fn take(&self, reuse: &Reuse) -> Option<Warm> {
        let now = Instant::now();
        let mut doomed = Vec::new();
        let found = {
            let mut pools = self.lock();
            let Pools { installs, tally } = &mut *pools;
            let idle = installs.get_mut(&reuse.install_id)?;
            if idle.generation != reuse.generation {
                for warm in idle.instances.drain(..) {
                    tally.remove(&warm);
                    doomed.push(warm);
                }
            }
            let mut found = None;
            while let Some(warm) = idle.instances.pop() {
                tally.remove(&warm);
                if now.duration_since(warm.idle_since) < self.config.idle_timeout {
                    found = Some(warm);
                    break;
                }
                doomed.push(warm);
            }
            // Instances older than the one found are older still: expired or not, they stay.
            if idle.instances.is_empty() {
                installs.remove(&reuse.install_id);
            }
            found
        };
        self.discard(doomed);
        if found.is_some() {
            self.reused.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Puts an instance that ended its request cleanly back, unless it served its
    /// `max_requests` or the install moved to another generation meanwhile.
    pub(super) fn put(&self, reuse: &Reuse, warm: Warm) {
        if warm.served >= reuse.max_requests {
            self.discard(vec![warm]);
            return;
        }
        let mut doomed = Vec::new();
        {
            let mut pools = self.lock();
            let Pools { installs, tally } = &mut *pools;
            let idle = installs
                .entry(reuse.install_id.clone())
                .or_insert_with(|| Idle {
                    tenant: reuse.tenant.clone(),
                    extension: reuse.extension.clone(),
                    generation: reuse.generation,
                    instances: Vec::new(),
                });
            if idle.generation != reuse.generation {
                // Another generation's request came in since: its instances win.
                for warm in idle.instances.drain(..) {
                    tally.remove(&warm);
                    doomed.push(warm);
                }
                idle.generation = reuse.generation;
            }
            tally.add(&warm);
            idle.instances.push(warm);
            // Over the memory bound: drop the oldest idle instances node-wide.
            while tally.bytes > self.config.max_idle_bytes {
                match take_oldest(installs) {
                    Some(old) => {
                        tally.remove(&old);
                        doomed.push(old);
                    }
                    None => break,
                }
            }
        }
        self.discard(doomed);
    }

    /// Drops the oldest idle instance of the node (to free its instance slot); false when
    /// there is none.
    pub(super) fn evict_oldest(&self) -> bool {
        let old = {
            let mut pools = self.lock();
            let Pools { installs, tally } = &mut *pools;
            let old = take_oldest(installs);
            if let Some(old) = &old {
                tally.remove(old);
            }
            old
        };
        let found = old.is_some();
        self.discard(old.into_iter().collect());
        found
    }

    /// Drops every idle instance of `install_id` (its install changed or went away).
    pub fn forget(&self, install_id: &str) {
        let doomed = {
            let mut pools = self.lock();
            let Some(idle) = pools.installs.remove(install_id) else {
                return;
            };
            for warm in &idle.instances {
                pools.tally.remove(warm);
            }
            idle.instances
        };
        self.discard(doomed);
    }

    /// Drops the instances idle for longer than the idle timeout.
    pub fn expire(&self) {
        let now = Instant::now();
        let mut doomed = Vec::new();
        {
            let mut pools = self.lock();
            let Pools { installs, tally } = &mut *pools;
            installs.retain(|_, idle| {
                let (old, fresh): (Vec<_>, Vec<_>) = idle
                    .instances
                    .drain(..)
                    .partition(|w| now.duration_since(w.idle_since) >= self.config.idle_timeout);
                idle.instances = fresh;
                for warm in old {
                    tally.remove(&warm);
                    doomed.push(warm);
                }
                !idle.instances.is_empty()
            });
        }
        self.discard(doomed);
    }

    /// Stores are dropped outside the lock: dropping one returns its memory to the pooling
    /// allocator, which can take a while.
    fn discard(&self, doomed: Vec<Warm>) {
        if !doomed.is_empty() {
            self.dropped
                .fetch_add(doomed.len() as u64, Ordering::Relaxed);
        }
        drop(doomed);
    }

    fn lock(&self) -> MutexGuard<'_, Pools> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes the instance idle the longest across installs.
fn take_oldest(installs: &mut HashMap<Arc<str>, Idle>) -> Option<Warm> {
    let install = installs
        .iter()
        .filter_map(|(id, idle)| idle.instances.first().map(|w| (w.idle_since, id.clone())))
        .min_by_key(|(since, _)| *since)?
        .1;
    let idle = installs.get_mut(&install)?;
    let old = idle.instances.remove(0);
    if idle.instances.is_empty() {
        installs.remove(&install);
    }
    Some(old)
}
