//! A partition group's state machine. The batches themselves stay in the Raft log; this
//! holds the small state that turns the log into a partition: the offset index (which
//! log entry holds which offsets), the next offset and the log start offset.
//!
//! Offsets are assigned here, at apply time, so every replica assigns the same ones.

use std::sync::{Arc, RwLock};

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tidemark_raft::{Command, CommandResponse, StateMachineLogic};
use tidemark_types::{BatchHeader, Offset, TimestampMs};

use crate::signal::Signal;

/// Command tags: the first byte of a partition command.
const TAG_APPEND: u8 = 1;

/// Wraps a validated batch as an append command (one copy, to prepend the tag).
pub fn append_command(batch: &[u8]) -> Command {
    let mut b = BytesMut::with_capacity(batch.len() + 1);
    b.put_u8(TAG_APPEND);
    b.put_slice(batch);
    Command(b.freeze())
}

/// The batch inside an append command, if it is one.
pub fn batch_of(command: &Command) -> Option<Bytes> {
    match command.0.first() {
        Some(&TAG_APPEND) => Some(command.0.slice(1..)),
        _ => None,
    }
}

/// Where one batch lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub base_offset: Offset,
    pub record_count: u32,
    pub log_index: u64,
    pub batch_len: u32,
    pub max_timestamp: TimestampMs,
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
}

impl PartitionState {
    /// The position in `index` of the batch holding `offset`, if it is stored.
    pub fn find(&self, offset: Offset) -> Option<usize> {
        let i = self.index.partition_point(|e| e.next_offset() <= offset);
        (i < self.index.len()).then_some(i)
    }

    /// The first offset whose batch holds a timestamp at or after `ts`; the log end
    /// offset when there is none (Kafka's ListOffsets semantics, at batch granularity).
    pub fn offset_for_timestamp(&self, ts: TimestampMs) -> Offset {
        self.index.iter().find(|e| e.max_timestamp >= ts).map_or(self.next_offset, |e| e.base_offset)
    }
}

/// What produce answers: the offsets the batch got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendResult {
    Appended { base_offset: Offset, last_offset: Offset },
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
        let result = match batch_of(command).map(|b| (BatchHeader::read(&b), b.len())) {
            Some((Ok(h), len)) => {
                let mut st = self.0.state.write().unwrap_or_else(|e| e.into_inner());
                let base_offset = st.next_offset;
                st.next_offset += h.record_count as u64;
                st.index.push(IndexEntry {
                    base_offset,
                    record_count: h.record_count,
                    log_index: index,
                    batch_len: len as u32,
                    max_timestamp: h.max_timestamp,
                });
                AppendResult::Appended { base_offset, last_offset: st.next_offset - 1 }
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

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let state: PartitionState = bincode::deserialize(snapshot).map_err(|e| e.to_string())?;
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
            logic.apply(10 + i as u64, &append_command(&batch(*n, 100 * i as i64)));
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

    #[test]
    fn unreadable_commands_change_nothing() {
        let shared = PartitionShared::new();
        let mut logic = PartitionLogic(shared.clone());
        let r = logic.apply(1, &Command(Bytes::from_static(b"\x01garbage")));
        assert_eq!(bincode::deserialize::<AppendResult>(&r.0).unwrap(), AppendResult::Rejected);
        assert_eq!(shared.read().next_offset, 0);
    }
}
