//! Cluster membership: adding nodes, and moving partitions between them.
//!
//! A node started with `serve --join` learns the cluster id from a member and waits,
//! serving nothing. `add_node` (on the metadata leader) checks that it is there and of
//! this cluster, adds it to the metadata group as a learner, waits until it has caught
//! up, and makes it a voter while the cluster has fewer voters than it should (3 from
//! three nodes, 5 from five; further nodes stay learners: they host replicas but do not
//! vote on metadata, which keeps metadata commits fast).
//!
//! `reassign` records where a partition should move; the partition's leader carries the
//! move out (see `moves.rs`).

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::BasicNode;
use tidemark_types::{NodeId, PartitionId, METADATA_GROUP};

use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::meta::{MetaCommand, MetaResponse, TopicMeta};

/// How long the node being added may take to answer who it is.
const HELLO_TTL: Duration = Duration::from_secs(2);

/// How many voters the metadata group should have with `nodes` members.
fn voters_for(nodes: usize) -> usize {
    match nodes {
        n if n >= 5 => 5,
        n if n >= 3 => 3,
        n => n,
    }
}

impl Broker {
    /// Voters and every member of the metadata group.
    pub(crate) fn meta_membership(&self) -> (BTreeSet<NodeId>, BTreeSet<NodeId>) {
        let m = self.meta_raft.metrics().borrow_watched().membership_config.clone();
        (m.membership().voter_ids().collect(), m.membership().nodes().map(|(id, _)| *id).collect())
    }

    pub fn is_voter(&self, node: NodeId) -> bool {
        self.meta_membership().0.contains(&node)
    }

    /// Adds node `id`, listening for the cluster at `address` (see the module doc);
    /// answers whether it votes. Adding a member again at the same address is a no-op.
    pub async fn add_node(&self, id: NodeId, address: &str) -> Result<bool> {
        if self.metadata_leader() != Some(self.node_id()) {
            return Err(self.not_meta_leader());
        }
        if id == 0 || address.is_empty() {
            return Err(BrokerError::InvalidRequest("give the node's id (1 or more) and its cluster address".into()));
        }
        let members = self.cluster_members();
        if let Some(known) = members.get(&id) {
            if known == address {
                return Ok(self.is_voter(id));
            }
            return Err(BrokerError::InvalidRequest(format!("node {id} is already a member, at {known}")));
        }
        if let Some((other, _)) = members.iter().find(|(_, a)| a.as_str() == address) {
            return Err(BrokerError::InvalidRequest(format!("{address} is node {other}'s cluster address")));
        }
        self.check_joining(id, address).await?;
        tracing::info!(node = id, %address, "adding a node: it catches up as a learner first");
        let node = BasicNode { addr: address.to_string() };
        self.meta_raft
            .add_learner(id, node, true)
            .await
            .map_err(|e| self.write_error("the metadata group".into(), e))?;
        self.promote_voters().await?;
        Ok(self.is_voter(id))
    }

    /// The node at `address` must answer as `id`, of this cluster.
    async fn check_joining(&self, id: NodeId, address: &str) -> Result<()> {
        let start = format!(
            "start it with `tidemark serve --id {id} --cluster-listen {address} --join <a member's cluster address>`"
        );
        let hello =
            self.peer_pool().hello(id, address, HELLO_TTL).await.map_err(|e| {
                BrokerError::Unavailable(format!("node {id} does not answer at {address} ({e}); {start}"))
            })?;
        if hello.node != id {
            return Err(BrokerError::InvalidRequest(format!("{address} is node {}, not node {id}", hello.node)));
        }
        if hello.cluster_id != self.cluster_id() {
            let what = if hello.cluster_id.is_empty() { "no cluster yet".into() } else { hello.cluster_id };
            return Err(BrokerError::InvalidRequest(format!(
                "node {id} at {address} belongs to {what}, not to this cluster ({}); {start}",
                self.cluster_id()
            )));
        }
        Ok(())
    }

    /// Makes learners voters (lowest ids first) while there are fewer voters than the
    /// member count calls for.
    async fn promote_voters(&self) -> Result<()> {
        let (voters, all) = self.meta_membership();
        let want = voters_for(all.len());
        if voters.len() >= want {
            return Ok(());
        }
        let learners = all.difference(&voters).copied();
        let new: BTreeSet<NodeId> = voters.iter().copied().chain(learners.take(want - voters.len())).collect();
        tracing::info!(voters = ?new, "changing the metadata group's voters");
        self.meta_raft
            .change_membership(new, true)
            .await
            .map_err(|e| self.write_error("the metadata group".into(), e))?;
        Ok(())
    }

    /// One step of removing node `id` (see the module doc); answers how many partitions
    /// are still moving off it, or `None` once it has left (or was never a member).
    pub async fn remove_node(&self, id: NodeId) -> Result<Option<usize>> {
        if self.metadata_leader() != Some(self.node_id()) {
            return Err(self.not_meta_leader());
        }
        let (voters, all) = self.meta_membership();
        if !all.contains(&id) {
            // Gone from the membership; an earlier call may have stopped before this.
            let known = {
                let meta = self.meta.read();
                meta.draining.contains(&id) || meta.client_addrs.contains_key(&id)
            };
            if known {
                self.meta_write(MetaCommand::Forget { node: id }).await?;
            }
            return Ok(None);
        }
        let remaining: Vec<NodeId> = all.iter().copied().filter(|n| *n != id).collect();
        let topics = self.topics();
        if let Some(t) = topics.iter().find(|t| t.replication_factor as usize > remaining.len()) {
            return Err(BrokerError::InvalidRequest(format!(
                "removing node {id} would leave {} node(s), fewer than topic {}'s replication factor {}; \
                 add a node first (tidemark cluster add-node)",
                remaining.len(),
                t.name,
                t.replication_factor
            )));
        }
        if !self.meta.read().draining.contains(&id) {
            self.meta_write(MetaCommand::Drain { node: id }).await?;
            tracing::info!(node = id, "removing a node: its partitions move to the others");
        }
        let moving = self.move_partitions_off(id, &topics, &remaining).await?;
        if moving > 0 {
            return Ok(Some(moving));
        }
        if voters.contains(&id) {
            let stand_in = all.iter().find(|n| !voters.contains(n)).copied();
            let new: BTreeSet<NodeId> = voters.iter().copied().filter(|n| *n != id).chain(stand_in).collect();
            self.meta_raft
                .change_membership(new, false)
                .await
                .map_err(|e| self.write_error("the metadata group".into(), e))?;
        } else {
            let gone = openraft::ChangeMembers::RemoveNodes(BTreeSet::from([id]));
            self.meta_raft
                .change_membership(gone, false)
                .await
                .map_err(|e| self.write_error("the metadata group".into(), e))?;
        }
        self.meta_write(MetaCommand::Forget { node: id }).await?;
        tracing::info!(node = id, "node removed from the cluster");
        Ok(None)
    }

    /// Starts moving every partition that holds `id` to the least loaded of `remaining`
    /// (moves already under way are left alone); returns how many hold it still.
    async fn move_partitions_off(&self, id: NodeId, topics: &[TopicMeta], remaining: &[NodeId]) -> Result<usize> {
        let mut load: std::collections::BTreeMap<NodeId, usize> = remaining.iter().map(|n| (*n, 0)).collect();
        for t in topics {
            for p in 0..t.partition_count() {
                for n in t.hosts(p) {
                    *load.entry(n).or_default() += 1;
                }
            }
        }
        let mut holding = 0;
        for t in topics {
            for p in 0..t.partition_count() {
                if !t.hosts(p).contains(&id) {
                    continue;
                }
                holding += 1;
                let base = t.moves.get(&p).unwrap_or(&t.replicas[p as usize]);
                if !base.contains(&id) {
                    continue;
                }
                let Some(&stand_in) = remaining
                    .iter()
                    .filter(|n| !base.contains(n))
                    .min_by_key(|n| (load.get(n).copied().unwrap_or(0), **n))
                else {
                    continue;
                };
                *load.entry(stand_in).or_default() += 1;
                let replicas: Vec<NodeId> = base.iter().map(|n| if *n == id { stand_in } else { *n }).collect();
                let cmd = MetaCommand::Reassign { topic: t.name.to_string(), partition: p, replicas };
                self.meta_write(cmd).await?;
            }
        }
        Ok(holding)
    }

    /// Records that `topic`'s `partition` moves to `replicas` (see `moves.rs`). Asking
    /// again for the move in progress is a no-op; another is refused until it completes.
    pub async fn reassign(&self, topic: &str, partition: PartitionId, replicas: Vec<NodeId>) -> Result<TopicMeta> {
        let t = self.topic(topic)?;
        let Some(current) = t.replicas.get(partition as usize) else {
            let count = t.partition_count();
            return Err(BrokerError::UnknownPartition { topic: topic.into(), partition, count });
        };
        let distinct: BTreeSet<NodeId> = replicas.iter().copied().collect();
        if distinct.len() != replicas.len() {
            return Err(BrokerError::InvalidRequest(format!("replicas {replicas:?} name a node twice")));
        }
        if replicas.len() != current.len() {
            return Err(BrokerError::InvalidRequest(format!(
                "{topic}/{partition} has {} replicas (its replication factor); give {} nodes, not {} \
                 (changing the replication factor is not supported)",
                current.len(),
                current.len(),
                replicas.len()
            )));
        }
        let members = self.cluster_members();
        if let Some(stranger) = replicas.iter().find(|n| !members.contains_key(n)) {
            return Err(BrokerError::InvalidRequest(format!(
                "node {stranger} is not a member of the cluster (add it first: tidemark cluster add-node)"
            )));
        }
        let already = |moving: &Vec<NodeId>| {
            BrokerError::InvalidRequest(format!(
                "{topic}/{partition} is already moving to {moving:?}; wait until it completes (a move is not \
                 cancelled once started: its swap may be under way), then move it again"
            ))
        };
        if let Some(moving) = t.moves.get(&partition).filter(|m| **m != replicas) {
            return Err(already(moving));
        }
        match self.meta_write(MetaCommand::Reassign { topic: topic.into(), partition, replicas }).await? {
            MetaResponse::Altered(t) => Ok(t),
            // Another move was recorded meanwhile.
            MetaResponse::Exists => {
                let moving = self.topic(topic)?.moves.get(&partition).cloned().unwrap_or_default();
                Err(already(&moving))
            }
            _ => Err(BrokerError::UnknownTopic { topic: topic.into() }),
        }
    }

    /// Proposes `cmd` to the metadata group: here when this node leads it, else through
    /// the metadata leader's cluster listener.
    pub(crate) async fn propose_meta(&self, cmd: MetaCommand) -> std::result::Result<(), String> {
        let leader = self.metadata_leader().ok_or("no metadata leader")?;
        if leader == self.node_id() {
            return self.meta_write(cmd).await.map(drop).map_err(|e| e.to_string());
        }
        let addr = self.cluster_addr(leader).ok_or_else(|| format!("no address for node {leader}"))?;
        let payload = cmd.encode().0.to_vec();
        let rpc = tidemark_raft::RaftRpc::MetaWrite;
        self.peer_pool().call(leader, &addr, METADATA_GROUP, rpc, payload, HELLO_TTL).await.map(drop)
    }

    /// A metadata command another node proposed through this one (see `propose_meta`).
    /// Only the end of a move is taken: it is ignored unless it matches the move in
    /// progress, and its sender saw the swap committed in the partition's group.
    pub async fn forwarded_meta_write(&self, payload: &[u8]) -> Result<Vec<u8>> {
        let cmd: MetaCommand = tidemark_raft::codec::decode(payload)
            .map_err(|e| BrokerError::InvalidRequest(format!("undecodable metadata command: {e}")))?;
        if !matches!(cmd, MetaCommand::CompleteMove { .. }) {
            return Err(BrokerError::InvalidRequest("only the end of a partition move is taken this way".into()));
        }
        let response = self.meta_write(cmd).await?;
        bincode::serialize(&response).map_err(|e| BrokerError::Internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn three_then_five_voters() {
        let counts: Vec<usize> = (1..=7).map(super::voters_for).collect();
        assert_eq!(counts, [1, 2, 3, 3, 5, 5, 5]);
    }
}
