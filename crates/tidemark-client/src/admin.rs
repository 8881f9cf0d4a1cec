//! [`Admin`]: topics and cluster status.
//!
//! ```text
//! call ──▶ metadata leader (cached) ──NotLeader{hint}──▶ hinted leader
//!   │            │ unreachable / retriable
//!   │            ▼
//!   └──── next candidate (live nodes, then bootstrap), backoff after a full round
//! ```
//!
//! Mutations must reach the metadata leader; reads are answered by any node but are
//! freshest there, so both take the same path. Every call is bounded by
//! `ClientConfig::operation_timeout`.

use std::future::Future;

use tidemark_proto::v1::{self, admin_client::AdminClient};
use tidemark_types::{ErrorCode, NodeId, PartitionId, TopicName};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::client::Client;
use crate::error::{ClientError, Result};

/// A topic as the cluster describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub partitions: Vec<PartitionDescription>,
    pub replication_factor: u32,
    /// 0: keep forever.
    pub retention_ms: i64,
    /// 0: no size limit.
    pub retention_bytes: u64,
    /// Shared groups do not deliver records older than this (0: no topic TTL).
    pub record_ttl_ms: i64,
}

/// A new topic's settings beyond its size. The default keeps records forever, without
/// a size limit or a record TTL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicSettings {
    /// 0: keep forever.
    pub retention_ms: i64,
    /// 0: no size limit.
    pub retention_bytes: u64,
    /// Shared groups on the topic drop or dead-letter (as each group says) records not
    /// delivered within this long of their timestamp. A group's own TTL and a record's
    /// `tidemark-ttl-ms` header apply too; the shortest wins.
    pub record_ttl: Option<std::time::Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    pub partition: PartitionId,
    /// `None` while the partition's group has no leader (electing).
    pub leader: Option<NodeId>,
    pub replicas: Vec<NodeId>,
    /// The oldest offset still readable: retention moves it forward.
    pub log_start_offset: u64,
    /// The next offset to be written.
    pub log_end_offset: u64,
    /// Bytes of record batches kept between the log start and end.
    pub retained_bytes: u64,
    /// Replicas caught up with the leader, the leader included, as the leader sees them
    /// (empty when the leader could not be asked). Fewer than `replicas`: under-replicated.
    pub in_sync_replicas: Vec<NodeId>,
    /// The replicas a move in progress goes to (empty: not moving). See
    /// [`Admin::reassign_partition`].
    pub moving_to: Vec<NodeId>,
}

impl PartitionDescription {
    /// Some replica is not caught up (or the partition has no leader to say).
    pub fn under_replicated(&self) -> bool {
        self.in_sync_replicas.len() < self.replicas.len()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    pub nodes: Vec<NodeStatus>,
    pub metadata_leader: Option<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub id: NodeId,
    /// Where clients reach the node (empty until it has published it).
    pub address: String,
    pub alive: bool,
    /// Where the other nodes reach it for replication.
    pub cluster_address: String,
    /// Votes in the metadata group (else a learner: it hosts replicas, does not vote).
    pub voter: bool,
}

/// Creates, lists, describes and deletes topics; reports the cluster's state.
#[derive(Clone, Debug)]
pub struct Admin {
    client: Client,
}

impl Admin {
    pub fn from_client(client: Client) -> Admin {
        Admin { client }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Creates a topic and waits (up to `ClientConfig::topic_ready_timeout`) until every
    /// partition has elected a leader, so the caller can produce right away.
    /// `retention_ms` 0 keeps records forever; `retention_bytes` 0 sets no size limit.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        retention_ms: i64,
        retention_bytes: u64,
    ) -> Result<TopicDescription> {
        let settings = TopicSettings { retention_ms, retention_bytes, record_ttl: None };
        self.create_topic_with(name, partitions, replication_factor, settings).await
    }

    /// [`Admin::create_topic`] with every topic setting, the record TTL included.
    pub async fn create_topic_with(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        settings: TopicSettings,
    ) -> Result<TopicDescription> {
        check_name(name)?;
        if partitions == 0 || replication_factor == 0 {
            return Err(ClientError::InvalidArgument(
                "a topic needs at least 1 partition and a replication factor of at least 1".into(),
            ));
        }
        let req = v1::CreateTopicRequest {
            name: name.to_string(),
            partitions,
            replication_factor,
            config: Some(wire_config(&settings)),
        };
        let res = self
            .call(&format!("create topic {name}"), |mut c| {
                let req = req.clone();
                async move { c.create_topic(req).await }
            })
            .await;
        match res {
            Ok(_) => {}
            // An earlier attempt whose answer was lost may have created it: that is success.
            Err((e, retried)) if retried && e.code() == Some(ErrorCode::TopicExists) => {}
            Err((e, _)) => return Err(e),
        }
        self.wait_for_leaders(name).await
    }

    pub async fn list_topics(&self) -> Result<Vec<String>> {
        let resp = self.call("list topics", |mut c| async move { c.list_topics(v1::ListTopicsRequest {}).await });
        let mut names = resp.await.map_err(|(e, _)| e)?.names;
        names.sort();
        Ok(names)
    }

    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        check_name(name)?;
        let req = v1::DescribeTopicRequest { name: name.to_string() };
        let resp = self
            .call(&format!("describe topic {name}"), |mut c| {
                let req = req.clone();
                async move { c.describe_topic(req).await }
            })
            .await;
        Ok(description(resp.map_err(|(e, _)| e)?))
    }

    /// Replaces a topic's retention and TTL settings. Lower limits remove data within
    /// one retention pass of the partition leaders (5 s by default).
    pub async fn alter_topic(&self, name: &str, settings: TopicSettings) -> Result<TopicDescription> {
        check_name(name)?;
        let req = v1::AlterTopicRequest { name: name.to_string(), config: Some(wire_config(&settings)) };
        let resp = self
            .call(&format!("alter topic {name}"), |mut c| {
                let req = req.clone();
                async move { c.alter_topic(req).await }
            })
            .await;
        Ok(description(resp.map_err(|(e, _)| e)?))
    }

    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let req = v1::DeleteTopicRequest { name: name.to_string() };
        let res = self
            .call(&format!("delete topic {name}"), |mut c| {
                let req = req.clone();
                async move { c.delete_topic(req).await }
            })
            .await;
        match res {
            Ok(_) => Ok(()),
            // An earlier attempt whose answer was lost may have deleted it.
            Err((e, retried)) if retried && e.code() == Some(ErrorCode::UnknownTopic) => Ok(()),
            Err((e, _)) => Err(e),
        }
    }

    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        let resp = self
            .call("cluster status", |mut c| async move { c.cluster_status(v1::ClusterStatusRequest {}).await })
            .await
            .map_err(|(e, _)| e)?;
        let mut nodes: Vec<NodeStatus> = resp
            .nodes
            .into_iter()
            .map(|n| NodeStatus {
                id: n.id,
                address: n.address,
                alive: n.alive,
                cluster_address: n.cluster_address,
                voter: n.voter,
            })
            .collect();
        nodes.sort_by_key(|n| n.id);
        Ok(ClusterStatus { nodes, metadata_leader: (resp.metadata_leader != 0).then_some(resp.metadata_leader) })
    }

    /// Adds node `id`, started with `tidemark serve --join`, whose cluster listener is at
    /// `cluster_address`. Returns once it is a member, with whether it votes on metadata
    /// (the cluster keeps 3, or from five nodes 5, voters; others are learners). Adding
    /// a member again is a no-op.
    pub async fn add_node(&self, id: NodeId, cluster_address: &str) -> Result<bool> {
        let req = v1::AddNodeRequest { id, address: cluster_address.to_string() };
        let resp = self
            .call(&format!("add node {id}"), |mut c| {
                let req = req.clone();
                async move { c.add_node(req).await }
            })
            .await
            .map_err(|(e, _)| e)?;
        Ok(resp.voter)
    }

    /// One step of removing node `id` (decommission): nothing new is placed on it, its
    /// partitions start moving to the other nodes, and once none is left there it leaves
    /// the cluster. Returns `None` once it is gone, else how many partitions are still
    /// moving off it: call again (safe to repeat, also after an interruption).
    pub async fn remove_node(&self, id: NodeId) -> Result<Option<u32>> {
        let req = v1::RemoveNodeRequest { id };
        let resp = self
            .call(&format!("remove node {id}"), |mut c| async move { c.remove_node(req).await })
            .await
            .map_err(|(e, _)| e)?;
        Ok((!resp.removed).then_some(resp.partitions_moving))
    }

    /// Starts moving `topic`/`partition` to `replicas` (as many as it has; the first is
    /// the preferred leader). Returns at once; the partition's `moving_to` shows the move
    /// until it completes. A move in progress is not cancelled or replaced: asking for it
    /// again is a no-op, another move is refused until it completes.
    pub async fn reassign_partition(
        &self,
        topic: &str,
        partition: PartitionId,
        replicas: &[NodeId],
    ) -> Result<TopicDescription> {
        check_name(topic)?;
        let req = v1::ReassignPartitionRequest { topic: topic.to_string(), partition, replicas: replicas.to_vec() };
        let resp = self
            .call(&format!("reassign {topic}/{partition}"), |mut c| {
                let req = req.clone();
                async move { c.reassign_partition(req).await }
            })
            .await;
        Ok(description(resp.map_err(|(e, _)| e)?))
    }

    /// Registers an idempotent producer with the metadata group: (producer id, epoch).
    /// `Some(name)` keeps the name's id and bumps its epoch, fencing older instances.
    /// The SDK's [`Producer`](crate::Producer) calls this itself.
    pub async fn init_producer(&self, name: Option<&str>) -> Result<(i64, i16)> {
        let req = v1::InitProducerRequest { name: name.unwrap_or_default().to_string() };
        let resp = self
            .call("register the producer", |mut c| {
                let req = req.clone();
                async move { c.init_producer(req).await }
            })
            .await
            .map_err(|(e, _)| e)?;
        let epoch = i16::try_from(resp.epoch)
            .map_err(|_| ClientError::Protocol(format!("producer epoch {} out of range", resp.epoch)))?;
        Ok((resp.producer_id, epoch))
    }

    /// Polls DescribeTopic until every partition has a leader.
    async fn wait_for_leaders(&self, name: &str) -> Result<TopicDescription> {
        let timeout = self.client.config().topic_ready_timeout;
        let start = Instant::now();
        let mut backoff = self.client.backoff(1);
        loop {
            let last = match self.describe_topic(name).await {
                Ok(d) if !d.partitions.is_empty() && d.partitions.iter().all(|p| p.leader.is_some()) => return Ok(d),
                Ok(d) => {
                    let ready = d.partitions.iter().filter(|p| p.leader.is_some()).count();
                    let message = format!("only {ready} of {} partitions have elected a leader", d.partitions.len());
                    ClientError::server(ErrorCode::Unavailable, message)
                }
                Err(e) if e.is_unknown_topic() => e,
                Err(e) => return Err(e),
            };
            if start.elapsed() >= timeout {
                let what = format!(
                    "topic {name} was created, but waiting for its partitions to elect leaders \
                     (check `tidemark cluster status`: are enough nodes alive?)"
                );
                return Err(ClientError::timeout(what, start.elapsed(), Some(last)));
            }
            tokio::time::sleep(backoff.next_delay().min(std::time::Duration::from_millis(200))).await;
        }
    }

    /// Runs one admin RPC with leader following and retries. The error side also says
    /// whether any earlier attempt's outcome is unknown (the request may have been applied).
    pub(crate) async fn call<T, F, Fut>(&self, what: &str, mut rpc: F) -> std::result::Result<T, (ClientError, bool)>
    where
        F: FnMut(AdminClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_channel(what, |ch| rpc(AdminClient::new(ch))).await
    }

    /// Like `call`, for any service that lives on the metadata leader (groups too).
    pub(crate) async fn call_channel<T, F, Fut>(
        &self,
        what: &str,
        mut rpc: F,
    ) -> std::result::Result<T, (ClientError, bool)>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let cfg = self.client.config().clone();
        let start = Instant::now();
        let mut backoff = self.client.backoff(2);
        let (mut index, mut hops, mut ambiguous) = (0usize, 0u32, false);
        loop {
            let candidates = self.client.metadata().admin_candidates(&cfg.bootstrap);
            let addr = candidates[index % candidates.len()].clone();
            let res = self.client.rpc(&addr, cfg.request_timeout, &mut rpc).await;
            let err = match res {
                Ok(v) => return Ok(v),
                Err(e) if !e.is_retriable() => return Err((e, ambiguous)),
                Err(e) => e,
            };
            tracing::debug!(%addr, error = %err, "{what}: retrying");
            // A reply that was lost in transit may still have been applied.
            ambiguous |= !matches!(err, ClientError::Server { code: ErrorCode::NotLeader, .. });
            if self.client.unreachable_for_too_long(start, &err) {
                return Err((err, ambiguous));
            }
            if start.elapsed() >= cfg.operation_timeout {
                return Err((ClientError::timeout(what, start.elapsed(), Some(err)), ambiguous));
            }
            if let Some((id, leader_addr)) = err.leader_hint() {
                self.client.metadata().apply_metadata_leader_hint(id, leader_addr);
                index = 0;
                hops += 1;
                if hops <= 3 {
                    continue; // Follow the hint at once; back off only if hints keep bouncing.
                }
            } else {
                self.client.metadata().forget_metadata_leader_at(&addr);
                index += 1;
                if index % candidates.len() != 0 {
                    continue; // Try the other nodes before sleeping.
                }
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
}

fn check_name(name: &str) -> Result<()> {
    TopicName::new(name).map(|_| ()).map_err(|e| ClientError::InvalidArgument(e.to_string()))
}

fn wire_config(settings: &TopicSettings) -> v1::TopicConfig {
    v1::TopicConfig {
        retention_ms: settings.retention_ms,
        retention_bytes: settings.retention_bytes,
        record_ttl_ms: settings.record_ttl.map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64),
    }
}

fn description(d: v1::TopicDescription) -> TopicDescription {
    let config = d.config.unwrap_or_default();
    let mut partitions: Vec<PartitionDescription> = d
        .partitions
        .into_iter()
        .map(|p| PartitionDescription {
            partition: p.partition,
            leader: (p.leader != 0).then_some(p.leader),
            replicas: p.replicas,
            log_start_offset: p.log_start_offset,
            log_end_offset: p.log_end_offset,
            retained_bytes: p.retained_bytes,
            in_sync_replicas: p.in_sync_replicas,
            moving_to: p.moving_to,
        })
        .collect();
    partitions.sort_by_key(|p| p.partition);
    TopicDescription {
        name: d.name,
        partitions,
        replication_factor: d.replication_factor,
        retention_ms: config.retention_ms,
        retention_bytes: config.retention_bytes,
        record_ttl_ms: config.record_ttl_ms,
    }
}
