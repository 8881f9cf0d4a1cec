//! Leader-side ordering of an idempotent producer's pipelined batches.
//!
//! ```text
//! batch n+1 ─▶ handler task ─▶ admit? ahead of n ─▶ wait (≤ SEQUENCE_WAIT) ─┐
//! batch n   ─▶ handler task ─▶ admit? next in line ─▶ hand to Raft ─ notify ┴▶ hand to Raft
//! ```
//!
//! gRPC runs every request as its own task, so batch n+1 of a producer can reach Raft
//! before batch n even though the producer sent them in order. The state machine would
//! then refuse n+1 as out of order, and the producer would retry it and drop to one
//! batch in flight: that halved idempotent throughput. So the leader remembers, per
//! producer, the sequence after the last batch it handed to Raft, and holds a batch that
//! is ahead of it until its predecessor has been handed over.
//!
//! This is only a hint for ordering: the state machine still judges every batch at
//! apply time. A wrong hint costs at most one bounded wait (then apply answers
//! OutOfOrderSequence as before), never a wrong answer. Batches at or behind the hint
//! (retries, duplicates, renumbered batches) go through at once.

use std::collections::HashMap;
use std::time::Duration;

use tidemark_types::{seq_add, BatchHeader};
use tokio::sync::{Mutex, MutexGuard, Notify};

use crate::producers::ProducerTable;

/// How long a batch that is ahead of its producer's sequence waits for its predecessor.
/// Overtaking happens within microseconds; a predecessor still missing after this was
/// most likely lost, and the producer learns of the gap from the state machine.
pub const SEQUENCE_WAIT: Duration = Duration::from_millis(200);

/// The hint table is dropped when it grows past this many producers (they expire on
/// the state machine's clock, which this table does not follow).
const MAX_TRACKED: usize = 10_000;

/// Sequences beyond this distance ahead are treated as behind (the space wraps at 2^31).
const AHEAD_LIMIT: i64 = 1 << 30;

/// Per producer: (epoch, the sequence after the last batch handed to Raft).
#[derive(Debug, Default)]
pub struct Proposed(HashMap<i64, (i16, i32)>);

/// What the sequencer decides for one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Hand it to Raft now.
    Now,
    /// Its predecessor has not been handed over yet: wait.
    Wait,
}

impl Proposed {
    /// Decides for an idempotent batch `h` (`producer_id >= 0`); `applied` seeds a
    /// producer this leader has not seen yet. A producer known to neither (or in a new
    /// epoch) starts at sequence 0. Every admitted batch becomes the hint, including one
    /// behind it: that is a retry or a batch the producer renumbered after a gap, and
    /// the producer's next batch follows it.
    pub fn admit(&mut self, h: &BatchHeader, applied: impl FnOnce() -> Option<(i16, i32)>) -> Admit {
        let known = match self.0.get(&h.producer_id) {
            Some(&k) => Some(k),
            None => applied(),
        };
        let expected = match known {
            Some((epoch, next)) if epoch == h.producer_epoch => next,
            _ => 0,
        };
        let ahead = (h.base_sequence as i64 - expected as i64).rem_euclid(i32::MAX as i64 + 1);
        if ahead != 0 && ahead < AHEAD_LIMIT {
            return Admit::Wait;
        }
        self.record(h);
        Admit::Now
    }

    /// Records `h` as the last batch handed to Raft for its producer.
    pub fn record(&mut self, h: &BatchHeader) {
        if self.0.len() >= MAX_TRACKED && !self.0.contains_key(&h.producer_id) {
            self.0.clear();
        }
        self.0.insert(h.producer_id, (h.producer_epoch, seq_add(h.base_sequence, h.record_count)));
    }
}

/// The next sequence the applied state expects from `producer_id`, with its epoch.
pub fn applied_next(table: &ProducerTable, producer_id: i64) -> Option<(i16, i32)> {
    let entry = table.producers.get(&producer_id)?;
    let last = entry.batches.back()?;
    Some((entry.epoch, seq_add(last.last_seq, 1)))
}

/// The ordering point of one partition replica: held while a batch is handed to Raft,
/// so batches enter the log in the order they were admitted.
#[derive(Debug, Default)]
pub struct Sequencer {
    proposed: Mutex<Proposed>,
    handed_over: Notify,
}

impl Sequencer {
    /// Waits until `h` may be handed to Raft and returns the guard to hold while doing
    /// so. Batches without a producer id are admitted at once.
    pub async fn admit(&self, h: &BatchHeader, applied: impl Fn() -> Option<(i16, i32)>) -> SequencerGuard<'_> {
        let deadline = tokio::time::Instant::now() + SEQUENCE_WAIT;
        loop {
            let handed_over = self.handed_over.notified();
            let mut proposed = self.proposed.lock().await;
            if h.producer_id < 0 || proposed.admit(h, &applied) == Admit::Now {
                return SequencerGuard { _proposed: proposed, notify: &self.handed_over };
            }
            drop(proposed);
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if tokio::time::timeout(left, handed_over).await.is_err() {
                tracing::debug!(producer = h.producer_id, seq = h.base_sequence, "predecessor batch did not arrive");
                let mut proposed = self.proposed.lock().await;
                proposed.record(h);
                return SequencerGuard { _proposed: proposed, notify: &self.handed_over };
            }
        }
    }
}

/// Held while one batch is handed to Raft; wakes the waiting batches when dropped.
pub struct SequencerGuard<'a> {
    _proposed: MutexGuard<'a, Proposed>,
    notify: &'a Notify,
}

impl Drop for SequencerGuard<'_> {
    fn drop(&mut self) {
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn batch(producer_id: i64, epoch: i16, base_sequence: i32, record_count: u32) -> BatchHeader {
        BatchHeader {
            crc: 0,
            attributes: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            record_count,
            first_timestamp: 0,
            max_timestamp: 0,
        }
    }

    #[test]
    fn in_line_batches_pass_and_a_batch_ahead_waits() {
        let mut p = Proposed::default();
        assert_eq!(p.admit(&batch(7, 0, 0, 10), || None), Admit::Now);
        assert_eq!(p.admit(&batch(7, 0, 20, 10), || None), Admit::Wait, "batch 10..20 has not been handed over");
        assert_eq!(p.admit(&batch(7, 0, 10, 10), || None), Admit::Now);
        assert_eq!(p.admit(&batch(7, 0, 20, 10), || None), Admit::Now);
    }

    #[test]
    fn retries_and_renumbered_batches_behind_the_hint_pass_and_the_hint_follows_them() {
        let mut p = Proposed::default();
        p.admit(&batch(7, 0, 0, 10), || None);
        p.admit(&batch(7, 0, 10, 10), || None);
        p.admit(&batch(7, 0, 20, 10), || None);
        // Batch 10..20 failed for good; the producer renumbers what follows from 10.
        assert_eq!(p.admit(&batch(7, 0, 10, 5), || None), Admit::Now, "behind the hint: renumbered");
        assert_eq!(p.admit(&batch(7, 0, 20, 5), || None), Admit::Wait, "15..20 comes first now");
        assert_eq!(p.admit(&batch(7, 0, 15, 5), || None), Admit::Now);
        assert_eq!(p.admit(&batch(7, 0, 20, 5), || None), Admit::Now);
    }

    #[test]
    fn a_new_producers_batches_wait_for_its_first_batch() {
        // Seen on a real cluster: batch 110.. of a brand-new producer overtook batch 0..
        // and was refused as from an unknown producer.
        let mut p = Proposed::default();
        assert_eq!(p.admit(&batch(7, 0, 110, 110), || None), Admit::Wait);
        assert_eq!(p.admit(&batch(7, 0, 0, 110), || None), Admit::Now);
        assert_eq!(p.admit(&batch(7, 0, 110, 110), || None), Admit::Now);
    }

    #[test]
    fn an_unseen_producer_is_seeded_from_the_applied_state() {
        let mut p = Proposed::default();
        assert_eq!(p.admit(&batch(7, 2, 50, 10), || Some((2, 40))), Admit::Wait);
        assert_eq!(p.admit(&batch(7, 2, 40, 10), || Some((2, 40))), Admit::Now);
        assert_eq!(p.admit(&batch(7, 2, 50, 10), || unreachable!("known now")), Admit::Now);
    }

    #[test]
    fn a_new_epoch_starts_again_at_zero() {
        let mut p = Proposed::default();
        p.admit(&batch(7, 0, 0, 10), || None);
        assert_eq!(p.admit(&batch(7, 1, 10, 10), || None), Admit::Wait, "epoch 1 starts at 0");
        assert_eq!(p.admit(&batch(7, 1, 0, 10), || None), Admit::Now);
        assert_eq!(p.admit(&batch(8, 0, 0, 10), || None), Admit::Now, "producers are independent");
    }

    #[test]
    fn sequences_wrap_around() {
        let mut p = Proposed::default();
        p.admit(&batch(7, 0, i32::MAX - 4, 5), || None);
        assert_eq!(p.admit(&batch(7, 0, 5, 5), || None), Admit::Wait, "0..5 comes first");
        assert_eq!(p.admit(&batch(7, 0, 0, 5), || None), Admit::Now);
        assert_eq!(p.admit(&batch(7, 0, 5, 5), || None), Admit::Now);
    }

    #[test]
    fn applied_next_reads_the_last_batch_of_the_current_epoch() {
        let mut t = ProducerTable::default();
        assert_eq!(applied_next(&t, 7), None);
        let id = crate::producers::BatchId { producer_id: 7, epoch: 3, base_seq: 0, count: 4, crc: 1 };
        t.record(&id, 100);
        assert_eq!(applied_next(&t, 7), Some((3, 4)));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_held_batch_goes_as_soon_as_its_predecessor_is_handed_over() {
        let s = Arc::new(Sequencer::default());
        drop(s.admit(&batch(7, 0, 0, 10), || None).await);
        let started = tokio::time::Instant::now();
        let ahead = {
            let s = s.clone();
            tokio::spawn(async move {
                let _g = s.admit(&batch(7, 0, 20, 10), || None).await;
                started.elapsed()
            })
        };
        tokio::task::yield_now().await;
        drop(s.admit(&batch(7, 0, 10, 10), || None).await);
        let waited = ahead.await.unwrap();
        assert!(waited < SEQUENCE_WAIT, "released by its predecessor, not by the timeout ({waited:?})");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_whose_predecessor_never_comes_goes_after_the_wait() {
        let s = Sequencer::default();
        drop(s.admit(&batch(7, 0, 0, 10), || None).await);
        let started = tokio::time::Instant::now();
        drop(s.admit(&batch(7, 0, 20, 10), || None).await);
        assert!(started.elapsed() >= SEQUENCE_WAIT);
    }
}
