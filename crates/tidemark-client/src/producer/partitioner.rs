//! Which partition a record goes to: the caller's choice, else its key's (the stable
//! FNV-1a partitioner every Tidemark SDK shares), else a sticky round robin.
//!
//! Sticky: keyless records stay on one partition until about a batch worth of bytes or a
//! linger period has gone there, then move to the next. Spreading each record to a new
//! partition would cut every batch into tiny ones; sticking fills batches and still
//! spreads load over time (Kafka's sticky partitioner, KIP-480).

use std::time::Duration;

use tidemark_types::partitioner::partition_for_key;
use tidemark_types::PartitionId;
use tokio::time::Instant;

use crate::error::ClientError;

#[derive(Debug)]
pub(crate) struct StickyPartitioner {
    max_bytes: usize,
    max_age: Duration,
    current: Option<(PartitionId, usize, Instant)>,
    next: u32,
}

impl StickyPartitioner {
    pub(crate) fn new(max_bytes: usize, max_age: Duration) -> Self {
        StickyPartitioner { max_bytes, max_age, current: None, next: 0 }
    }

    /// The partition for a keyless record of `size` bytes among `partitions`.
    pub(crate) fn choose(&mut self, partitions: u32, size: usize, now: Instant) -> PartitionId {
        let partitions = partitions.max(1);
        let stale = match self.current {
            None => true,
            Some((p, bytes, since)) => {
                p >= partitions || bytes >= self.max_bytes || now.duration_since(since) >= self.max_age
            }
        };
        if stale {
            self.current = Some((self.next % partitions, 0, now));
            self.next = self.next.wrapping_add(1);
        }
        let cur = self.current.as_mut().expect("set above");
        cur.1 += size;
        cur.0
    }
}

/// Picks the partition: explicit (checked against the topic's count), by key, or sticky.
pub(crate) fn choose_partition(
    explicit: Option<PartitionId>,
    key: Option<&[u8]>,
    topic: &str,
    partitions: u32,
    size: usize,
    sticky: &mut StickyPartitioner,
    now: Instant,
) -> Result<PartitionId, ClientError> {
    if let Some(p) = explicit {
        if p >= partitions {
            return Err(ClientError::server(
                tidemark_types::ErrorCode::UnknownPartition,
                format!("topic {topic:?} has partitions 0..{partitions}; there is no partition {p}"),
            ));
        }
        return Ok(p);
    }
    Ok(match key {
        Some(k) => partition_for_key(k, partitions),
        None => sticky.choose(partitions, size, now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_then_key_then_sticky() {
        let mut s = StickyPartitioner::new(1000, Duration::from_millis(5));
        let now = Instant::now();
        assert_eq!(choose_partition(Some(2), Some(b"k"), "t", 4, 1, &mut s, now).unwrap(), 2);
        let err = choose_partition(Some(4), None, "t", 4, 1, &mut s, now).unwrap_err();
        assert_eq!(err.code(), Some(tidemark_types::ErrorCode::UnknownPartition));
        let by_key = choose_partition(None, Some(b"user-42"), "t", 4, 1, &mut s, now).unwrap();
        assert_eq!(by_key, partition_for_key(b"user-42", 4));
        for _ in 0..10 {
            assert_eq!(choose_partition(None, Some(b"user-42"), "t", 4, 1, &mut s, now).unwrap(), by_key);
        }
    }

    #[test]
    fn sticky_moves_on_after_a_batch_worth_of_bytes() {
        let mut s = StickyPartitioner::new(300, Duration::from_secs(60));
        let now = Instant::now();
        let picks: Vec<u32> = (0..12).map(|_| s.choose(3, 100, now)).collect();
        assert_eq!(picks, vec![0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 0, 0]);
    }

    #[test]
    fn sticky_moves_on_after_linger() {
        let mut s = StickyPartitioner::new(1 << 20, Duration::from_millis(5));
        let t0 = Instant::now();
        assert_eq!(s.choose(2, 1, t0), 0);
        assert_eq!(s.choose(2, 1, t0 + Duration::from_millis(1)), 0);
        assert_eq!(s.choose(2, 1, t0 + Duration::from_millis(6)), 1);
        assert_eq!(s.choose(1, 1, t0 + Duration::from_millis(7)), 0, "fewer partitions: re-pick");
    }
}
