//! Requests in flight per key (tenant or extension), capped. The map only holds keys with
//! requests in flight, so it stays as small as the node's concurrency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// In-flight counters per key; each entry names its cap.
#[derive(Default)]
pub struct InFlight {
    counts: Arc<Mutex<Counts>>,
}

/// Requests in flight by key. A slot shares its key with the map's entry, so only a key's
/// first request in flight copies it.
type Counts = HashMap<Arc<str>, u32>;

/// One request's slot; released on drop.
pub struct InFlightGuard {
    key: Arc<str>,
    counts: Arc<Mutex<Counts>>,
}

impl InFlight {
    /// A slot for `key`, or `None` when it already has `cap` in flight.
    pub fn try_enter(&self, key: &str, cap: u32) -> Option<InFlightGuard> {
        let mut counts = lock(&self.counts);
        let key = match counts.get_key_value(key) {
            Some((_, &count)) if count >= cap => return None,
            Some((key, _)) => key.clone(),
            None if cap == 0 => return None,
            None => Arc::from(key),
        };
        *counts.entry(key.clone()).or_insert(0) += 1;
        Some(InFlightGuard {
            key,
            counts: self.counts.clone(),
        })
    }

    /// Requests in flight for `key`.
    pub fn in_flight(&self, key: &str) -> u32 {
        lock(&self.counts).get(key).copied().unwrap_or(0)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

fn lock(counts: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_key_and_releases_on_drop() {
        let in_flight = InFlight::default();
        let a1 = in_flight.try_enter("a", 2).unwrap();
        let _a2 = in_flight.try_enter("a", 2).unwrap();
        assert!(in_flight.try_enter("a", 2).is_none());
        let _b = in_flight.try_enter("b", 2).unwrap();
        drop(a1);
        assert_eq!(in_flight.in_flight("a"), 1);
        assert!(in_flight.try_enter("a", 2).is_some());
        assert_eq!(
            in_flight.in_flight("a"),
            1,
            "the temporary slot was released"
        );
    }

    #[test]
    fn holds_only_keys_with_requests_in_flight() {
        let in_flight = InFlight::default();
        assert!(
            in_flight.try_enter("none", 0).is_none(),
            "a cap of 0 admits none"
        );
        let a1 = in_flight.try_enter("a", 2).unwrap();
        let a2 = in_flight.try_enter("a", 2).unwrap();
        assert!(
            Arc::ptr_eq(&a1.key, &a2.key),
            "a second slot shares the key"
        );
        assert_eq!(lock(&in_flight.counts).len(), 1);
        drop((a1, a2));
        assert!(
            lock(&in_flight.counts).is_empty(),
            "the last slot removes its key"
        );
    }
}
