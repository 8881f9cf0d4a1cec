//! Topic administration, served by the metadata leader.

use tidemark_types::{NodeId, TopicName};

use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::meta::{place, MetaCommand, MetaResponse, TopicConfig, TopicMeta};

/// One node as the metadata leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub id: NodeId,
    /// Where clients reach it (empty until it has published that).
    pub address: String,
    /// Where other nodes reach it (its Raft transport).
    pub cluster_address: String,
    pub alive: bool,
    /// Votes in the metadata group (else a learner).
    pub voter: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub nodes: Vec<NodeStatus>,
    pub metadata_leader: Option<NodeId>,
}

/// The most partitions one topic may have: each is a Raft group on R nodes.
pub const MAX_PARTITIONS: u32 = 1024;

/// Retention below this is refused: a pass runs every few seconds, so a shorter limit
/// would not mean what it says (Kafka's floor is also well above it).
pub const MIN_RETENTION_MS: i64 = 1000;

fn validate_config(config: &TopicConfig) -> Result<()> {
    if config.retention_ms < 0 || (config.retention_ms > 0 && config.retention_ms < MIN_RETENTION_MS) {
        return Err(BrokerError::InvalidRequest(format!(
            "retention_ms must be 0 (keep forever) or at least {MIN_RETENTION_MS}, not {}",
            config.retention_ms
        )));
    }
    if config.record_ttl_ms < 0 {
        return Err(BrokerError::InvalidRequest("record_ttl_ms must be 0 (no TTL) or positive".into()));
    }
    Ok(())
}

impl Broker {
    /// Creates a topic, placing its replicas on the nodes alive now.
    pub async fn create_topic(&self, name: &str, partitions: u32, rf: u32, config: TopicConfig) -> Result<TopicMeta> {
        let name = TopicName::new(name)?;
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(BrokerError::InvalidRequest(format!(
                "a topic needs 1 to {MAX_PARTITIONS} partitions, not {partitions}"
            )));
        }
        validate_config(&config)?;
        self.check_cluster_limits(partitions)?;
        let live = self.live_nodes_for(rf).await?;
        if rf == 0 || rf as usize > live.len() {
            let reason = if rf == 0 { "it must be at least 1" } else { "it cannot exceed the live nodes" };
            return Err(BrokerError::InvalidReplicationFactor { requested: rf, live: live.len() as u32, reason });
        }
        let start = self.meta.read().next_topic_id;
        let replicas = place(&live, partitions, rf, start);
        let cmd = MetaCommand::CreateTopic { name: name.clone(), replicas, config };
        match self.meta_write(cmd).await? {
            MetaResponse::Created(t) => Ok(t),
            MetaResponse::Exists => Err(BrokerError::TopicExists { topic: name.to_string() }),
            other => Err(BrokerError::Internal(format!("unexpected answer to create: {other:?}"))),
        }
    }

    /// Refuses a topic of `partitions` that would take the cluster past its limits (each
    /// partition is a Raft group, with heartbeats and memory of its own on every replica).
    fn check_cluster_limits(&self, partitions: u32) -> Result<()> {
        let limits = self.cfg.cluster_limits;
        let state = self.meta.read();
        let topics = state.topics.len() as u32;
        if topics >= limits.max_topics {
            return Err(BrokerError::LimitExceeded(format!(
                "the cluster has {topics} topics, its limit (max_topics): delete a topic, or raise the limit \
                 on every node"
            )));
        }
        let held: u32 = state.topics.values().map(TopicMeta::partition_count).sum();
        if held + partitions > limits.max_partitions {
            return Err(BrokerError::LimitExceeded(format!(
                "the cluster has {held} of at most {} partitions (max_partitions); {partitions} more would pass \
                 it: delete topics, or raise the limit on every node (each partition is a Raft group)",
                limits.max_partitions
            )));
        }
        Ok(())
    }

    /// The live nodes, waiting briefly for enough of them: right after an election the
    /// new leader has not heard every follower's heartbeat yet.
    async fn live_nodes_for(&self, rf: u32) -> Result<Vec<NodeId>> {
        let patience = std::time::Duration::from_millis(self.cfg.timing.election_max_ms * 3);
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let mut live = self.live_nodes().ok_or_else(|| self.not_meta_leader())?;
            let draining = self.meta.read().draining.clone();
            live.retain(|n| !draining.contains(n));
            if live.len() >= rf as usize || tokio::time::Instant::now() >= deadline {
                return Ok(live);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Replaces a topic's settings. Shrinking retention removes data within one retention
    /// pass (`BrokerConfig::retention_check`).
    pub async fn alter_topic(&self, name: &str, config: TopicConfig) -> Result<TopicMeta> {
        validate_config(&config)?;
        match self.meta_write(MetaCommand::AlterTopic { name: name.into(), config }).await? {
            MetaResponse::Altered(t) => Ok(t),
            _ => Err(BrokerError::UnknownTopic { topic: name.into() }),
        }
    }

    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        match self.meta_write(MetaCommand::DeleteTopic { name: name.into() }).await? {
            MetaResponse::Deleted => Ok(()),
            _ => Err(BrokerError::UnknownTopic { topic: name.into() }),
        }
    }

    pub(crate) async fn meta_write(&self, cmd: MetaCommand) -> Result<MetaResponse> {
        let resp = self
            .meta_raft
            .client_write(cmd.encode())
            .await
            .map_err(|e| self.write_error("the metadata group".into(), e))?;
        bincode::deserialize(&resp.data.0).map_err(|e| BrokerError::Internal(format!("metadata answer: {e}")))
    }

    /// Every member with both its addresses; `alive` says which are alive.
    pub fn node_statuses(&self, alive: impl Fn(NodeId) -> bool) -> Vec<NodeStatus> {
        let client = self.meta.read().client_addrs.clone();
        let (voters, _) = self.meta_membership();
        self.cluster_members()
            .into_iter()
            .map(|(id, cluster_address)| NodeStatus {
                id,
                address: client.get(&id).cloned().unwrap_or_default(),
                cluster_address,
                alive: alive(id),
                voter: voters.contains(&id),
            })
            .collect()
    }

    /// The cluster as the metadata leader sees it: (node, address, alive) and the leader.
    /// A follower that knows the leader redirects there; with no leader at all (no quorum)
    /// it answers what it can see alone.
    pub fn cluster_status(&self) -> Result<ClusterView> {
        let leader = self.metadata_leader();
        let live = match (self.live_nodes(), leader) {
            (Some(live), _) => live,
            (None, Some(_)) => return Err(self.not_meta_leader()),
            (None, None) => vec![self.node_id()],
        };
        let nodes = self.node_statuses(|id| live.contains(&id));
        Ok(ClusterView { nodes, metadata_leader: leader })
    }
}
