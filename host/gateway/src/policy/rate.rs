//! Token-bucket rate limiting per tenant.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before idle, full ones are dropped (they would admit anyway).
const MAX_BUCKETS: usize = 10_000;

/// Per-key token buckets; each call names the key's rate and burst.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// Takes one token from `key`'s bucket, refilled at `rate` per second up to `burst` (at
    /// least 1), or tells how long until one is available. A rate of 0 admits all.
    pub fn try_take(&self, key: &str, rate: f64, burst: f64) -> Result<(), Duration> {
        if rate <= 0.0 {
            return Ok(());
        }
        let burst = burst.max(1.0);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            // A bucket idle long enough to be full again would admit anyway.
            buckets.retain(|_, b| b.refilled(now, rate, burst) < burst);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        bucket.tokens = bucket.refilled(now, rate, burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

impl Bucket {
    fn refilled(&self, now: Instant, rate: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * rate).min(burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_the_burst_then_refuses_with_a_wait() {
        let limiter = RateLimiter::default();
        for _ in 0..3 {
            assert!(limiter.try_take("t", 1.0, 3.0).is_ok());
        }
        let wait = limiter.try_take("t", 1.0, 3.0).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(
            limiter.try_take("other", 1.0, 3.0).is_ok(),
            "buckets are per key"
        );
        assert!(RateLimiter::default().try_take("t", 0.0, 1.0).is_ok());
    }
}
