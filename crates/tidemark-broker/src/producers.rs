//! The idempotent-producer table of one partition: for each producer id, its epoch and
//! the sequence ranges (with the offsets they got) of its last few batches.
//!
//! It lives in the partition state machine, so every replica decides a batch's fate the
//! same way at apply time, and it is part of the partition snapshot, so a new leader,
//! a restarted node or a replica installed from a snapshot still recognises a retried
//! batch. Checking at apply time (not before proposing) is what makes a retry that races
//! its own first attempt safe: whichever copy is applied second is the duplicate.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use tidemark_types::{seq_add, Offset};

/// Batches remembered per producer. The SDK keeps at most this many batches in flight
/// per partition, so any retry it can send is still in the window.
pub const DEDUP_WINDOW: usize = 5;

/// Where one batch of a producer went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqRange {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub crc: u32,
}

/// What identifies one idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchId {
    pub producer_id: i64,
    pub epoch: i16,
    pub base_seq: i32,
    pub count: u32,
    pub crc: u32,
}

impl BatchId {
    fn last_seq(&self) -> i32 {
        seq_add(self.base_seq, self.count.saturating_sub(1))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first; never empty.
    pub batches: VecDeque<SeqRange>,
    /// The table clock when this producer last wrote; drives expiry.
    pub last_write_ms: i64,
}

/// The verdict on an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqCheck {
    /// The next batch in sequence: append it.
    Append,
    /// Already written: answer with the original offsets, write nothing.
    Duplicate { base_offset: Offset, last_offset: Offset },
    /// A gap (or a partial overlap): `expected` is the sequence that would be accepted.
    OutOfOrder { expected: i32 },
    /// A newer instance of this producer has written here.
    Fenced { current: i16 },
    /// No state for this producer (never seen, or expired) and the batch does not start
    /// a fresh sequence.
    Unknown,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerTable {
    pub producers: BTreeMap<i64, ProducerEntry>,
    /// The latest leader time seen in an applied command: never goes back, so expiry
    /// is the same on every replica whatever their own clocks say.
    pub clock_ms: i64,
    next_expiry_scan_ms: i64,
}

impl ProducerTable {
    /// Moves the table clock to `now_ms` (if later) and forgets producers idle for more
    /// than `expiry_ms`. Scans at most every tenth of the expiry time, so a busy
    /// partition does not walk the table on every batch.
    pub fn advance_clock(&mut self, now_ms: i64, expiry_ms: i64) {
        self.clock_ms = self.clock_ms.max(now_ms);
        if expiry_ms <= 0 || self.clock_ms < self.next_expiry_scan_ms {
            return;
        }
        let cutoff = self.clock_ms.saturating_sub(expiry_ms);
        self.producers.retain(|_, p| p.last_write_ms >= cutoff);
        self.next_expiry_scan_ms = self.clock_ms.saturating_add((expiry_ms / 10).max(1));
    }

    pub fn check(&self, b: &BatchId) -> SeqCheck {
        let Some(entry) = self.producers.get(&b.producer_id) else {
            return if b.base_seq == 0 { SeqCheck::Append } else { SeqCheck::Unknown };
        };
        if b.epoch < entry.epoch {
            return SeqCheck::Fenced { current: entry.epoch };
        }
        if b.epoch > entry.epoch {
            // A new epoch starts its sequences again.
            return if b.base_seq == 0 { SeqCheck::Append } else { SeqCheck::OutOfOrder { expected: 0 } };
        }
        let last_seq = b.last_seq();
        let same = |r: &&SeqRange| r.first_seq == b.base_seq && r.last_seq == last_seq && r.crc == b.crc;
        if let Some(r) = entry.batches.iter().find(same) {
            return SeqCheck::Duplicate { base_offset: r.base_offset, last_offset: r.last_offset };
        }
        let expected = entry.batches.back().map_or(0, |r| seq_add(r.last_seq, 1));
        if b.base_seq == expected {
            SeqCheck::Append
        } else {
            SeqCheck::OutOfOrder { expected }
        }
    }

    /// Records an appended batch (after `check` said `Append`).
    pub fn record(&mut self, b: &BatchId, base_offset: Offset) {
        let range = SeqRange {
            first_seq: b.base_seq,
            last_seq: b.last_seq(),
            base_offset,
            last_offset: base_offset + b.count as u64 - 1,
            crc: b.crc,
        };
        let clock = self.clock_ms;
        let entry = self.producers.entry(b.producer_id).or_insert_with(|| ProducerEntry {
            epoch: b.epoch,
            batches: VecDeque::new(),
            last_write_ms: clock,
        });
        if entry.epoch != b.epoch {
            entry.epoch = b.epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(range);
        while entry.batches.len() > DEDUP_WINDOW {
            entry.batches.pop_front();
        }
        entry.last_write_ms = clock;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch whose CRC is derived from its numbers: same numbers, same content.
    fn id(producer_id: i64, epoch: i16, base_seq: i32, count: u32) -> BatchId {
        BatchId { producer_id, epoch, base_seq, count, crc: base_seq as u32 ^ count }
    }

    fn table_with(pid: i64, epoch: i16, batches: &[(i32, u32)]) -> ProducerTable {
        let mut t = ProducerTable::default();
        let mut offset = 100;
        for &(seq, n) in batches {
            assert_eq!(t.check(&id(pid, epoch, seq, n)), SeqCheck::Append);
            t.record(&id(pid, epoch, seq, n), offset);
            offset += n as u64;
        }
        t
    }

    #[test]
    fn next_in_sequence_appends_and_duplicates_get_original_offsets() {
        let t = table_with(7, 0, &[(0, 3), (3, 2)]);
        assert_eq!(t.check(&id(7, 0, 5, 1)), SeqCheck::Append);
        assert_eq!(t.check(&id(7, 0, 0, 3)), SeqCheck::Duplicate { base_offset: 100, last_offset: 102 });
        assert_eq!(t.check(&id(7, 0, 3, 2)), SeqCheck::Duplicate { base_offset: 103, last_offset: 104 });
    }

    #[test]
    fn a_renumbered_batch_is_never_taken_for_another() {
        let t = table_with(7, 0, &[(0, 3)]);
        let other_content = BatchId { crc: 999, ..id(7, 0, 0, 3) };
        assert_eq!(t.check(&other_content), SeqCheck::OutOfOrder { expected: 3 });
    }

    #[test]
    fn gaps_and_partial_overlaps_are_out_of_order() {
        let t = table_with(7, 0, &[(0, 3)]);
        assert_eq!(t.check(&id(7, 0, 4, 1)), SeqCheck::OutOfOrder { expected: 3 });
        assert_eq!(t.check(&id(7, 0, 1, 2)), SeqCheck::OutOfOrder { expected: 3 });
        assert_eq!(t.check(&id(7, 0, 0, 2)), SeqCheck::OutOfOrder { expected: 3 });
    }

    #[test]
    fn only_the_last_window_of_batches_is_remembered() {
        let batches: Vec<(i32, u32)> = (0..8).map(|i| (i, 1)).collect();
        let t = table_with(1, 0, &batches);
        assert_eq!(t.producers[&1].batches.len(), DEDUP_WINDOW);
        assert!(matches!(t.check(&id(1, 0, 7, 1)), SeqCheck::Duplicate { .. }));
        assert!(matches!(t.check(&id(1, 0, 3, 1)), SeqCheck::Duplicate { .. }));
        assert_eq!(t.check(&id(1, 0, 2, 1)), SeqCheck::OutOfOrder { expected: 8 });
    }

    #[test]
    fn older_epochs_are_fenced_and_newer_ones_restart_at_zero() {
        let mut t = table_with(1, 2, &[(0, 4)]);
        assert_eq!(t.check(&id(1, 1, 4, 1)), SeqCheck::Fenced { current: 2 });
        assert_eq!(t.check(&id(1, 3, 4, 1)), SeqCheck::OutOfOrder { expected: 0 });
        assert_eq!(t.check(&id(1, 3, 0, 1)), SeqCheck::Append);
        t.record(&id(1, 3, 0, 1), 200);
        assert_eq!(t.check(&id(1, 2, 4, 1)), SeqCheck::Fenced { current: 3 });
        assert_eq!(t.producers[&1].batches.len(), 1, "a new epoch forgets the old window");
    }

    #[test]
    fn unknown_producers_must_start_at_zero() {
        let t = ProducerTable::default();
        assert_eq!(t.check(&id(9, 0, 0, 5)), SeqCheck::Append);
        assert_eq!(t.check(&id(9, 0, 5, 5)), SeqCheck::Unknown);
    }

    #[test]
    fn idle_producers_expire_by_the_leader_clock() {
        let mut t = ProducerTable::default();
        t.advance_clock(1_000, 10_000);
        t.record(&id(1, 0, 0, 1), 0);
        t.advance_clock(5_000, 10_000);
        t.record(&id(2, 0, 0, 1), 1);
        // A clock going backwards (a new leader with a slower clock) changes nothing.
        t.advance_clock(3_000, 10_000);
        assert_eq!(t.clock_ms, 5_000);
        t.advance_clock(12_000, 10_000);
        assert!(!t.producers.contains_key(&1), "idle for 11 s with a 10 s expiry");
        assert!(t.producers.contains_key(&2));
        assert_eq!(t.check(&id(1, 0, 1, 1)), SeqCheck::Unknown);
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        assert_eq!(seq_add(i32::MAX, 1), 0);
        assert_eq!(seq_add(i32::MAX - 1, 3), 1);
        let t = table_with(1, 0, &[(0, 1)]);
        let mut t2 = t.clone();
        t2.producers.get_mut(&1).unwrap().batches[0].last_seq = i32::MAX;
        assert_eq!(t2.check(&id(1, 0, 0, 1)), SeqCheck::Append);
    }
}
