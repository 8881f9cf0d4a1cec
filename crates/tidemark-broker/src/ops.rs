//! Produce, fetch and offset lookups: the data path.

use std::time::Duration;

use bytes::Bytes;
use openraft::error::RaftError;
use openraft::impls::ProgressResponder;
use tidemark_raft::log_store::read_entries;
use tidemark_raft::TypeConfig;
use tidemark_types::{now_ms, BatchHeader, Offset, PartitionId, TimestampMs};

use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::meta::{MetaCommand, MetaResponse};
use crate::partition::{append_command, batch_of, AppendResult, IndexEntry};
use crate::sequencer::applied_next;

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
    /// An idempotent retry of a batch already written answers with its original offsets.
    pub async fn produce(&self, topic: &str, partition: PartitionId, batch: Bytes) -> Result<(Offset, Offset)> {
        let replica = self.replica(topic, partition)?;
        let header = BatchHeader::validate(&batch, &self.cfg.limits)?;
        let what = format!("{topic}/{partition}");
        self.check_producer(&what, &header)?;
        let expiry_ms = i64::try_from(self.cfg.producer_expiry.as_millis()).unwrap_or(i64::MAX);
        let command = append_command(&batch, now_ms(), expiry_ms);
        let (responder, answer) = ProgressResponder::<TypeConfig, _>::complete_only();
        {
            // Only the hand-over is ordered; commits are awaited concurrently.
            let applied = || applied_next(&replica.shared.read().producers, header.producer_id);
            let _order = replica.produce_order.admit(&header, applied).await;
            replica
                .raft
                .client_write_ff(command, Some(responder))
                .await
                .map_err(|e| self.write_error(what.clone(), RaftError::Fatal(e)))?;
        }
        let resp = answer
            .await
            .map_err(|_| BrokerError::Unavailable(format!("{what}: the replica stopped before answering")))?
            .map_err(|e| self.write_error(what.clone(), RaftError::APIError(e)))?;
        let result = bincode::deserialize::<AppendResult>(&resp.data.0)
            .map_err(|e| BrokerError::Internal(format!("{what}: unreadable append result: {e}")))?;
        append_outcome(what, &header, result)
    }

    /// A leader-side fencing check against the metadata group: an old instance of a named
    /// producer is refused even on partitions its successor has not written to yet.
    fn check_producer(&self, what: &str, h: &BatchHeader) -> Result<()> {
        if h.producer_id < 0 {
            return Ok(());
        }
        if h.producer_epoch < 0 || h.base_sequence < 0 {
            return Err(BrokerError::InvalidRequest(format!(
                "{what}: an idempotent batch (producer id {}) needs an epoch and a base sequence of 0 or more, \
                 got epoch {} and sequence {}",
                h.producer_id, h.producer_epoch, h.base_sequence
            )));
        }
        let current = self.meta.read().producer_epochs.get(&h.producer_id).copied();
        match current {
            Some(current) if h.producer_epoch < current => Err(BrokerError::ProducerFenced {
                what: what.to_string(),
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current,
            }),
            _ => Ok(()),
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
    pub(crate) fn read_batches(&self, group: u64, entries: &[IndexEntry]) -> Result<Vec<(Offset, Bytes)>> {
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

    /// Registers a producer in the metadata group: (producer id, epoch).
    pub async fn init_producer(&self, name: Option<String>) -> Result<(i64, i16)> {
        if let Some(n) = &name {
            if n.is_empty() || n.len() > 255 {
                return Err(BrokerError::InvalidRequest("a producer name has 1 to 255 bytes".into()));
            }
        }
        match self.meta_write(MetaCommand::InitProducer { name }).await? {
            MetaResponse::Producer { id, epoch } => Ok((id, epoch)),
            other => Err(BrokerError::Internal(format!("InitProducer answered {other:?}"))),
        }
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

/// Turns the state machine's verdict into produce's answer.
fn append_outcome(what: String, h: &BatchHeader, result: AppendResult) -> Result<(Offset, Offset)> {
    match result {
        AppendResult::Appended { base_offset, last_offset } => Ok((base_offset, last_offset)),
        AppendResult::Duplicate { base_offset, last_offset } => {
            tracing::debug!(partition = %what, producer = h.producer_id, seq = h.base_sequence, "duplicate batch");
            Ok((base_offset, last_offset))
        }
        AppendResult::OutOfOrderSequence { expected, got } => {
            Err(BrokerError::OutOfOrderSequence { what, expected, got })
        }
        AppendResult::ProducerFenced { epoch, current } => {
            Err(BrokerError::ProducerFenced { what, producer_id: h.producer_id, epoch, current })
        }
        AppendResult::UnknownProducer { producer_id } => Err(BrokerError::UnknownProducer { what, producer_id }),
        AppendResult::Rejected => {
            Err(BrokerError::Internal(format!("{what}: the state machine rejected a validated batch")))
        }
    }
}
