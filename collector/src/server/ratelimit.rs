//! A token bucket per API token (or per client IP for anonymous calls).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Most distinct keys tracked; when full, idle (refilled) buckets are dropped first.
const MAX_KEYS: usize = 100_000;

pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate_per_sec: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            rate: rate_per_sec,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; `Err(seconds)` tells when to retry.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), u64> {
        let Ok(mut map) = self.buckets.lock() else {
            return Ok(());
        };
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, (tokens, t)| {
                *tokens + now.duration_since(*t).as_secs_f64() * rate < burst
            });
            if map.len() >= MAX_KEYS {
                return Err(1);
            }
        }
        let entry = map.entry(key.to_owned()).or_insert((self.burst, now));
        let refill = now.duration_since(entry.1).as_secs_f64() * self.rate;
        entry.0 = (entry.0 + refill).min(self.burst);
        entry.1 = now;
        if entry.0 >= 1.0 {
            entry.0 -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - entry.0) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills_over_time() {
        let rl = RateLimiter::new(2.0, 3.0);
        let t = Instant::now();
        for _ in 0..3 {
            assert!(rl.check("a", t).is_ok());
        }
        assert!(rl.check("a", t).is_err());
        assert!(rl.check("b", t).is_ok(), "keys are independent");
        assert!(rl.check("a", t + Duration::from_millis(600)).is_ok());
        assert!(rl.check("a", t + Duration::from_millis(600)).is_err());
    }
}
