//! Requests in flight per key (tenant or extension), capped. The map only holds keys with
//! requests in flight, so it stays as small as the node's concurrency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// In-flight counters per key; each entry names its cap.
#[derive(Default)]
pub struct InFlight {
    counts: Arc<Mutex<HashMap<String, u32>>>,
}

/// One request's slot; released on drop.
pub struct InFlightGuard {
    key: String,
    counts: Arc<Mutex<HashMap<String, u32>>>,
}

impl InFlight {
    /// A slot for `key`, or `None` when it already has `cap` in flight.
    pub fn try_enter(&self, key: &str, cap: u32) -> Option<InFlightGuard> {
        let mut counts = lock(&self.counts);
        let count = counts.entry(key.to_owned()).or_insert(0);
        if *count >= cap {
            if *count == 0 {
                counts.remove(key);
            }
            return None;
        }
        *count += 1;
        Some(InFlightGuard {
            key: key.to_owned(),
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

fn lock(counts: &Mutex<HashMap<String, u32>>) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
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
}
