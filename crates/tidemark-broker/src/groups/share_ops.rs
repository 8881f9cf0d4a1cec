//! Shared-group consumption on the partition leader: a long-poll fetch that leases
//! records (a Raft write, only when something can be leased) and the settling of leases
//! (ack / release / reject).

use std::time::Duration;

use bytes::Bytes;
use tidemark_types::{now_ms, Offset, PartitionId};

use super::shared::{has_available, shortest_ttl, Leased, Settle, ShareCommand, ShareLimits, ShareResult};
use super::GroupMode;
use crate::broker::{Broker, Replica};
use crate::error::{BrokerError, Result};
use crate::partition::IndexEntry;

/// What a shared fetch hands to a member: the leased records and the batches holding
/// them (whole batches, as stored; the member keeps only the leased offsets).
#[derive(Debug, Clone, Default)]
pub struct SharedFetch {
    pub leased: Vec<Leased>,
    pub batches: Vec<(Offset, Bytes)>,
    pub log_end_offset: Offset,
}

/// Leases and settles wake a waiting fetch through the applied signal; lease expiry and
/// release backoff are time-driven, so a waiting fetch also looks again this often.
const RECHECK: Duration = Duration::from_millis(100);

impl Broker {
    /// Leases up to `max_records` records of `topic/partition` to `member`, waiting up
    /// to `max_wait` for some to become available.
    pub async fn share_fetch(
        &self,
        group: &str,
        member: &str,
        topic: &str,
        partition: PartitionId,
        max_records: u32,
        max_wait: Duration,
    ) -> Result<SharedFetch> {
        let replica = self.read_replica(topic, partition).await?;
        let (group_id, limits) = self.shared_group(group, topic)?;
        let what = format!("{topic}/{partition}");
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let seen = replica.shared.applied.version();
            let (available, end) = {
                let st = replica.shared.read();
                (has_available(&st, group_id, member, limits.max_in_flight, now_ms()), st.next_offset)
            };
            if available {
                let cmd = ShareCommand::Acquire {
                    group_id,
                    member: member.into(),
                    max_records: max_records.clamp(1, 10_000),
                    limits,
                    now_ms: now_ms(),
                };
                let leased = match self.share_write(&replica, &what, cmd).await? {
                    ShareResult::Acquired(v) => v,
                    other => return Err(BrokerError::Internal(format!("{what}: acquire answered {other:?}"))),
                };
                if !leased.is_empty() {
                    let batches = self.leased_batches(&replica, &leased)?;
                    return Ok(SharedFetch { leased, batches, log_end_offset: end });
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(SharedFetch { log_end_offset: end, ..Default::default() });
            }
            replica.shared.applied.changed_since(seen, (deadline - now).min(RECHECK)).await;
        }
    }

    /// Settles leases of `member`; returns how many were still its to settle.
    pub async fn share_settle(
        &self,
        group: &str,
        member: &str,
        topic: &str,
        partition: PartitionId,
        offsets: Vec<(Offset, Settle)>,
    ) -> Result<u32> {
        let replica = self.leader_replica(topic, partition)?;
        let (group_id, limits) = self.shared_group(group, topic)?;
        let what = format!("{topic}/{partition}");
        let cmd = ShareCommand::Settle {
            group_id,
            member: member.into(),
            offsets,
            backoff_ms: limits.backoff_ms,
            now_ms: now_ms(),
        };
        match self.share_write(&replica, &what, cmd).await? {
            ShareResult::Settled(n) => Ok(n),
            other => Err(BrokerError::Internal(format!("{what}: settle answered {other:?}"))),
        }
    }

    /// The group's id and its lease settings on `topic`, from this node's metadata. The
    /// TTL is the shorter of the group's and the topic's (0 meaning none on either side).
    fn shared_group(&self, group: &str, topic: &str) -> Result<(u64, ShareLimits)> {
        let state = self.meta.read();
        let topic_ttl = state.topics.get(topic).map_or(0, |t| t.config.record_ttl_ms);
        let g = state.groups.get(group).ok_or_else(|| BrokerError::UnknownGroup { group: group.into() })?;
        if g.config.mode != GroupMode::Shared {
            return Err(BrokerError::InvalidRequest(format!(
                "group {group:?} is a partitioned group; consume without --shared"
            )));
        }
        let c = &g.config;
        let limits = ShareLimits {
            lock_ms: c.lock_ms,
            max_attempts: c.max_delivery_attempts,
            ttl_ms: shortest_ttl(c.ttl_ms, topic_ttl),
            backoff_ms: c.redelivery_backoff_ms,
            expired: c.expired,
            max_in_flight: c.max_in_flight,
        };
        Ok((g.id, limits))
    }

    async fn share_write(&self, replica: &Replica, what: &str, cmd: ShareCommand) -> Result<ShareResult> {
        let resp = replica.raft.client_write(cmd.encode()).await.map_err(|e| self.write_error(what.to_string(), e))?;
        bincode::deserialize(&resp.data.0).map_err(|e| BrokerError::Internal(format!("{what}: share answer: {e}")))
    }

    /// The batches holding the leased offsets, each once, in offset order. Leases can be
    /// far apart (a released record behind new ones), so each run of adjacent batches is
    /// read on its own rather than the whole log range between them.
    fn leased_batches(&self, replica: &Replica, leased: &[Leased]) -> Result<Vec<(Offset, Bytes)>> {
        let runs: Vec<Vec<IndexEntry>> = {
            let st = replica.shared.read();
            let mut positions: Vec<usize> = leased.iter().filter_map(|l| st.find(l.offset)).collect();
            positions.dedup();
            let mut runs: Vec<Vec<IndexEntry>> = Vec::new();
            let mut last: Option<usize> = None;
            for i in positions {
                match runs.last_mut() {
                    Some(run) if last.is_some_and(|l| l + 1 == i) => run.push(st.index[i]),
                    _ => runs.push(vec![st.index[i]]),
                }
                last = Some(i);
            }
            runs
        };
        let mut out = Vec::new();
        for run in runs {
            out.extend(self.read_batches(replica.group, &run)?);
        }
        Ok(out)
    }
}
