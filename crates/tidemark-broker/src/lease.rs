//! Leader leases for reads: a leader serves a read from memory only while a majority of
//! its group has acknowledged it recently.
//!
//! Confirming leadership once per term (ReadIndex) is not enough: a leader cut off from
//! the majority keeps its term and would go on answering fetches, offset lookups and
//! group heartbeats from a log the majority has already moved past. openraft's followers
//! refuse to vote for anyone else until `election_timeout_max` has passed since they last
//! heard from their leader, so while a majority acknowledged this leader within
//! `election_timeout_min` (half that, by default: room for the round trip and clock rate
//! drift), no other leader can exist. Past that, the read confirms leadership again with
//! a round trip to a quorum, and fails if it cannot.

use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::Instant as _;
use tidemark_raft::runtime::TidemarkInstant;
use tidemark_raft::Raft;

use crate::broker::Broker;

/// How far behind the leader's log a replica may be and still count as in sync.
const IN_SYNC_LAG: u64 = 1024;

impl Broker {
    /// The replicas of `group` that are caught up, as its leader here sees them: the
    /// leader, and each voter that acknowledged within three election timeouts and is at
    /// most a little behind. `None` when this node does not lead the group.
    pub fn in_sync_replicas(&self, group: tidemark_types::GroupId) -> Option<Vec<tidemark_types::NodeId>> {
        let me = self.node_id();
        let r = self.local_replica(group)?;
        let metrics = r.raft.metrics();
        let m = metrics.borrow_watched();
        if m.current_leader != Some(me) {
            return None;
        }
        let recent = Duration::from_millis(3 * self.cfg.timing.election_max_ms);
        let now = TidemarkInstant::now().into_inner();
        let last = m.last_log_index.unwrap_or(0);
        let (heartbeat, replication) = (m.heartbeat.as_ref()?, m.replication.as_ref()?);
        let mut isr: Vec<_> = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|id| {
                *id == me
                    || (heartbeat
                        .get(id)
                        .and_then(|t| t.as_ref())
                        .is_some_and(|t| now.saturating_duration_since(t.into_inner().into_inner()) <= recent)
                        && replication.get(id).cloned().flatten().is_some_and(|l| l.index + IN_SYNC_LAG >= last))
            })
            .collect();
        isr.sort_unstable();
        Some(isr)
    }

    /// Whether `raft` (led by this node) was acknowledged by a majority of its voters
    /// within the lease.
    pub(crate) fn lease_holds(&self, raft: &Raft) -> bool {
        let me = self.node_id();
        let lease = Duration::from_millis(self.cfg.timing.election_min_ms);
        let metrics = raft.metrics();
        let m = metrics.borrow_watched();
        let Some(heartbeat) = &m.heartbeat else { return false };
        let now = TidemarkInstant::now().into_inner();
        let voters: Vec<_> = m.membership_config.membership().voter_ids().collect();
        let fresh = voters
            .iter()
            .filter(|id| {
                **id == me
                    || heartbeat
                        .get(id)
                        .and_then(|t| t.as_ref())
                        .is_some_and(|t| now.saturating_duration_since(t.into_inner().into_inner()) <= lease)
            })
            .count();
        fresh * 2 > voters.len()
    }
}
