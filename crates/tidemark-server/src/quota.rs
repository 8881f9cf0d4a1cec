//! Quota enforcement, the Kafka way: a request over its principal's rate is served, and
//! its answer held back for as long as the principal is over (the answer then says how
//! long, `throttle_ms`). A client that waits for its answers, as every producer and
//! consumer does, is thereby slowed to its rate without a single error, and a noisy
//! principal cannot take a quiet one's share of this node.
//!
//! Each node keeps a token bucket per principal and kind, filled at the rate with one
//! second's worth of burst; the rates come from the metadata group (`tidemark quota`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidemark_broker::Broker;
use tokio::time::Instant;

/// What a request is charged for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    ProduceBytes,
    FetchBytes,
    Requests,
}

/// The longest an answer is held back, so a client's own timeouts never fire for it.
const MAX_THROTTLE: Duration = Duration::from_secs(5);

struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Clone)]
pub struct Throttle {
    broker: Arc<Broker>,
    buckets: Arc<Mutex<HashMap<(String, Kind), Bucket>>>,
}

impl Throttle {
    pub fn new(broker: Arc<Broker>) -> Throttle {
        Throttle { broker, buckets: Default::default() }
    }

    /// Charges `principal` one request and `bytes` of `kind`; the delay its answer owes.
    pub fn charge(&self, principal: &str, kind: Kind, bytes: u64) -> Duration {
        let Some(quota) = self.broker.quota_for(principal) else { return Duration::ZERO };
        let bytes_rate = match kind {
            Kind::ProduceBytes => quota.produce_bytes_per_sec,
            Kind::FetchBytes => quota.fetch_bytes_per_sec,
            Kind::Requests => 0,
        };
        let by_bytes = self.take(principal, kind, bytes_rate, bytes as f64);
        let by_requests = self.take(principal, Kind::Requests, quota.requests_per_sec, 1.0);
        by_bytes.max(by_requests).min(MAX_THROTTLE)
    }

    /// Takes `amount` from `principal`'s bucket of `kind`, filled at `rate` per second
    /// (0: unlimited); how long until it is out of debt.
    fn take(&self, principal: &str, kind: Kind, rate: u64, amount: f64) -> Duration {
        if rate == 0 {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry((principal.to_string(), kind)).or_insert(Bucket { tokens: rate as f64, at: now });
        let elapsed = now.duration_since(bucket.at).as_secs_f64();
        bucket.at = now;
        bucket.take(elapsed, rate as f64, amount)
    }
}

impl Bucket {
    /// Refills for `elapsed` seconds (up to one second's worth), then takes `amount`.
    fn take(&mut self, elapsed: f64, rate: f64, amount: f64) -> Duration {
        self.tokens = (self.tokens + elapsed * rate).min(rate) - amount;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }
}

/// Holds the answer back by `delay`; its `throttle_ms`.
pub async fn hold(delay: Duration) -> u32 {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    delay.as_millis() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_a_second_of_burst_then_delays_by_the_debt() {
        let mut b = Bucket { tokens: 100.0, at: Instant::now() };
        assert_eq!(b.take(0.0, 100.0, 100.0), Duration::ZERO, "one second's worth at once");
        assert_eq!(b.take(0.0, 100.0, 50.0), Duration::from_millis(500), "50 over at 100/s: half a second");
        assert_eq!(b.take(0.5, 100.0, 0.0), Duration::ZERO, "paid off after half a second");
        assert_eq!(b.take(60.0, 100.0, 150.0), Duration::from_millis(500), "idle time banks at most a second");
    }
}
