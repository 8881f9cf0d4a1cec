//! A partition group's state machine. The batches themselves stay in the Raft log; this
//! holds the small state that turns the log into a partition: the offset index (which
//! log entry holds which offsets), the next offset, the log start offset and the
//! idempotent-producer table.
//!
//! Offsets are assigned here, at apply time, so every replica assigns the same ones; for
//! the same reason duplicates and sequence gaps are judged here too.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tidemark_raft::{Command, CommandResponse, StateMachineLogic};
use tidemark_types::{record_ttl_deadlines, BatchHeader, Offset, TimestampMs};

use crate::groups::offsets::{apply_commit, is_commit, CommittedOffset};
use crate::groups::shared::{apply_share, is_share, SharedCursor};
use crate::producers::{BatchId, ProducerTable, SeqCheck};
use crate::retention::trim_of;
use crate::signal::Signal;

/// Command tags: the first byte of a partition command.
const TAG_APPEND: u8 = 1;
/// tag, leader time (i64 ms), producer expiry (i64 ms), then the batch.
const APPEND_HEADER: usize = 17;

/// Wraps a validated batch as an append command (one copy, to prepend the header).
///
/// The leader stamps its clock and the producer-state expiry into the command so every
/// replica expires idle producers at the same point of the log, whatever its own clock
/// and configuration say.
pub fn append_command(batch: &[u8], leader_time_ms: i64, producer_expiry_ms: i64) -> Command {
    let mut b = BytesMut::with_capacity(batch.len() + APPEND_HEADER);
    b.put_u8(TAG_APPEND);
    b.put_i64(leader_time_ms);
    b.put_i64(producer_expiry_ms);
    b.put_slice(batch);
    Command(b.freeze())
}

/// The batch inside an append command, if it is one.
pub fn batch_of(command: &Command) -> Option<Bytes> {
    match command.0.first() {
        Some(&TAG_APPEND) if command.0.len() >= APPEND_HEADER => Some(command.0.slice(APPEND_HEADER..)),
        _ => None,
    }
}

/// (leader time, producer expiry) of an append command.
fn append_clock(command: &Command) -> (i64, i64) {
    let c = &command.0;
    let at = |i: usize| i64::from_be_bytes(c[i..i + 8].try_into().expect("8 bytes"));
    (at(1), at(9))
}

/// Where one batch lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub base_offset: Offset,
    pub record_count: u32,
    pub log_index: u64,
    pub batch_len: u32,
    pub max_timestamp: TimestampMs,
    /// The leader's clock when it appended the batch (stamped in the command, so every
    /// replica agrees). Time retention is judged by this, not by the producer's timestamps,
    /// so a producer with a wrong clock can neither pin data nor have it purged at once.
    pub append_ms: i64,
}

impl IndexEntry {
    pub fn next_offset(&self) -> Offset {
        self.base_offset + self.record_count as u64
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub log_start_offset: Offset,
    pub next_offset: Offset,
    pub index: Vec<IndexEntry>,
    /// Bytes of the batches in `index`: what retention by size counts.
    pub retained_bytes: u64,
    pub producers: ProducerTable,
    /// Committed consumer-group offsets, by group id (see `groups::offsets`).
    pub committed: BTreeMap<u64, CommittedOffset>,
    /// Shared-group delivery state, by group id (see `groups::shared`).
    pub shared: BTreeMap<u64, SharedCursor>,
    /// Expiry time (ms) of each record that carries a `tidemark-ttl-ms` header, read from
    /// the batch when it is applied (the batch itself stays in the log). Only such records
    /// are here; they are needed for as long as the record is retained, since a shared
    /// group created later starts at the log start, so retention is what must trim this.
    pub record_deadlines: BTreeMap<Offset, i64>,
    /// Where the highest timestamp so far rises, as (timestamp, base offset of that
    /// batch), so a lookup by time is a binary search (Kafka's time index keeps the same
    /// running maximum). Derived from `index`, so not in the snapshot.
    #[serde(skip)]
    time_marks: Vec<(TimestampMs, Offset)>,
}

impl PartitionState {
    /// Judges an idempotent batch against the producer table, then indexes it.
    fn append(&mut self, log_index: u64, h: &BatchHeader, batch: &[u8], append_ms: i64) -> AppendResult {
        let len = batch.len();
        let id = (h.producer_id >= 0).then_some(BatchId {
            producer_id: h.producer_id,
            epoch: h.producer_epoch,
            base_seq: h.base_sequence,
            count: h.record_count,
            crc: h.crc,
        });
        if let Some(id) = &id {
            match self.producers.check(id) {
                SeqCheck::Append => {}
                SeqCheck::Duplicate { base_offset, last_offset } => {
                    return AppendResult::Duplicate { base_offset, last_offset }
                }
                SeqCheck::OutOfOrder { expected } => {
                    return AppendResult::OutOfOrderSequence { expected, got: h.base_sequence }
                }
                SeqCheck::Fenced { current } => {
                    return AppendResult::ProducerFenced { epoch: h.producer_epoch, current }
                }
                SeqCheck::Unknown => return AppendResult::UnknownProducer { producer_id: h.producer_id },
            }
        }
        let base_offset = self.next_offset;
        self.next_offset += h.record_count as u64;
        self.index.push(IndexEntry {
            base_offset,
            record_count: h.record_count,
            log_index,
            batch_len: len as u32,
            max_timestamp: h.max_timestamp,
            append_ms,
        });
        self.retained_bytes += len as u64;
        if self.time_marks.last().is_none_or(|(ts, _)| h.max_timestamp > *ts) {
            self.time_marks.push((h.max_timestamp, base_offset));
        }
        if let Some(id) = &id {
            self.producers.record(id, base_offset);
        }
        // The leader validated the batch, so this cannot fail; were it to, identically.
        for (i, deadline) in record_ttl_deadlines(batch).unwrap_or_default() {
            self.record_deadlines.insert(base_offset + i as u64, deadline);
        }
        AppendResult::Appended { base_offset, last_offset: self.next_offset - 1 }
    }

    /// The position in `index` of the batch holding `offset`, if it is stored.
    pub fn find(&self, offset: Offset) -> Option<usize> {
        let i = self.index.partition_point(|e| e.next_offset() <= offset);
        (i < self.index.len()).then_some(i)
    }

    /// The first offset whose batch holds a timestamp at or after `ts`; the log end
    /// offset when there is none (Kafka's ListOffsets semantics, at batch granularity).
    pub fn offset_for_timestamp(&self, ts: TimestampMs) -> Offset {
        let i = self.time_marks.partition_point(|(max, _)| *max < ts);
        self.time_marks.get(i).map_or(self.next_offset, |(_, offset)| *offset)
    }

    /// Derives `time_marks` from the index again (after a restore or a trim: the
    /// running maximum of what is left may be lower than before).
    pub(crate) fn rebuild_time_marks(&mut self) {
        self.time_marks.clear();
        for e in &self.index {
            if self.time_marks.last().is_none_or(|(ts, _)| e.max_timestamp > *ts) {
                self.time_marks.push((e.max_timestamp, e.base_offset));
            }
        }
    }
}

/// What produce answers: the offsets the batch got, or why an idempotent batch was
/// refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendResult {
    Appended {
        base_offset: Offset,
        last_offset: Offset,
    },
    /// An idempotent retry of a batch already written at these offsets.
    Duplicate {
        base_offset: Offset,
        last_offset: Offset,
    },
    OutOfOrderSequence {
        expected: i32,
        got: i32,
    },
    ProducerFenced {
        epoch: i16,
        current: i16,
    },
    UnknownProducer {
        producer_id: i64,
    },
    Rejected,
}

pub struct PartitionShared {
    pub state: RwLock<PartitionState>,
    /// Ticks when new entries are applied: wakes long-polling fetches.
    pub applied: Signal,
}

impl PartitionShared {
    pub fn new() -> Arc<PartitionShared> {
        Arc::new(PartitionShared { state: RwLock::new(PartitionState::default()), applied: Signal::default() })
    }

    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, PartitionState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct PartitionLogic(pub Arc<PartitionShared>);

impl StateMachineLogic for PartitionLogic {
    fn apply(&mut self, index: u64, command: &Command) -> CommandResponse {
        if let Some(to) = trim_of(command) {
            self.0.state.write().unwrap_or_else(|e| e.into_inner()).trim(to);
            return CommandResponse::default();
        }
        if is_commit(command) {
            return apply_commit(&mut self.0.state.write().unwrap_or_else(|e| e.into_inner()), command);
        }
        if is_share(command) {
            return apply_share(&mut self.0.state.write().unwrap_or_else(|e| e.into_inner()), command);
        }
        let result = match batch_of(command).map(|b| (BatchHeader::read(&b), b)) {
            Some((Ok(h), batch)) => {
                let mut st = self.0.state.write().unwrap_or_else(|e| e.into_inner());
                let (now_ms, expiry_ms) = append_clock(command);
                st.producers.advance_clock(now_ms, expiry_ms);
                st.append(index, &h, &batch, now_ms)
            }
            // The leader validated the batch; a command that still cannot be read is
            // skipped identically on every replica.
            _ => AppendResult::Rejected,
        };
        CommandResponse(Bytes::from(bincode::serialize(&result).expect("results always encode")))
    }

    fn applied_up_to(&mut self, _index: u64) {
        self.0.applied.bump();
    }

    fn snapshot(&self) -> Vec<u8> {
        bincode::serialize(&*self.0.read()).expect("partition state always encodes")
    }

    fn retained_from(&self) -> Option<u64> {
        self.0.read().retained_from()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let mut state: PartitionState = tidemark_raft::codec::decode(snapshot).map_err(|e| e.to_string())?;
        state.rebuild_time_marks();
        *self.0.state.write().unwrap_or_else(|e| e.into_inner()) = state;
        self.0.applied.bump();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_types::{Record, RecordBatchBuilder};

    fn batch(n: usize, ts: i64) -> Bytes {
        let mut b = RecordBatchBuilder::new();
        for i in 0..n {
            b.push(Record { value: Bytes::from(format!("v{i}")), timestamp_ms: ts, ..Default::default() });
        }
        b.build(None)
    }

    #[test]
    fn offsets_are_dense_and_indexed() {
        let shared = PartitionShared::new();
        let mut logic = PartitionLogic(shared.clone());
        for (i, n) in [3usize, 1, 5].iter().enumerate() {
            logic.apply(10 + i as u64, &append_command(&batch(*n, 100 * i as i64), 0, 0));
        }
        let st = shared.read();
        assert_eq!(st.next_offset, 9);
        let bases: Vec<_> = st.index.iter().map(|e| (e.base_offset, e.log_index)).collect();
        assert_eq!(bases, vec![(0, 10), (3, 11), (4, 12)]);
        assert_eq!(st.find(0), Some(0));
        assert_eq!(st.find(2), Some(0));
        assert_eq!(st.find(3), Some(1));
        assert_eq!(st.find(8), Some(2));
        assert_eq!(st.find(9), None);
        assert_eq!(st.offset_for_timestamp(150), 4);
        assert_eq!(st.offset_for_timestamp(1000), 9);
    }

    /// Timestamps need not rise from batch to batch (producers' clocks); the answer is
    /// the first batch holding one at or after the time asked, before and after a trim
    /// and a restore, as a scan of the whole index would find it.
    #[test]
    fn lookup_by_time_matches_a_scan_when_timestamps_go_back() {
        let shared = PartitionShared::new();
        let mut logic = PartitionLogic(shared.clone());
        let stamps = [100i64, 50, 120, 90, 200, 10, 200, 300];
        for (i, ts) in stamps.iter().enumerate() {
            logic.apply(10 + i as u64, &append_command(&batch(2, *ts), 0, 0));
        }
        let scan = |st: &PartitionState, ts: i64| {
            st.index.iter().find(|e| e.max_timestamp >= ts).map_or(st.next_offset, |e| e.base_offset)
        };
        let check = |st: &PartitionState| {
            for ts in [0, 10, 40, 50, 51, 95, 100, 101, 120, 121, 200, 250, 300, 301] {
                assert_eq!(st.offset_for_timestamp(ts), scan(st, ts), "timestamp {ts}");
            }
        };
        check(&shared.read());
        // Drops the batch stamped 100: 50 is now the first maximum.
        logic.apply(30, &crate::retention::trim_command(2));
        check(&shared.read());
        let snapshot = logic.snapshot();
        let restored = PartitionShared::new();
        PartitionLogic(restored.clone()).restore(&snapshot).unwrap();
        check(&restored.read());
        assert_eq!(restored.read().offset_for_timestamp(40), 2);
    }

    fn idempotent(n: usize, pid: i64, epoch: i16, seq: i32) -> Bytes {
        let mut b = RecordBatchBuilder::new();
        for i in 0..n {
            b.push(Record { value: Bytes::from(format!("v{i}")), ..Default::default() });
        }
        b.build(Some((pid, epoch, seq)))
    }

    fn apply(logic: &mut PartitionLogic, index: u64, batch: &Bytes, now_ms: i64) -> AppendResult {
        let r = logic.apply(index, &append_command(batch, now_ms, 60_000));
        bincode::deserialize(&r.0).unwrap()
    }

    #[test]
    fn idempotent_retries_take_no_offsets_and_get_the_original_ones() {
        let shared = PartitionShared::new();
        let mut logic = PartitionLogic(shared.clone());
        let first = idempotent(3, 5, 0, 0);
        assert_eq!(apply(&mut logic, 1, &first, 0), AppendResult::Appended { base_offset: 0, last_offset: 2 });
        assert_eq!(apply(&mut logic, 2, &batch(2, 0), 0), AppendResult::Appended { base_offset: 3, last_offset: 4 });
        assert_eq!(apply(&mut logic, 3, &first, 0), AppendResult::Duplicate { base_offset: 0, last_offset: 2 });
        let next = idempotent(1, 5, 0, 3);
        assert_eq!(apply(&mut logic, 4, &next, 0), AppendResult::Appended { base_offset: 5, last_offset: 5 });
        let st = shared.read();
        assert_eq!((st.next_offset, st.index.len()), (6, 3), "the duplicate was not indexed");
    }

    #[test]
    fn idempotent_errors_are_decided_at_apply() {
        let shared = PartitionShared::new();
        let mut logic = PartitionLogic(shared.clone());
        apply(&mut logic, 1, &idempotent(2, 5, 1, 0), 0);
        let gap = apply(&mut logic, 2, &idempotent(1, 5, 1, 3), 0);
        assert_eq!(gap, AppendResult::OutOfOrderSequence { expected: 2, got: 3 });
        let old = apply(&mut logic, 3, &idempotent(1, 5, 0, 2), 0);
        assert_eq!(old, AppendResult::ProducerFenced { epoch: 0, current: 1 });
        let unknown = apply(&mut logic, 4, &idempotent(1, 6, 0, 9), 0);
        assert_eq!(unknown, AppendResult::UnknownProducer { producer_id: 6 });
        // Idle past the expiry (60 s here): the state is gone.
        let expired = apply(&mut logic, 5, &idempotent(1, 5, 1, 2), 61_000);
        assert_eq!(expired, AppendResult::UnknownProducer { producer_id: 5 });
        assert_eq!(shared.read().next_offset, 2, "no refused batch took an offset");
    }

    #[test]
    fn the_producer_table_survives_snapshot_and_restore() {
        let shared = PartitionShared::new();
        let mut logic = PartitionLogic(shared.clone());
        let first = idempotent(2, 5, 0, 0);
        apply(&mut logic, 1, &first, 0);
        let other = PartitionShared::new();
        let mut restored = PartitionLogic(other.clone());
        restored.restore(&logic.snapshot()).unwrap();
        assert_eq!(apply(&mut restored, 2, &first, 0), AppendResult::Duplicate { base_offset: 0, last_offset: 1 });
    }

    #[test]
    fn unreadable_commands_change_nothing() {
        let shared = PartitionShared::new();
        let mut logic = PartitionLogic(shared.clone());
        let r = logic.apply(1, &Command(Bytes::from_static(b"\x01garbage")));
        assert_eq!(bincode::deserialize::<AppendResult>(&r.0).unwrap(), AppendResult::Rejected);
        assert_eq!(shared.read().next_offset, 0);
    }
}
