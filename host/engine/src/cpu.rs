//! CPU time a guest uses, for the per-request CPU budget (issue 20).
//!
//! A guest runs only while its task is polled (see `CpuScheduler`): wasm and the host code it
//! calls synchronously. Waiting on host I/O (an outbound request, a timer, a KV read in a
//! blocking pool) is a pending poll and costs it nothing. So the meter sums the calling
//! thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`) across the task's polls, which is what
//! the guest consumed, and is immune to the machine being busy with other work: time spent
//! descheduled by the kernel is not on the thread's clock.
//!
//! Reading the thread clock is a system call (not in the vDSO), about 0.3 µs; a request polls
//! its task a handful of times, and an engine with no budget does not meter at all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A guest's CPU budget was spent: the error its epoch callback ends the call with.
#[derive(Debug, thiserror::Error)]
#[error("the extension used its CPU budget of {} ms", .budget.as_millis())]
pub struct CpuBudgetExceeded {
    /// The budget that was spent.
    pub budget: Duration,
}

/// CPU time of one guest's task, summed over its polls.
#[derive(Debug, Default)]
pub struct CpuMeter {
    /// Nanoseconds of the finished polls.
    used_ns: AtomicU64,
    /// The thread clock when the current poll started; 0 between polls.
    poll_started_ns: AtomicU64,
}

impl CpuMeter {
    /// Runs `poll` (one poll of the guest's task), adding the CPU time it takes.
    pub fn measure<R>(&self, poll: impl FnOnce() -> R) -> R {
        let started = thread_cpu_ns();
        self.poll_started_ns.store(started, Ordering::Relaxed);
        let polled = poll();
        let ended = thread_cpu_ns();
        self.poll_started_ns.store(0, Ordering::Relaxed);
        self.used_ns
            .fetch_add(ended.saturating_sub(started), Ordering::Relaxed);
        polled
    }

    /// CPU time used so far, the current poll included. Exact when called from inside a poll
    /// (the epoch callback is) or between polls; from another thread while a poll runs it
    /// would mix two threads' clocks, so only finished polls count there.
    pub fn used(&self) -> Duration {
        let mut used = self.used_ns.load(Ordering::Relaxed);
        let started = self.poll_started_ns.load(Ordering::Relaxed);
        if started != 0 {
            used += thread_cpu_ns().saturating_sub(started);
        }
        Duration::from_nanos(used)
    }
}

/// The calling thread's CPU clock in nanoseconds (never 0 for a thread that has run).
fn thread_cpu_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Burns `cpu` of this thread's CPU time (not wall time: a loaded machine stretches it).
    fn spin(cpu: Duration) {
        let until = thread_cpu_ns() + cpu.as_nanos() as u64;
        let mut n = 0u64;
        while thread_cpu_ns() < until {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    #[test]
    fn counts_busy_polls_and_not_sleeping_between_them() {
        let meter = CpuMeter::default();
        for _ in 0..3 {
            meter.measure(|| spin(Duration::from_millis(20)));
            // A wait on I/O happens between polls: off the meter.
            std::thread::sleep(Duration::from_millis(50));
        }
        let used = meter.used();
        assert!(used >= Duration::from_millis(60), "{used:?}");
        assert!(
            used < Duration::from_millis(150),
            "the sleeps counted: {used:?}"
        );
    }

    #[test]
    fn sees_the_running_poll_from_inside_it() {
        let meter = CpuMeter::default();
        meter.measure(|| spin(Duration::from_millis(5)));
        let inside = meter.measure(|| {
            spin(Duration::from_millis(30));
            meter.used()
        });
        assert!(inside >= Duration::from_millis(30), "{inside:?}");
        assert!(meter.used() >= inside);
    }
}
