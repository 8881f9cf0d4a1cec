//! A snapshot of this node's replicas for monitoring (tidemark-server turns it into
//! Prometheus metrics at scrape time): read from the state machines and openraft's
//! metrics, without a Raft round trip, so a scrape never waits on the cluster.

use openraft::async_runtime::watch::WatchReceiver;
use openraft::ServerState;
use tidemark_types::{NodeId, Offset, PartitionId};

use crate::broker::Broker;

/// One partition replica hosted here.
#[derive(Debug, Clone)]
pub struct ReplicaStats {
    pub topic: String,
    pub partition: PartitionId,
    pub leader: bool,
    pub term: u64,
    /// The last log index applied to the state machine (everything up to it is committed).
    pub applied_index: u64,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
    pub retained_bytes: u64,
    /// On the leader: each other replica and how many log entries it is behind.
    pub follower_lag: Vec<(NodeId, u64)>,
    /// On the leader: replicas caught up (the leader included).
    pub in_sync: Option<usize>,
    pub replicas: usize,
    /// On the leader: each consumer group with a committed offset here, and how many
    /// records it is behind the log end.
    pub group_lag: Vec<(String, u64)>,
}

impl Broker {
    /// Every partition replica on this node (see [`ReplicaStats`]).
    pub fn replica_stats(&self) -> Vec<ReplicaStats> {
        let (topics, groups) = {
            let meta = self.meta.read();
            let groups: std::collections::BTreeMap<u64, String> =
                meta.groups.values().map(|g| (g.id, g.name.clone())).collect();
            (meta.topics.values().cloned().collect::<Vec<_>>(), groups)
        };
        let mut out = Vec::new();
        for t in &topics {
            for p in 0..t.partition_count() {
                let group = t.group(p);
                let Some(r) = self.local_replica(group) else { continue };
                let m = r.raft.metrics().borrow_watched().clone();
                let leader = m.state == ServerState::Leader;
                let last = m.last_log_index.unwrap_or(0);
                let follower_lag = match (&m.replication, leader) {
                    (Some(rep), true) => rep
                        .iter()
                        .filter(|(id, _)| **id != self.node_id())
                        .map(|(id, matched)| (*id, last.saturating_sub(matched.as_ref().map_or(0, |l| l.index))))
                        .collect(),
                    _ => Vec::new(),
                };
                let (start, end, bytes, group_lag) = {
                    let st = r.shared.read();
                    let lag = |(id, c): (&u64, &crate::groups::offsets::CommittedOffset)| {
                        Some((groups.get(id)?.clone(), st.next_offset.saturating_sub(c.offset)))
                    };
                    let group_lag = if leader { st.committed.iter().filter_map(lag).collect() } else { Vec::new() };
                    (st.log_start_offset, st.next_offset, st.retained_bytes, group_lag)
                };
                out.push(ReplicaStats {
                    topic: t.name.to_string(),
                    partition: p,
                    leader,
                    term: m.current_term,
                    applied_index: m.last_applied.map_or(0, |l| l.index),
                    log_start_offset: start,
                    log_end_offset: end,
                    retained_bytes: bytes,
                    follower_lag,
                    in_sync: self.in_sync_replicas(group).map(|isr| isr.len()),
                    replicas: t.replicas[p as usize].len(),
                    group_lag,
                });
            }
        }
        out
    }
}
