//! [`Client`]: the shared core behind [`Admin`], [`Producer`] and [`Consumer`] — the
//! config, one channel per node and the metadata cache. Cloning it is cheap and shares
//! all three, so every producer, consumer and admin made from one client reuses the same
//! connections and the same view of the cluster.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tidemark_proto::v1::{self, tidemark_client::TidemarkClient};
use tidemark_types::{NodeId, PartitionId};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::admin::Admin;
use crate::backoff::Backoff;
use crate::config::{ClientConfig, ConsumerConfig, ProducerConfig, StartPosition};
use crate::connections::Connections;
use crate::consumer::Consumer;
use crate::error::{ClientError, Result};
use crate::groups::{GroupConsumer, GroupConsumerConfig, SharedConsumer};
use crate::metadata::MetadataState;
use crate::producer::Producer;

/// A handle on a Tidemark cluster. Creating one does no I/O.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    connections: Connections,
    metadata: Mutex<MetadataState>,
    /// Serialises refreshes so a burst of NotLeader answers costs one Metadata RPC.
    refresh_lock: tokio::sync::Mutex<()>,
    /// Whether any node ever answered: until one does, connection errors probably mean
    /// a wrong address rather than a node that is restarting.
    reached: AtomicBool,
}

impl Client {
    /// Checks the config; connects lazily on first use.
    pub fn new(config: ClientConfig) -> Result<Client> {
        config.validate()?;
        let connections = Connections::new(config.connect_timeout, config.tls.clone());
        let inner = Inner {
            config,
            connections,
            metadata: Mutex::new(MetadataState::default()),
            refresh_lock: tokio::sync::Mutex::new(()),
            reached: AtomicBool::new(false),
        };
        Ok(Client { inner: Arc::new(inner) })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub fn admin(&self) -> Admin {
        Admin::from_client(self.clone())
    }

    /// A producer sharing this client's connections. Must be called inside the runtime
    /// (it spawns the producer's background tasks).
    pub fn producer(&self, config: ProducerConfig) -> Result<Producer> {
        Producer::new(self.clone(), config)
    }

    /// A consumer of `partitions` of `topic` (all of them when `None`) from `start`.
    pub async fn consumer(
        &self,
        topic: &str,
        partitions: Option<Vec<PartitionId>>,
        start: StartPosition,
        config: ConsumerConfig,
    ) -> Result<Consumer> {
        Consumer::new(self.clone(), topic, partitions, start, config).await
    }

    /// Joins a partitioned consumer group as a new member (see [`GroupConsumer`]).
    pub async fn group_consumer(&self, config: GroupConsumerConfig) -> Result<GroupConsumer> {
        GroupConsumer::new(self.clone(), config).await
    }

    /// Joins a shared (queue-style) consumer group (see [`SharedConsumer`]).
    pub async fn shared_consumer(&self, config: GroupConsumerConfig) -> Result<SharedConsumer> {
        SharedConsumer::new(self.clone(), config).await
    }

    /// The number of partitions of `topic`. A topic the cluster does not know is waited
    /// for up to `unknown_topic_timeout` (it may have just been created); a cluster that
    /// cannot be reached, up to `operation_timeout`.
    pub async fn partition_count(&self, topic: &str) -> Result<u32> {
        let cfg = &self.inner.config;
        let start = Instant::now();
        let mut backoff = self.backoff(0);
        loop {
            if let Some(n) = self.metadata().partition_count(topic) {
                return Ok(n);
            }
            match self.refresh_metadata().await {
                Ok(()) => {
                    if let Some(n) = self.metadata().partition_count(topic) {
                        return Ok(n);
                    }
                    if start.elapsed() >= cfg.unknown_topic_timeout {
                        return Err(self.missing_topic(topic).await);
                    }
                    // A topic this client may not see is left out of the answer: asking
                    // for it by name says so at once, instead of after the wait.
                    if let Some(denied) = self.denied_topic(topic).await {
                        return Err(denied);
                    }
                }
                Err(e) => {
                    let elapsed = start.elapsed();
                    if !e.is_retriable() || self.unreachable_for_too_long(start, &e) {
                        return Err(e);
                    }
                    if elapsed >= cfg.operation_timeout {
                        return Err(ClientError::timeout("reading the cluster's metadata", elapsed, Some(e)));
                    }
                }
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Fetches fresh metadata from the best node that answers. Concurrent callers share
    /// one RPC: whoever waited on the lock while another refreshed returns at once.
    pub async fn refresh_metadata(&self) -> Result<()> {
        let seen = self.metadata().generation;
        let _guard = self.inner.refresh_lock.lock().await;
        if self.metadata().generation != seen {
            return Ok(());
        }
        self.refresh_locked().await
    }

    /// Like [`Self::refresh_metadata`], but returns at once if a refresh is under way.
    /// For a caller that owns, unpolled, futures which may be the ones refreshing: the
    /// consumer's in-flight fetches are not polled while it waits, so waiting for the
    /// lock one of them holds would deadlock (found by the chaos simulation, seed 4).
    pub(crate) async fn refresh_metadata_unless_busy(&self) -> Result<()> {
        let Ok(_guard) = self.inner.refresh_lock.try_lock() else { return Ok(()) };
        self.refresh_locked().await
    }

    /// The metadata RPC itself; the caller holds `refresh_lock`.
    async fn refresh_locked(&self) -> Result<()> {
        let candidates = self.metadata().admin_candidates(&self.inner.config.bootstrap);
        let mut last = None;
        for addr in candidates {
            let res = self
                .rpc(&addr, self.inner.config.request_timeout, |ch| async move {
                    TidemarkClient::new(ch).metadata(v1::MetadataRequest { topics: vec![] }).await
                })
                .await;
            match res {
                Ok(resp) => {
                    self.metadata().apply(&resp, Instant::now());
                    return Ok(());
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "metadata request failed; trying the next node");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| ClientError::InvalidArgument("no node address to ask for metadata".into())))
    }

    /// One RPC to the leader of `topic/partition`, retried for up to `operation_timeout`:
    /// a leader hint is followed at once, other retriable errors back off (rotating
    /// through replicas while the leader is unknown), and a topic this node does not know
    /// yet is waited for up to `unknown_topic_timeout`. `what` names the operation in a
    /// timeout error.
    pub(crate) async fn partition_rpc<T, F, Fut>(
        &self,
        topic: &str,
        partition: PartitionId,
        what: &str,
        mut call: F,
    ) -> Result<T>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let cfg = self.config().clone();
        let start = Instant::now();
        let mut backoff = self.backoff(partition as u64);
        let mut attempt = 0u32;
        loop {
            let res = async {
                let (_, addr) = self.resolve_partition_target(topic, partition, attempt).await?;
                self.rpc(&addr, cfg.request_timeout, &mut call).await
            }
            .await;
            let err = match res {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            let refresh = self.note_partition_error(topic, partition, &err);
            let elapsed = start.elapsed();
            let retriable =
                if err.is_unknown_topic() { elapsed < cfg.unknown_topic_timeout } else { err.is_retriable() };
            if !retriable || self.unreachable_for_too_long(start, &err) {
                return Err(err);
            }
            if elapsed >= cfg.operation_timeout {
                return Err(ClientError::timeout(format!("{what} on {topic}/{partition}"), elapsed, Some(err)));
            }
            if refresh {
                let _ = self.refresh_metadata().await;
            }
            if err.leader_hint().is_none() {
                attempt = attempt.wrapping_add(1);
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }

    /// One RPC attempt to `addr`: reuses the node's channel, bounds the attempt by
    /// `timeout` and turns failures into [`ClientError`]s that name the address.
    pub(crate) async fn rpc<T, F, Fut>(&self, addr: &str, timeout: Duration, call: F) -> Result<T>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let channel = self.inner.connections.channel(addr)?;
        let res = match tokio::time::timeout(timeout, call(channel)).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(ClientError::from_status(&status, addr)),
            Err(_) => Err(ClientError::timeout(format!("request to {addr}"), timeout, None)),
        };
        if !matches!(res, Err(ClientError::Transport { .. } | ClientError::Timeout { .. })) {
            self.inner.reached.store(true, Ordering::Relaxed);
        }
        res
    }

    /// Whether a retry loop that started at `start` should stop on `err` now because no
    /// node has ever answered and `bootstrap_timeout` has passed: the address is probably
    /// wrong, and the connection error says so better than a long wait would.
    pub(crate) fn unreachable_for_too_long(&self, start: Instant, err: &ClientError) -> bool {
        matches!(err, ClientError::Transport { .. } | ClientError::Timeout { .. })
            && !self.inner.reached.load(Ordering::Relaxed)
            && start.elapsed() >= self.inner.config.bootstrap_timeout
    }

    /// A data-plane client for `channel`, with message limits large enough for batches.
    pub(crate) fn data_client(&self, channel: Channel) -> TidemarkClient<Channel> {
        let max = self.inner.config.max_message_bytes;
        TidemarkClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max)
    }

    /// Where to send a request for `topic/partition` (see `MetadataState::partition_target`).
    pub(crate) fn partition_target(
        &self,
        topic: &str,
        partition: PartitionId,
        attempt: u32,
    ) -> Option<(Option<NodeId>, String)> {
        self.metadata().partition_target(topic, partition, attempt)
    }

    /// Like `partition_target`, refreshing the metadata first if the partition is not in it.
    pub(crate) async fn resolve_partition_target(
        &self,
        topic: &str,
        partition: PartitionId,
        attempt: u32,
    ) -> Result<(Option<NodeId>, String)> {
        if let Some(t) = self.partition_target(topic, partition, attempt) {
            return Ok(t);
        }
        self.refresh_metadata().await?;
        self.partition_target(topic, partition, attempt).ok_or_else(|| {
            ClientError::server(
                tidemark_types::ErrorCode::UnknownTopic,
                format!("the cluster's metadata has no partition {partition} of topic {topic:?}"),
            )
        })
    }

    /// Learns from a failed partition request: follows a NotLeader hint, or forgets the
    /// leader that failed so the next attempt looks elsewhere. Returns whether the
    /// metadata should be refreshed before the next attempt.
    pub(crate) fn note_partition_error(&self, topic: &str, partition: PartitionId, err: &ClientError) -> bool {
        let mut md = self.metadata();
        if let Some((id, addr)) = err.leader_hint() {
            md.apply_leader_hint(topic, partition, id, addr);
            return false;
        }
        if err.invalidates_metadata() {
            md.forget_leader(topic, partition);
            return true;
        }
        false
    }

    pub(crate) fn metadata(&self) -> MutexGuard<'_, MetadataState> {
        self.inner.metadata.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A backoff with the client's settings; `salt` spreads retries of different callers.
    pub(crate) fn backoff(&self, salt: u64) -> Backoff {
        Backoff::new(self.inner.config.retry_backoff, self.inner.config.retry_backoff_max, salt)
    }
}

impl Client {
    /// The error for a topic the metadata does not list: the node's refusal when the
    /// caller may not see it (ACLs), else "does not exist".
    pub(crate) async fn missing_topic(&self, topic: &str) -> ClientError {
        self.denied_topic(topic).await.unwrap_or_else(|| unknown_topic(topic))
    }

    /// Asks one node for `topic` by name; Some(refusal) when it is PERMISSION_DENIED or
    /// UNAUTHENTICATED.
    async fn denied_topic(&self, topic: &str) -> Option<ClientError> {
        let addr = self.metadata().admin_candidates(&self.inner.config.bootstrap).into_iter().next()?;
        let topics = vec![topic.to_string()];
        let res = self
            .rpc(&addr, self.inner.config.request_timeout, |ch| {
                let topics = topics.clone();
                async move { TidemarkClient::new(ch).metadata(v1::MetadataRequest { topics }).await }
            })
            .await;
        match res {
            Err(e @ ClientError::Grpc { code: tonic::Code::PermissionDenied | tonic::Code::Unauthenticated, .. }) => {
                Some(e)
            }
            _ => None,
        }
    }
}

pub(crate) fn unknown_topic(topic: &str) -> ClientError {
    ClientError::server(
        tidemark_types::ErrorCode::UnknownTopic,
        format!("topic {topic:?} does not exist (create it with `tidemark topic create {topic}`)"),
    )
}
