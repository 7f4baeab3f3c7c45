//! The node's memory budget (issue 21, item 5): the linear memory every instance holds, running
//! or warm, is charged to the node's budget and to its tenant's share of it as it grows. Growth
//! past either is refused (the guest sees a failed `memory.grow`, and the request is answered
//! 503 or 429 with retry-after), and the gateway admits no request while the budget is spent.
//! The memory instances can touch thus stays within the budget, so a flood of memory bombs is
//! answered with refusals, never met by the kernel's OOM killer, while many small instances
//! are charged only what they use (not their limit).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::gauge::Gauge;

/// The share of the machine's memory (the smaller of RAM and the cgroup limit) the default
/// budget takes. The rest stays for the node itself (compiled code, caches, connections) and
/// the system.
pub const DEFAULT_MACHINE_FRACTION: f64 = 0.5;

/// Linear memory charged to the node and to each tenant.
pub struct MemoryBudget {
    node_bytes: u64,
    tenant_bytes: u64,
    state: Mutex<Charged>,
    charged_gauge: Gauge,
}

#[derive(Default)]
struct Charged {
    node: u64,
    tenants: HashMap<Arc<str>, u64>,
}

/// Why memory was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryRefusal {
    /// The node budget is spent.
    Node {
        /// The budget, bytes.
        budget: u64,
    },
    /// The tenant's share of the budget is spent.
    Tenant {
        /// The share, bytes.
        share: u64,
    },
}

/// One instance's charge: what its memories hold, released when it is dropped (with its store).
pub struct MemoryCharge {
    budget: Arc<MemoryBudget>,
    tenant: Arc<str>,
    bytes: u64,
}

impl MemoryBudget {
    /// A budget of `node_bytes`, of which one tenant may hold `tenant_bytes`.
    pub fn new(node_bytes: u64, tenant_bytes: u64) -> Arc<Self> {
        Arc::new(Self {
            node_bytes,
            tenant_bytes: tenant_bytes.min(node_bytes),
            state: Mutex::new(Charged::default()),
            charged_gauge: Gauge::default(),
        })
    }

    /// An empty charge of one of `tenant`'s instances.
    pub fn charge(self: &Arc<Self>, tenant: Arc<str>) -> MemoryCharge {
        MemoryCharge {
            budget: self.clone(),
            tenant,
            bytes: 0,
        }
    }

    /// Whether `tenant` may start an instance needing about `bytes`: refused while the node's
    /// budget or the tenant's share has less room left.
    pub fn check_room(&self, tenant: &str, bytes: u64) -> Result<(), MemoryRefusal> {
        let state = self.lock();
        let held = state.tenants.get(tenant).copied().unwrap_or(0);
        self.fits(&state, held, bytes)
    }

    /// A tenant past its own share hears so (429), even when the node is full too.
    fn fits(&self, state: &Charged, held: u64, bytes: u64) -> Result<(), MemoryRefusal> {
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
        Ok(())
    }

    /// The node budget, bytes.
    pub fn node_bytes(&self) -> u64 {
        self.node_bytes
    }

    /// One tenant's share, bytes.
    pub fn tenant_bytes(&self) -> u64 {
        self.tenant_bytes
    }

    /// Bytes charged now, node-wide.
    pub fn charged(&self) -> u64 {
        self.lock().node
    }

    /// A gauge of the bytes charged now (for `/metrics`).
    pub fn charged_gauge(&self) -> Gauge {
        self.charged_gauge.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Charged> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl MemoryCharge {
    /// Charges `more` bytes on top of what this instance holds, or says which bound refused.
    pub fn grow(&mut self, more: u64) -> Result<(), MemoryRefusal> {
        let budget = &self.budget;
        let mut state = budget.lock();
        let held = state.tenants.get(&self.tenant).copied().unwrap_or(0);
        budget.fits(&state, held, more)?;
        state.node += more;
        *state.tenants.entry(self.tenant.clone()).or_insert(0) += more;
        budget.charged_gauge.set(state.node as i64);
        self.bytes += more;
        Ok(())
    }

    /// Bytes this instance is charged.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for MemoryCharge {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        let mut state = self.budget.lock();
        state.node -= self.bytes;
        if let Some(held) = state.tenants.get_mut(&self.tenant) {
            *held -= self.bytes;
            if *held == 0 {
                state.tenants.remove(&self.tenant);
            }
        }
        self.budget.charged_gauge.set(state.node as i64);
    }
}

/// The default node memory budget: [`DEFAULT_MACHINE_FRACTION`] of the machine's memory, or
/// no bound where that is unknown.
pub fn default_memory_budget() -> u64 {
    machine_memory_bytes().map_or(u64::MAX, |bytes| {
        (bytes as f64 * DEFAULT_MACHINE_FRACTION) as u64
    })
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
    fn charges_within_the_node_budget_and_the_tenant_share() {
        let budget = MemoryBudget::new(400, 200);
        let mut a1 = budget.charge("a".into());
        a1.grow(100).unwrap();
        let mut a2 = budget.charge("a".into());
        a2.grow(60).unwrap();
        a2.grow(40).unwrap();
        assert_eq!(
            budget.charge("a".into()).grow(1).err(),
            Some(MemoryRefusal::Tenant { share: 200 })
        );
        assert_eq!(
            budget.check_room("a", 1).err(),
            Some(MemoryRefusal::Tenant { share: 200 })
        );
        let mut b = budget.charge("b".into());
        b.grow(200).unwrap();
        assert_eq!(
            budget.check_room("c", 1).err(),
            Some(MemoryRefusal::Node { budget: 400 })
        );
        assert_eq!(budget.charged(), 400);
        drop(a1);
        assert_eq!(budget.charged(), 300);
        assert_eq!(budget.charged_gauge().get(), 300);
        let mut c = budget.charge("c".into());
        c.grow(100).unwrap();
        assert!(a2.grow(1).is_err(), "the node is full again");
        assert_eq!(a2.bytes(), 100, "a refused growth charges nothing");
        drop((a2, b, c));
        assert_eq!(budget.charged(), 0);
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
