//! Produce, fetch and offset lookups: the data path.

use std::time::Duration;

use bytes::Bytes;
use tidemark_raft::log_store::read_entries;
use tidemark_types::{BatchHeader, Offset, PartitionId, TimestampMs};

use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::partition::{append_command, batch_of, AppendResult, IndexEntry};

/// Where a ListOffsets request starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    Timestamp(TimestampMs),
}

#[derive(Debug, Clone, Default)]
pub struct FetchResult {
    /// (base offset, batch bytes as produced).
    pub batches: Vec<(Offset, Bytes)>,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
}

impl Broker {
    /// Appends one encoded batch; answers once a majority has committed (and fsynced) it.
    pub async fn produce(&self, topic: &str, partition: PartitionId, batch: Bytes) -> Result<(Offset, Offset)> {
        let replica = self.replica(topic, partition)?;
        BatchHeader::validate(&batch, &self.cfg.limits)?;
        let what = format!("{topic}/{partition}");
        let resp =
            replica.raft.client_write(append_command(&batch)).await.map_err(|e| self.write_error(what.clone(), e))?;
        match bincode::deserialize::<AppendResult>(&resp.data.0) {
            Ok(AppendResult::Appended { base_offset, last_offset }) => Ok((base_offset, last_offset)),
            _ => Err(BrokerError::Internal(format!("{what}: the state machine rejected a validated batch"))),
        }
    }

    /// Reads committed batches from `offset`, waiting up to `max_wait` for some to arrive.
    /// Returns at least one batch when one is available, then stops near `max_bytes`.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: PartitionId,
        offset: Offset,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<FetchResult> {
        let replica = self.read_replica(topic, partition).await?;
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let seen = replica.shared.applied.version();
            let (entries, start, end) = {
                let st = replica.shared.read();
                if offset < st.log_start_offset || offset > st.next_offset {
                    return Err(BrokerError::OffsetOutOfRange {
                        offset,
                        start: st.log_start_offset,
                        end: st.next_offset,
                    });
                }
                let mut picked: Vec<IndexEntry> = Vec::new();
                if let Some(first) = st.find(offset) {
                    let mut bytes = 0usize;
                    for e in &st.index[first..] {
                        if !picked.is_empty() && bytes + e.batch_len as usize > max_bytes {
                            break;
                        }
                        bytes += e.batch_len as usize;
                        picked.push(*e);
                    }
                }
                (picked, st.log_start_offset, st.next_offset)
            };
            if !entries.is_empty() {
                let batches = self.read_batches(replica.group, &entries)?;
                return Ok(FetchResult { batches, log_start_offset: start, log_end_offset: end });
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(FetchResult { batches: Vec::new(), log_start_offset: start, log_end_offset: end });
            }
            replica.shared.applied.changed_since(seen, deadline - now).await;
        }
    }

    /// Reads the batches of `entries` (consecutive index entries) from the Raft log.
    fn read_batches(&self, group: u64, entries: &[IndexEntry]) -> Result<Vec<(Offset, Bytes)>> {
        let (first, last) = (entries[0].log_index, entries[entries.len() - 1].log_index);
        let raw = read_entries(self.engine(), group, first, last + 1, usize::MAX)
            .map_err(|e| BrokerError::Internal(format!("reading the log of group {group:#x}: {e}")))?;
        let mut out = Vec::with_capacity(entries.len());
        let mut want = entries.iter().peekable();
        for entry in raw {
            let Some(next) = want.peek() else { break };
            if entry.log_id.index != next.log_index {
                continue;
            }
            if let openraft::EntryPayload::Normal(cmd) = &entry.payload {
                if let Some(batch) = batch_of(cmd) {
                    out.push((next.base_offset, batch));
                }
            }
            want.next();
        }
        if want.peek().is_some() {
            return Err(BrokerError::Internal(format!("group {group:#x}: indexed log entries are missing")));
        }
        Ok(out)
    }

    /// Resolves earliest / latest / a timestamp to an offset on the partition leader.
    /// Returns (offset, log start, log end).
    pub async fn list_offsets(
        &self,
        topic: &str,
        partition: PartitionId,
        spec: OffsetSpec,
    ) -> Result<(Offset, Offset, Offset)> {
        let replica = self.read_replica(topic, partition).await?;
        let st = replica.shared.read();
        let offset = match spec {
            OffsetSpec::Earliest => st.log_start_offset,
            OffsetSpec::Latest => st.next_offset,
            OffsetSpec::Timestamp(ts) => st.offset_for_timestamp(ts),
        };
        Ok((offset, st.log_start_offset, st.next_offset))
    }
}
