//! What one request's capabilities leave for its execution-log row: the guest's log lines
//! (bounded) and its outbound HTTP bytes. Shared between the request's `Store` and its trace,
//! which reads it when the request ends.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;

/// Log lines and egress bytes of one request.
#[derive(Debug)]
pub struct Journal {
    lines: Mutex<Vec<String>>,
    max_lines: usize,
    dropped: AtomicU64,
    egress_bytes: Counter,
}

impl Journal {
    /// A journal keeping at most `max_lines` lines.
    pub fn new(max_lines: usize) -> Self {
        Self {
            lines: Mutex::new(Vec::new()),
            max_lines,
            dropped: AtomicU64::new(0),
            egress_bytes: Counter::default(),
        }
    }

    /// Keeps `line`, or counts it once the journal is full.
    pub fn log(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() < self.max_lines {
            lines.push(line);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counter outbound HTTP bytes are added to as they stream.
    pub fn egress_counter(&self) -> Counter {
        self.egress_bytes.clone()
    }

    /// The kept lines (plus a note of how many were not kept), leaving the journal empty.
    pub fn take_lines(&self) -> Vec<String> {
        let mut lines = std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()));
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            lines.push(format!("({dropped} more lines not kept)"));
        }
        lines
    }

    /// Outbound HTTP bytes so far.
    pub fn egress_bytes(&self) -> u64 {
        self.egress_bytes.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_bounded_number_of_lines_and_counts_the_rest() {
        let journal = Journal::new(2);
        for i in 0..5 {
            journal.log(format!("line {i}"));
        }
        journal.egress_counter().inc_by(7);
        journal.egress_counter().inc_by(3);
        assert_eq!(
            journal.take_lines(),
            ["line 0", "line 1", "(3 more lines not kept)"]
        );
        assert!(journal.take_lines().is_empty());
        assert_eq!(journal.egress_bytes(), 10);
    }
}
