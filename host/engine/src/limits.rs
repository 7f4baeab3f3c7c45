//! Per-store resource limits that remember *why* a guest failed, so a memory bomb is reported as
//! such instead of as a generic trap.

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

use super::memory::{MemoryCharge, MemoryRefusal};

/// Wraps wasmtime's [`StoreLimits`], caps the instance's linear memories *together*, charges
/// their growth to the node's memory budget, and records denied memory growth and why.
///
/// The cap is on the sum: a component declaring several memories must not get the limit once
/// per memory.
pub struct GuestLimiter {
    inner: StoreLimits,
    memory_denied: bool,
    budget_refused: Option<MemoryRefusal>,
    charge: MemoryCharge,
    cap: usize,
    total: usize,
}

impl GuestLimiter {
    /// Limits for one instance's store: its linear memories capped at `memory_bytes` in all,
    /// their growth charged to `charge`.
    pub fn new(memory_bytes: u64, charge: MemoryCharge) -> Self {
        let memory_bytes = usize::try_from(memory_bytes).unwrap_or(usize::MAX);
        Self {
            cap: memory_bytes,
            total: 0,
            budget_refused: None,
            charge,
            inner: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                // The guest sees a failed `memory.grow` (-1) and fails in its own way; we then
                // know from `memory_denied` that the cap was the cause.
                .trap_on_grow_failure(false)
                .build(),
            memory_denied: false,
        }
    }

    /// Bytes the instance's linear memories hold now.
    pub fn memory_bytes(&self) -> usize {
        self.total
    }

    /// Whether the guest asked for more memory than its cap or the node's budget allows.
    pub fn memory_denied(&self) -> bool {
        self.memory_denied
    }

    /// Which budget refused the guest memory, when one did (rather than its own cap).
    pub fn budget_refused(&self) -> Option<MemoryRefusal> {
        self.budget_refused
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Memories only grow, and creating one reports growth from 0, so the sum of what was
        // allowed is what the instance's memories hold.
        let total = (self.total - current.min(self.total)).saturating_add(desired);
        let mut allowed =
            self.inner.memory_growing(current, desired, maximum)? && total <= self.cap;
        if allowed
            && total > self.total
            && let Err(refusal) = self.charge.grow((total - self.total) as u64)
        {
            self.budget_refused = Some(refusal);
            allowed = false;
        }
        if allowed {
            self.total = total;
        }
        self.memory_denied |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_the_sum_of_an_instance_s_memories() {
        let budget = crate::memory::MemoryBudget::new(1000, 1000);
        let mut limiter = GuestLimiter::new(100, budget.charge("t".into()));
        assert!(
            limiter.memory_growing(0, 40, None).unwrap(),
            "first memory created"
        );
        assert!(
            limiter.memory_growing(0, 40, None).unwrap(),
            "second memory created"
        );
        assert!(
            limiter.memory_growing(40, 60, None).unwrap(),
            "first grows to 60: 100 in all"
        );
        assert!(!limiter.memory_denied());
        assert!(
            !limiter.memory_growing(40, 41, None).unwrap(),
            "second may not grow"
        );
        assert!(limiter.memory_denied());
        assert!(
            !limiter.memory_growing(0, 1, None).unwrap(),
            "nor a third appear"
        );
        assert_eq!(budget.charged(), 100);
        assert!(limiter.budget_refused().is_none());
        drop(limiter);
        assert_eq!(budget.charged(), 0, "released with the store");
    }

    #[test]
    fn growth_past_the_budget_is_refused_and_said_so() {
        let budget = crate::memory::MemoryBudget::new(150, 100);
        let mut first = GuestLimiter::new(100, budget.charge("t".into()));
        assert!(first.memory_growing(0, 80, None).unwrap());
        let mut second = GuestLimiter::new(100, budget.charge("t".into()));
        assert!(!second.memory_growing(0, 30, None).unwrap(), "tenant share");
        assert_eq!(
            second.budget_refused(),
            Some(MemoryRefusal::Tenant { share: 100 })
        );
        let mut other = GuestLimiter::new(100, budget.charge("u".into()));
        assert!(other.memory_growing(0, 70, None).unwrap());
        assert!(!other.memory_growing(70, 71, None).unwrap(), "node budget");
        assert_eq!(
            other.budget_refused(),
            Some(MemoryRefusal::Node { budget: 150 })
        );
        assert!(other.memory_denied());
    }
}
