//! Handing leaderships over before a node stops.
//!
//! Without it, a stopping node's partitions have no leader until an election timeout
//! passes on a follower (0.5 to 1 s by default), and every produce and fetch to them
//! fails or waits meanwhile. Asked to take over, a follower starts its election at once.
//!
//! ```text
//!  SIGTERM ─▶ for every group led here: transfer to the most caught-up other voter
//!          ─▶ wait (bounded) until each names another leader ─▶ stop the groups
//! ```

use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::ServerState;
use tidemark_raft::Raft;
use tidemark_types::NodeId;

use crate::broker::Broker;

/// The voter (other than `me`) whose log matches the leader's furthest, if any.
fn successor(raft: &Raft, me: NodeId) -> Option<NodeId> {
    let m = raft.metrics().borrow_watched().clone();
    if m.state != ServerState::Leader {
        return None;
    }
    let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().filter(|id| *id != me).collect();
    let replication = m.replication.unwrap_or_default();
    voters.into_iter().max_by_key(|id| replication.get(id).cloned().flatten().map(|l| l.index))
}

impl Broker {
    /// Transfers every leadership this node holds to another voter and waits, at most
    /// `within`, until each group has another leader; returns how many moved.
    pub(crate) async fn hand_off_leaderships(&self, within: Duration) -> usize {
        let me = self.node_id();
        let mut moving = Vec::new();
        for (group, raft) in self.registry().groups() {
            let Some(to) = successor(&raft, me) else { continue };
            if raft.trigger().transfer_leader(to).await.is_ok() {
                moving.push((group, raft));
            }
        }
        if moving.is_empty() {
            return 0;
        }
        let deadline = tokio::time::Instant::now() + within;
        let mut moved = 0;
        for (group, raft) in &moving {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let elsewhere = |m: &tidemark_raft::types::RaftMetrics| m.current_leader.is_some_and(|l| l != me);
            match raft.wait(Some(left)).metrics(elsewhere, "leadership handed off").await {
                Ok(_) => moved += 1,
                Err(_) => tracing::debug!(group = format!("{group:#x}"), "leadership not handed off in time"),
            }
        }
        tracing::info!(moved, of = moving.len(), "handed off leaderships before stopping");
        moved
    }
}
