//! The node's memory budget (issue 21, item 5): every admitted request reserves the most memory
//! its instance may grow to, and a request whose reservation would take the node past its
//! budget, or its tenant past its share of the budget, is refused before anything is
//! instantiated. The sum of what running instances can touch thus stays within the budget,
//! so a flood of memory bombs is answered 503/429, never met by the kernel's OOM killer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::gauge::Gauge;

/// The share of the machine's memory (the smaller of RAM and the cgroup limit) the default
/// budget takes. The rest stays for the node itself (compiled code, caches, connections) and
/// the system: reservations are worst cases, so this is conservative.
pub const DEFAULT_MACHINE_FRACTION: f64 = 0.5;

/// Reservations of instance memory against the node budget and each tenant's share.
pub struct MemoryBudget {
    node_bytes: u64,
    tenant_bytes: u64,
    state: Mutex<Reserved>,
    reserved_gauge: Gauge,
}

#[derive(Default)]
struct Reserved {
    node: u64,
    tenants: HashMap<String, u64>,
}

/// One request's reservation; released on drop.
pub struct MemoryReservation {
    budget: Arc<MemoryBudget>,
    tenant: String,
    bytes: u64,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryRefusal {
    /// The node budget is taken.
    Node {
        /// The budget, bytes.
        budget: u64,
    },
    /// The tenant's share of the budget is taken.
    Tenant {
        /// The share, bytes.
        share: u64,
    },
}

impl MemoryBudget {
    /// A budget of `node_bytes`, of which one tenant may reserve `tenant_bytes`.
    pub fn new(node_bytes: u64, tenant_bytes: u64) -> Arc<Self> {
        Arc::new(Self {
            node_bytes,
            tenant_bytes: tenant_bytes.min(node_bytes),
            state: Mutex::new(Reserved::default()),
            reserved_gauge: Gauge::default(),
        })
    }

    /// Reserves `bytes` for one of `tenant`'s requests, or says which bound refused it.
    pub fn try_reserve(
        self: &Arc<Self>,
        tenant: &str,
        bytes: u64,
    ) -> Result<MemoryReservation, MemoryRefusal> {
        let mut state = self.lock();
        // A tenant past its own share hears so (429), even when the node is full too.
        let held = state.tenants.get(tenant).copied().unwrap_or(0);
        if held.saturating_add(bytes) > self.tenant_bytes {
            return Err(MemoryRefusal::Tenant {
                share: self.tenant_bytes,
            });
        }
        if state.node.saturating_add(bytes) > self.node_bytes {
            return Err(MemoryRefusal::Node {
                budget: self.node_bytes,
            });
        }
        state.node += bytes;
        *state.tenants.entry(tenant.to_owned()).or_insert(0) += bytes;
        self.reserved_gauge.set(state.node as i64);
        Ok(MemoryReservation {
            budget: self.clone(),
            tenant: tenant.to_owned(),
            bytes,
        })
    }

    /// The node budget, bytes.
    pub fn node_bytes(&self) -> u64 {
        self.node_bytes
    }

    /// One tenant's share, bytes.
    pub fn tenant_bytes(&self) -> u64 {
        self.tenant_bytes
    }

    /// Bytes reserved now, node-wide.
    pub fn reserved(&self) -> u64 {
        self.lock().node
    }

    /// A gauge of the bytes reserved now (for `/metrics`).
    pub fn reserved_gauge(&self) -> Gauge {
        self.reserved_gauge.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Reserved> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for MemoryReservation {
    fn drop(&mut self) {
        let mut state = self.budget.lock();
        state.node -= self.bytes;
        if let Some(held) = state.tenants.get_mut(&self.tenant) {
            *held -= self.bytes;
            if *held == 0 {
                state.tenants.remove(&self.tenant);
            }
        }
        self.budget.reserved_gauge.set(state.node as i64);
    }
}

/// The memory this process may use: the smaller of the machine's RAM (`MemTotal`) and its
/// cgroup's limit (v2 `memory.max`, or v1 `memory.limit_in_bytes`); `None` where neither is
/// readable (not Linux).
pub fn machine_memory_bytes() -> Option<u64> {
    let ram = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total(&text));
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|path| std::fs::read_to_string(path).ok())
    .and_then(|text| text.trim().parse::<u64>().ok());
    match (ram, cgroup) {
        (Some(ram), Some(limit)) => Some(ram.min(limit)),
        (ram, limit) => ram.or(limit),
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_within_the_node_budget_and_the_tenant_share() {
        let budget = MemoryBudget::new(400, 200);
        let a1 = budget.try_reserve("a", 100).unwrap();
        let _a2 = budget.try_reserve("a", 100).unwrap();
        assert_eq!(
            budget.try_reserve("a", 100).err(),
            Some(MemoryRefusal::Tenant { share: 200 })
        );
        let _b1 = budget.try_reserve("b", 100).unwrap();
        let _b2 = budget.try_reserve("b", 100).unwrap();
        assert_eq!(
            budget.try_reserve("c", 100).err(),
            Some(MemoryRefusal::Node { budget: 400 })
        );
        assert_eq!(budget.reserved(), 400);
        drop(a1);
        assert_eq!(budget.reserved(), 300);
        assert_eq!(budget.reserved_gauge().get(), 300);
        let _c = budget.try_reserve("c", 100).unwrap();
        assert!(
            budget.try_reserve("a", 100).is_err(),
            "the node is full again"
        );
    }

    #[test]
    fn reads_mem_total() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total(meminfo), Some(24_576_000 * 1024));
        assert_eq!(mem_total("nothing"), None);
        if cfg!(target_os = "linux") {
            assert!(machine_memory_bytes().is_some_and(|b| b > 0));
        }
    }
}
