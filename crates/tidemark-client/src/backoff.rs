//! Exponential backoff with jitter that needs no random number generator.
//!
//! The SDK also runs inside the deterministic simulation, where an OS-seeded RNG would
//! make runs irreproducible. Jitter only has to keep clients that failed together from
//! retrying in lockstep, so it is derived from a caller-chosen salt (a partition number,
//! an address) and the attempt count through a hash: spread out, yet a pure function.

use std::time::Duration;

use tidemark_types::partitioner::fnv1a64;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    salt: u64,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, salt: u64) -> Self {
        Backoff { initial, max: max.max(initial), salt, attempt: 0 }
    }

    /// The delay before the next retry: `initial * 2^attempt`, capped at `max`, then
    /// scaled into [75%, 125%) by the jitter.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.attempt.min(20);
        self.attempt = self.attempt.saturating_add(1);
        let base = self.initial.saturating_mul(1u32 << exp).min(self.max);
        let mut seed = [0u8; 12];
        seed[..8].copy_from_slice(&self.salt.to_le_bytes());
        seed[8..].copy_from_slice(&self.attempt.to_le_bytes());
        let frac = (fnv1a64(&seed) % 1000) as f64 / 1000.0;
        base.mul_f64(0.75 + 0.5 * frac)
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Back to the initial delay, after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 7);
        let d: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        for (i, want) in [100u64, 200, 400, 800, 1000, 1000, 1000, 1000].iter().enumerate() {
            let want = Duration::from_millis(*want);
            assert!(d[i] >= want.mul_f64(0.75) && d[i] < want.mul_f64(1.25), "attempt {i}: {:?}", d[i]);
        }
        assert_eq!(b.attempts(), 8);
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(125));
    }

    #[test]
    fn jitter_is_deterministic_and_differs_by_salt() {
        let run = |salt| {
            let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10), salt);
            (0..5).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn never_overflows() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 0);
        for _ in 0..100 {
            assert!(b.next_delay() < Duration::from_secs(75));
        }
    }
}
