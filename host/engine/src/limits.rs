//! Per-store resource limits that remember *why* a guest failed, so a memory bomb is reported as
//! such instead of as a generic trap.

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// Wraps wasmtime's [`StoreLimits`], caps the instance's linear memories *together*, and
/// records denied memory growth.
///
/// The cap is on the sum because it is what the gateway reserves against the node's memory
/// budget for the request: a component declaring several memories must not get the limit
/// once per memory.
pub struct GuestLimiter {
    inner: StoreLimits,
    memory_denied: bool,
    cap: usize,
    total: usize,
}

impl GuestLimiter {
    /// Limits for one request's store: its linear memories capped at `memory_bytes` in all.
    pub fn new(memory_bytes: u64) -> Self {
        let memory_bytes = usize::try_from(memory_bytes).unwrap_or(usize::MAX);
        Self {
            cap: memory_bytes,
            total: 0,
            inner: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                // The guest sees a failed `memory.grow` (-1) and fails in its own way; we then
                // know from `memory_denied` that the cap was the cause.
                .trap_on_grow_failure(false)
                .build(),
            memory_denied: false,
        }
    }

    /// Whether the guest asked for more memory than its cap allows.
    pub fn memory_denied(&self) -> bool {
        self.memory_denied
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
        let allowed = self.inner.memory_growing(current, desired, maximum)? && total <= self.cap;
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
        let mut limiter = GuestLimiter::new(100);
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
    }
}
