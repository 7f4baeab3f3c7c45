//! Per-store resource limits that remember *why* a guest failed, so a memory bomb is reported as
//! such instead of as a generic trap.

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// Wraps wasmtime's [`StoreLimits`] and records denied memory growth.
pub struct GuestLimiter {
    inner: StoreLimits,
    memory_denied: bool,
}

impl GuestLimiter {
    /// Limits for one request's store: each linear memory capped at `memory_bytes`.
    pub fn new(memory_bytes: u64) -> Self {
        let memory_bytes = usize::try_from(memory_bytes).unwrap_or(usize::MAX);
        Self {
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
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
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
