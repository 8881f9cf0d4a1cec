//! The client's picture of the cluster: nodes and their addresses, each topic's
//! partitions with leader and replicas, and the metadata leader.
//!
//! It is a cache, refreshed from a `Metadata` RPC when an answer shows it is stale
//! (NotLeader without a hint, unknown topic, a node unreachable) and patched in place by
//! NotLeader hints, which name the new leader without a round trip. Everything here is
//! synchronous and lock-protected; the RPC side lives in [`crate::client`].

use std::collections::{BTreeMap, HashMap};

use tidemark_proto::v1;
use tidemark_types::{NodeId, PartitionId};
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeMeta {
    pub address: String,
    pub alive: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PartitionMeta {
    pub leader: Option<NodeId>,
    pub replicas: Vec<NodeId>,
}

#[derive(Debug, Default)]
pub(crate) struct MetadataState {
    pub nodes: BTreeMap<NodeId, NodeMeta>,
    /// Partitions indexed by partition number.
    pub topics: HashMap<String, Vec<PartitionMeta>>,
    pub metadata_leader: Option<NodeId>,
    /// Bumped by every applied refresh, so concurrent refreshers can tell that someone
    /// else already did the work.
    pub generation: u64,
    pub refreshed_at: Option<Instant>,
}

impl MetadataState {
    /// Replaces the cache with a fresh answer.
    pub fn apply(&mut self, resp: &v1::MetadataResponse, now: Instant) {
        self.nodes =
            resp.nodes.iter().map(|n| (n.id, NodeMeta { address: n.address.clone(), alive: n.alive })).collect();
        self.topics = resp.topics.iter().map(|t| (t.name.clone(), partitions_of(t))).collect();
        self.metadata_leader = (resp.metadata_leader != 0).then_some(resp.metadata_leader);
        self.generation += 1;
        self.refreshed_at = Some(now);
    }

    pub fn partition_count(&self, topic: &str) -> Option<u32> {
        self.topics.get(topic).map(|p| p.len() as u32)
    }

    pub fn address_of(&self, node: NodeId) -> Option<&str> {
        self.nodes.get(&node).map(|n| n.address.as_str())
    }

    /// Where to send a request for a partition: its leader when known and reachable by
    /// address, else its replicas in turn (`attempt` rotates through them, so a retry
    /// after "I am not the leader, and I don't know who is" asks someone else).
    pub fn partition_target(
        &self,
        topic: &str,
        partition: PartitionId,
        attempt: u32,
    ) -> Option<(Option<NodeId>, String)> {
        let p = self.topics.get(topic)?.get(partition as usize)?;
        if let Some(addr) = p.leader.and_then(|l| self.address_of(l)) {
            return Some((p.leader, addr.to_string()));
        }
        let known: Vec<NodeId> = p.replicas.iter().copied().filter(|r| self.nodes.contains_key(r)).collect();
        if known.is_empty() {
            return None;
        }
        let node = known[attempt as usize % known.len()];
        Some((Some(node), self.address_of(node)?.to_string()))
    }

    /// Records a NotLeader hint: `leader` now leads `topic/partition` and lives at `addr`.
    pub fn apply_leader_hint(&mut self, topic: &str, partition: PartitionId, leader: NodeId, addr: &str) {
        self.learn_node(leader, addr);
        if let Some(p) = self.topics.get_mut(topic).and_then(|ps| ps.get_mut(partition as usize)) {
            p.leader = Some(leader);
        }
    }

    /// Records a NotLeader hint from the metadata group.
    pub fn apply_metadata_leader_hint(&mut self, leader: NodeId, addr: &str) {
        self.learn_node(leader, addr);
        self.metadata_leader = Some(leader);
    }

    /// Forgets a partition's leader after it failed us, so the next attempt asks the replicas.
    pub fn forget_leader(&mut self, topic: &str, partition: PartitionId) {
        if let Some(p) = self.topics.get_mut(topic).and_then(|ps| ps.get_mut(partition as usize)) {
            p.leader = None;
        }
    }

    /// Forgets the metadata leader if it lives at `addr`, which just failed us, so the
    /// next call does not start with a dead node.
    pub fn forget_metadata_leader_at(&mut self, addr: &str) {
        if self.metadata_leader.and_then(|l| self.address_of(l)) == Some(addr) {
            self.metadata_leader = None;
        }
    }

    fn learn_node(&mut self, id: NodeId, addr: &str) {
        let node = self.nodes.entry(id).or_insert_with(|| NodeMeta { address: addr.to_string(), alive: true });
        node.address = addr.to_string();
    }

    /// The nodes to ask metadata / admin questions, best first: the metadata leader, the
    /// live nodes, the rest, then the bootstrap addresses (deduplicated).
    pub fn admin_candidates(&self, bootstrap: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut push = |a: &str| {
            if !out.iter().any(|o| o == a) {
                out.push(a.to_string());
            }
        };
        if let Some(addr) = self.metadata_leader.and_then(|l| self.address_of(l)) {
            push(addr);
        }
        for alive in [true, false] {
            for n in self.nodes.values().filter(|n| n.alive == alive) {
                push(&n.address);
            }
        }
        for b in bootstrap {
            push(b);
        }
        out
    }
}

fn partitions_of(t: &v1::TopicDescription) -> Vec<PartitionMeta> {
    let mut parts: Vec<&v1::PartitionInfo> = t.partitions.iter().collect();
    parts.sort_by_key(|p| p.partition);
    parts
        .into_iter()
        .map(|p| PartitionMeta { leader: (p.leader != 0).then_some(p.leader), replicas: p.replicas.clone() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response() -> v1::MetadataResponse {
        let node =
            |id: u64, alive| v1::NodeInfo { id, address: format!("10.0.0.{id}:9092"), alive, ..Default::default() };
        let part =
            |partition, leader| v1::PartitionInfo { partition, leader, replicas: vec![1, 2, 3], ..Default::default() };
        v1::MetadataResponse {
            nodes: vec![node(1, true), node(2, false), node(3, true)],
            topics: vec![v1::TopicDescription {
                name: "orders".into(),
                partitions: vec![part(1, 0), part(0, 2)],
                replication_factor: 3,
                config: None,
            }],
            metadata_leader: 3,
        }
    }

    #[test]
    fn routes_to_leader_else_rotates_replicas() {
        let mut s = MetadataState::default();
        s.apply(&response(), Instant::now());
        assert_eq!(s.partition_count("orders"), Some(2));
        assert_eq!(s.partition_target("orders", 0, 0), Some((Some(2), "10.0.0.2:9092".into())));
        let a = s.partition_target("orders", 1, 0).unwrap();
        let b = s.partition_target("orders", 1, 1).unwrap();
        assert_ne!(a, b, "leaderless partition: retries rotate through replicas");
        assert_eq!(s.partition_target("orders", 2, 0), None);
        assert_eq!(s.partition_target("nope", 0, 0), None);
    }

    #[test]
    fn leader_hints_patch_the_cache() {
        let mut s = MetadataState::default();
        s.apply(&response(), Instant::now());
        s.apply_leader_hint("orders", 1, 4, "10.0.0.4:9092");
        assert_eq!(s.partition_target("orders", 1, 0), Some((Some(4), "10.0.0.4:9092".into())));
        s.forget_leader("orders", 1);
        assert_ne!(s.partition_target("orders", 1, 0).unwrap().0, Some(4));
        s.apply_metadata_leader_hint(1, "10.0.0.1:9092");
        assert_eq!(s.admin_candidates(&[])[0], "10.0.0.1:9092");
        s.forget_metadata_leader_at("10.0.0.3:9092");
        assert_eq!(s.metadata_leader, Some(1), "only the leader's own address clears it");
        s.forget_metadata_leader_at("10.0.0.1:9092");
        assert_eq!(s.metadata_leader, None);
    }

    #[test]
    fn admin_candidates_prefer_leader_then_live_nodes_then_bootstrap() {
        let mut s = MetadataState::default();
        assert_eq!(s.admin_candidates(&["b:1".into()]), vec!["b:1".to_string()]);
        s.apply(&response(), Instant::now());
        let c = s.admin_candidates(&["10.0.0.1:9092".into(), "b:1".into()]);
        assert_eq!(c, vec!["10.0.0.3:9092", "10.0.0.1:9092", "10.0.0.2:9092", "b:1"]);
        assert_eq!(s.generation, 1);
    }
}
