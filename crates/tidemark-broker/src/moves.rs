//! Carrying out partition moves (`Broker::reassign` records them in the metadata).
//!
//! The partition's leader does it, one step per pass, so that any leader can pick it up
//! where another left off (a leader may be among the replicas that leave):
//!
//! ```text
//!  1. each new replica joins the group as a learner (it starts empty; the leader sends a
//!     snapshot and the retained log: the catch-up of the log lifecycle)
//!  2. once every one is within a few entries of the end: one membership change to the
//!     new voters (openraft goes through a joint configuration, so a majority of the old
//!     and of the new set agree on every entry meanwhile)
//!  3. once that change is applied: the metadata records the new replicas, and the nodes
//!     that left stop their replica and delete its data
//! ```
//!
//! Until step 3 every old and new replica hosts the group (`TopicMeta::hosts`), so
//! nothing is deleted before the new replicas hold the data.

use std::collections::BTreeSet;
use std::sync::Weak;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::{BasicNode, ServerState};
use tidemark_types::{NodeId, PartitionId};

use crate::broker::{Broker, Replica};
use crate::meta::{MetaCommand, TopicMeta};

/// How often leaders look for moves to advance.
const EVERY: Duration = Duration::from_millis(500);
/// How many entries behind the end a new replica may be when the swap starts; the
/// membership change then waits for the rest.
const MAX_LAG: u64 = 64;

/// Runs until the broker is dropped.
pub async fn run(broker: Weak<Broker>) {
    loop {
        tokio::time::sleep(EVERY).await;
        let Some(b) = broker.upgrade() else { return };
        if b.registry().is_closed() {
            return;
        }
        b.advance_moves().await;
    }
}

impl Broker {
    async fn advance_moves(&self) {
        for topic in self.topics().into_iter().filter(|t| !t.moves.is_empty()) {
            for (&partition, target) in &topic.moves {
                let Some(replica) = self.local_replica(topic.group(partition)) else { continue };
                let leads = {
                    let m = replica.raft.metrics().borrow_watched().clone();
                    m.state == ServerState::Leader && m.current_leader == Some(self.node_id())
                };
                if leads {
                    if let Err(error) = self.advance_move(&topic, partition, target, &replica).await {
                        tracing::debug!(topic = %topic.name, partition, %error, "partition move waits");
                    }
                }
            }
        }
    }

    /// One step of moving `topic`/`partition` to `target` (see the module doc).
    async fn advance_move(
        &self,
        topic: &TopicMeta,
        partition: PartitionId,
        target: &[NodeId],
        replica: &Replica,
    ) -> Result<(), String> {
        let m = replica.raft.metrics().borrow_watched().clone();
        let stored = m.membership_config.clone();
        let membership = stored.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let wanted: BTreeSet<NodeId> = target.iter().copied().collect();
        let settled = membership.get_joint_config().len() == 1 && m.last_applied >= *stored.log_id();
        if voters == wanted {
            if !settled {
                return Err("the new membership is not applied yet".into());
            }
            let cmd = MetaCommand::CompleteMove { topic: topic.name.to_string(), partition, replicas: target.to_vec() };
            self.propose_meta(cmd).await?;
            tracing::info!(topic = %topic.name, partition, replicas = ?target, "partition move complete");
            return Ok(());
        }
        for &node in target.iter().filter(|n| membership.get_node(n).is_none()) {
            let addr = self.cluster_addr(node).ok_or_else(|| format!("no cluster address for node {node}"))?;
            replica.raft.add_learner(node, BasicNode { addr }, false).await.map_err(|e| e.to_string())?;
            tracing::info!(topic = %topic.name, partition, node, "partition move: new replica catching up");
        }
        let last = m.last_log_index.unwrap_or(0);
        let behind = |n: &NodeId| {
            let matched = m.replication.as_ref().and_then(|r| r.get(n).cloned().flatten());
            matched.map_or(u64::MAX, |l| last.saturating_sub(l.index))
        };
        if let Some(lagging) = target.iter().find(|n| **n != self.node_id() && behind(n) > MAX_LAG) {
            return Err(format!("node {lagging} is still catching up"));
        }
        tracing::info!(topic = %topic.name, partition, voters = ?wanted, "partition move: swapping the replicas");
        replica.raft.change_membership(wanted, false).await.map_err(|e| e.to_string())?;
        Ok(())
    }
}
