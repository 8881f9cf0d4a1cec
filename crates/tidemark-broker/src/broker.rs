//! The broker: one per node. It owns the node's Raft groups (the metadata group and the
//! partition replicas placed here) and serves produce, fetch and topic administration
//! on top of them. No gRPC here: tidemark-server maps these calls to the wire.
//!
//! ```text
//!  produce ─> local replica? ─> validate batch ─> raft.client_write ─> apply assigns offsets
//!  fetch   ─> leader replica ─> offset index ─> committed entries straight from the log
//!  admin   ─> metadata leader ─> raft.client_write(MetaCommand) ─> reconcile starts groups
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::{BasicNode, Instant as _};
use tidemark_raft::{CheckpointPolicy, GroupContext, GroupRegistry, PeerPool, Raft, RaftTiming, Repairs};
use tidemark_storage::SharedEngine;
use tidemark_types::{BatchLimits, GroupId, NodeId, Offset, PartitionId, METADATA_GROUP};

use crate::error::{BrokerError, Result};
use crate::meta::{MetaLogic, MetaShared, TopicMeta};
use crate::partition::PartitionShared;
use crate::sequencer::Sequencer;

/// What a node needs to know to run its broker.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: NodeId,
    /// The voters of the metadata group and their cluster addresses (where their Raft
    /// transport listens), used to form the cluster.
    pub peers: BTreeMap<NodeId, String>,
    /// The cluster this node belongs to: stamped on every internal request it sends, and
    /// required on every one it accepts.
    pub cluster_id: String,
    /// Where this node serves clients; published through the metadata group.
    pub client_address: String,
    /// Started to join an existing cluster (`serve --join`): never forms one; waits to be
    /// added (`Broker::add_node` on the metadata leader).
    pub join: bool,
    pub timing: RaftTiming,
    pub limits: BatchLimits,
    /// How long a partition remembers an idle idempotent producer. After that its next
    /// batch gets UnknownProducer and the SDK registers again.
    pub producer_expiry: Duration,
    /// How often leaders enforce retention and every group snapshots and purges its log.
    /// Retention takes effect within about one interval of its limit being passed.
    pub retention_check: Duration,
    /// How often state machines checkpoint: a restart re-applies at most this much.
    pub checkpoints: CheckpointPolicy,
    /// Hand leaderships back to preferred replicas (see `balance.rs`); Kafka's
    /// auto.leader.rebalance.enable.
    pub leader_balance: bool,
    /// Replace a node silent for this long (see `dead.rs`); `None`: never.
    pub replace_dead_after: Option<Duration>,
    /// What the whole cluster may hold (checked by the metadata leader).
    pub cluster_limits: ClusterLimits,
    /// TLS for this node's connections to the others (its certificate as the client
    /// identity); None: plaintext. Rotated through [`Broker::peer_pool`].
    pub peer_tls: Option<tidemark_raft::ClientTls>,
}

/// Limits no client can take the cluster past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterLimits {
    pub max_topics: u32,
    /// Partitions over all topics. Each is a Raft group on R nodes: on the 2-core machine
    /// of docs/performance.md, 1,000 idle ones used both cores.
    pub max_partitions: u32,
}

impl Default for ClusterLimits {
    fn default() -> Self {
        ClusterLimits { max_topics: 1000, max_partitions: 500 }
    }
}

/// How often retention is enforced by default: well inside the 30 s a user may expect.
pub const DEFAULT_RETENTION_CHECK: Duration = Duration::from_secs(5);

/// Kafka's default for idle producer state (producer.id.expiration.ms): one day.
pub const DEFAULT_PRODUCER_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// One partition replica hosted on this node.
pub struct Replica {
    pub group: GroupId,
    pub raft: Raft,
    pub shared: Arc<PartitionShared>,
    /// The term in which this node last confirmed it may serve reads (0: never).
    pub read_term: AtomicU64,
    /// Held while a produce is handed to Raft, so batches enter the log in order; it
    /// also keeps an idempotent producer's pipelined batches in sequence order.
    pub produce_order: Sequencer,
}

pub struct Broker {
    pub(crate) cfg: BrokerConfig,
    pub(crate) ctx: GroupContext,
    pub(crate) registry: Arc<GroupRegistry>,
    pub(crate) meta_raft: Raft,
    pub(crate) meta: Arc<MetaShared>,
    pub(crate) replicas: RwLock<HashMap<GroupId, Arc<Replica>>>,
    /// Consumer-group member liveness (meaningful on the metadata leader only).
    pub(crate) sessions: crate::groups::sessions::Sessions,
    /// Why the node must stop, once something it cannot recover from in place happened.
    failure: std::sync::Mutex<Option<String>>,
    failed: crate::signal::Signal,
    /// Set once the metadata applied here caught up with the cluster's after the start.
    ready: std::sync::atomic::AtomicBool,
}

impl Broker {
    /// Opens the node's groups on `engine` (re-applying their logs after a restart),
    /// forms the cluster on a fresh node, and starts placing partition replicas.
    pub async fn start(cfg: BrokerConfig, engine: SharedEngine) -> Result<Arc<Broker>> {
        if !cfg.peers.contains_key(&cfg.node_id) {
            return Err(BrokerError::InvalidRequest(format!(
                "node {} is not among the peers {:?}; list every voter, this node included",
                cfg.node_id,
                cfg.peers.keys().collect::<Vec<_>>()
            )));
        }
        // Entries are at most a batch plus the command header (and small metadata commands).
        let max_entry = cfg.limits.max_batch_bytes + 1024;
        let config = tidemark_raft::raft_config(cfg.timing, max_entry).map_err(BrokerError::InvalidRequest)?;
        let flusher = tidemark_raft::Flusher::start(engine.clone());
        let checkpoints = cfg.checkpoints;
        let node = cfg.node_id;
        let damaged = engine.clone();
        tidemark_raft::blocking::run_blocking(move || tidemark_raft::repair::begin_after_damage(&damaged, node))
            .await
            .map_err(|e| BrokerError::Internal(format!("starting the repair after disk damage: {e}")))?;
        let repairs = Arc::new(Repairs::default());
        let pool = PeerPool::with_tls(node, cfg.cluster_id.clone(), cfg.peer_tls.clone());
        let ctx = GroupContext { node_id: node, engine, flusher, pool, config, checkpoints, repairs: repairs.clone() };
        let meta = MetaShared::new();
        let meta_raft =
            ctx.start_group(METADATA_GROUP, Box::new(MetaLogic(meta.clone()))).await.map_err(BrokerError::Internal)?;
        let registry = Arc::new(GroupRegistry::new(repairs));
        registry.insert(METADATA_GROUP, meta_raft.clone());
        let replicas = RwLock::new(HashMap::new());
        let sessions = Default::default();
        let (failure, failed, ready) = Default::default();
        let broker =
            Arc::new(Broker { cfg, ctx, registry, meta_raft, meta, replicas, sessions, failure, failed, ready });
        broker.form_cluster().await?;
        tokio::spawn(crate::reconcile::run(Arc::downgrade(&broker)));
        tokio::spawn(crate::groups::sessions::run(Arc::downgrade(&broker)));
        tokio::spawn(crate::retention::run(Arc::downgrade(&broker), broker.cfg.retention_check));
        tokio::spawn(crate::health::watch(Arc::downgrade(&broker)));
        tokio::spawn(crate::directory::run(Arc::downgrade(&broker)));
        tokio::spawn(crate::moves::run(Arc::downgrade(&broker)));
        if let Some(after) = broker.cfg.replace_dead_after {
            tokio::spawn(crate::dead::run(Arc::downgrade(&broker), after));
        }
        if broker.cfg.leader_balance {
            tokio::spawn(crate::balance::run(Arc::downgrade(&broker)));
        }
        Ok(broker)
    }

    /// On the very first start the lowest-numbered peer proposes the initial membership
    /// (the peers list) at once; the others wait a few election timeouts and propose the
    /// same membership only if nobody reached them, so the cluster forms even when node 1
    /// is down (possible when every node was given `--cluster-id`; otherwise agreeing on
    /// the id already needed every node, see tidemark-server's cluster.rs), without an
    /// election storm when all start together. A node that already has state, or one
    /// joining a running cluster, skips this.
    async fn form_cluster(&self) -> Result<()> {
        let initialized = self.meta_raft.is_initialized().await.map_err(|e| BrokerError::Internal(e.to_string()))?;
        // A node repairing after disk damage has lost its copy of the membership, but the
        // cluster exists: its peers will send it back.
        if initialized || self.ctx.repairs.is_repairing(METADATA_GROUP) {
            return Ok(());
        }
        if self.cfg.join {
            tracing::info!("waiting to be added to the cluster: tidemark cluster add-node --id N --address HOST:PORT");
            return Ok(());
        }
        let members: BTreeMap<NodeId, BasicNode> =
            self.cfg.peers.iter().map(|(id, addr)| (*id, BasicNode { addr: addr.clone() })).collect();
        let first = self.cfg.peers.keys().next() == Some(&self.cfg.node_id);
        let delay = if first { Duration::ZERO } else { Duration::from_millis(self.cfg.timing.election_max_ms * 3) };
        tokio::spawn(initialize_later(self.meta_raft.clone(), members, delay));
        Ok(())
    }

    pub fn node_id(&self) -> NodeId {
        self.cfg.node_id
    }

    pub fn registry(&self) -> Arc<GroupRegistry> {
        self.registry.clone()
    }

    /// How many of this node's replicas are repairing after disk damage (they do not
    /// vote until they have caught up; see `tidemark_raft::repair`).
    pub fn repairing(&self) -> usize {
        self.ctx.repairs.count()
    }

    /// Asks the node to stop because of `reason` (the first reason given wins); the
    /// process then exits with an error, so its supervisor restarts it.
    pub fn fail(&self, reason: String) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if failure.is_none() {
            tracing::error!(%reason, "stopping the node");
            *failure = Some(reason);
            self.failed.bump();
        }
    }

    /// Why the node must stop, if it must.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Resolves once [`Broker::fail`] was called.
    pub async fn failed(&self) {
        loop {
            let seen = self.failed.version();
            if self.failure().is_some() {
                return;
            }
            self.failed.changed_since(seen, std::time::Duration::from_secs(3600)).await;
        }
    }

    pub fn peer_pool(&self) -> Arc<PeerPool> {
        self.ctx.pool.clone()
    }

    /// Stops every group on this node (the data stays), after handing its leaderships
    /// to other voters (bounded by two election timeouts), so that clients find new
    /// leaders at once.
    pub async fn shutdown(&self) {
        if !self.registry.is_closed() {
            self.hand_off_leaderships(Duration::from_millis(2 * self.cfg.timing.election_max_ms)).await;
        }
        self.registry.close();
        let replicas: Vec<_> = self.replicas.write().unwrap_or_else(|e| e.into_inner()).drain().collect();
        for (_, r) in replicas {
            let _ = r.raft.shutdown().await;
        }
        let _ = self.meta_raft.shutdown().await;
    }

    /// Where `node` serves clients, once it has published it (see `directory.rs`): what
    /// clients are given, in metadata and in redirects.
    pub fn node_addr(&self, node: NodeId) -> Option<String> {
        self.meta.read().client_addrs.get(&node).cloned()
    }

    /// Where `node`'s Raft transport listens, from the metadata membership or the
    /// configured peers.
    pub fn cluster_addr(&self, node: NodeId) -> Option<String> {
        let m = self.meta_raft.metrics().borrow_watched().membership_config.clone();
        m.membership().get_node(&node).map(|n| n.addr.clone()).or_else(|| self.cfg.peers.get(&node).cloned())
    }

    /// Every member of the cluster (voters and learners of the metadata group), with its
    /// cluster address.
    pub fn cluster_members(&self) -> BTreeMap<NodeId, String> {
        let m = self.meta_raft.metrics().borrow_watched().membership_config.clone();
        m.membership().nodes().map(|(id, n)| (*id, n.addr.clone())).collect()
    }

    /// Whether `node` may send this node internal requests: a member of the cluster, or
    /// one of the configured peers (before the membership is known).
    /// Checked on every internal request, so it looks the node up without copying.
    /// A node not yet in any membership (joining) takes requests from any node of its
    /// cluster: it cannot know the members before they have added it.
    pub fn is_member(&self, node: NodeId) -> bool {
        if self.cfg.peers.contains_key(&node) {
            return true;
        }
        let metrics = self.meta_raft.metrics();
        let m = metrics.borrow_watched();
        let membership = m.membership_config.membership();
        membership.get_node(&node).is_some() || membership.nodes().next().is_none()
    }

    pub fn cluster_id(&self) -> &str {
        &self.cfg.cluster_id
    }

    pub fn client_address(&self) -> &str {
        &self.cfg.client_address
    }

    pub fn metadata_leader(&self) -> Option<NodeId> {
        self.meta_raft.metrics().borrow_watched().current_leader
    }

    /// Nodes the metadata leader has heard from recently: itself, and every follower that
    /// answered a heartbeat within three election timeouts. `None` on a non-leader.
    pub fn live_nodes(&self) -> Option<Vec<NodeId>> {
        let heartbeat = self.meta_raft.metrics().borrow_watched().heartbeat.clone()?;
        let limit = Duration::from_millis(self.cfg.timing.election_max_ms * 3);
        let now = tidemark_raft::runtime::TidemarkInstant::now();
        let mut live = vec![self.cfg.node_id];
        for (id, ack) in &heartbeat {
            if *id != self.cfg.node_id
                && ack
                    .as_ref()
                    .is_some_and(|t| now.into_inner().saturating_duration_since(t.into_inner().into_inner()) <= limit)
            {
                live.push(*id);
            }
        }
        live.sort_unstable();
        Some(live)
    }

    pub(crate) fn not_meta_leader(&self) -> BrokerError {
        let leader = self.metadata_leader().and_then(|id| Some((id, self.node_addr(id)?)));
        BrokerError::NotLeader { what: "the metadata group".into(), leader }
    }

    pub fn topics(&self) -> Vec<TopicMeta> {
        self.meta.read().topics.values().cloned().collect()
    }

    /// A topic. One not known here is reported unknown only once this node has caught up
    /// with the cluster's metadata: before, it may simply not have heard of it yet.
    pub fn topic(&self, name: &str) -> Result<TopicMeta> {
        if let Some(t) = self.meta.read().topics.get(name) {
            return Ok(t.clone());
        }
        self.ensure_ready()?;
        Err(BrokerError::UnknownTopic { topic: name.into() })
    }

    /// Every topic, for clients: refused (retriably) until this node has caught up.
    pub fn list_topics(&self) -> Result<Vec<TopicMeta>> {
        self.ensure_ready()?;
        Ok(self.topics())
    }

    /// Whether this node has caught up with the cluster's metadata since it started: it
    /// knows a metadata leader and has applied everything that leader committed. Until
    /// then a restarted node would answer from an old state (a topic created while it was
    /// down "does not exist"); it answers `Unavailable`, which clients retry, instead.
    pub fn ensure_ready(&self) -> Result<()> {
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let caught_up = {
            let metrics = self.meta_raft.metrics();
            let m = metrics.borrow_watched();
            m.current_leader.is_some() && m.cluster_committed.is_some() && m.last_applied >= m.cluster_committed
        };
        // Clients are sent to the addresses in the metadata: this node's must be there.
        let caught_up = caught_up && self.node_addr(self.node_id()).is_some();
        if !caught_up {
            return Err(BrokerError::Unavailable(format!(
                "node {} is still catching up with the cluster's metadata; retry in a moment",
                self.node_id()
            )));
        }
        if !self.ready.swap(true, Ordering::AcqRel) {
            tracing::info!("caught up with the cluster's metadata; serving");
        }
        Ok(())
    }

    pub fn local_replica(&self, group: GroupId) -> Option<Arc<Replica>> {
        self.replicas.read().unwrap_or_else(|e| e.into_inner()).get(&group).cloned()
    }

    /// The replica of `topic`/`partition` on this node, or the error a client should see:
    /// unknown topic or partition, or NotLeader pointing at a node that has a replica.
    pub fn replica(&self, topic: &str, partition: PartitionId) -> Result<Arc<Replica>> {
        // Resolve under the metadata read lock without cloning the topic: this runs on
        // every produce and fetch.
        let (group, preferred, hosted_here) = {
            let state = self.meta.read();
            let meta = state.topics.get(topic).ok_or_else(|| BrokerError::UnknownTopic { topic: topic.into() })?;
            let Some(replicas) = meta.replicas.get(partition as usize) else {
                let count = meta.partition_count();
                return Err(BrokerError::UnknownPartition { topic: topic.into(), partition, count });
            };
            let hosted_here = replicas.contains(&self.cfg.node_id)
                || meta.moves.get(&partition).is_some_and(|to| to.contains(&self.cfg.node_id));
            (meta.group(partition), replicas.first().copied(), hosted_here)
        };
        if let Some(r) = self.local_replica(group) {
            return Ok(r);
        }
        let what = format!("{topic}/{partition}");
        if hosted_here {
            return Err(BrokerError::Unavailable(format!("{what} is still starting on this node")));
        }
        let hint = preferred.and_then(|id| Some((id, self.node_addr(id)?)));
        Err(BrokerError::NotLeader { what, leader: hint })
    }

    /// Like [`Self::replica`], but only if this node currently leads the partition.
    pub fn leader_replica(&self, topic: &str, partition: PartitionId) -> Result<Arc<Replica>> {
        let r = self.replica(topic, partition)?;
        let (leader, is_leader) = {
            let metrics = r.raft.metrics();
            let m = metrics.borrow_watched();
            (m.current_leader, m.state == openraft::ServerState::Leader)
        };
        if is_leader && leader == Some(self.cfg.node_id) {
            return Ok(r);
        }
        let hint = leader.filter(|id| *id != self.cfg.node_id).and_then(|id| Some((id, self.node_addr(id)?)));
        Err(BrokerError::NotLeader { what: format!("{topic}/{partition}"), leader: hint })
    }

    /// The leader replica, ready to serve reads: the first read of each term confirms
    /// leadership with a quorum (ReadIndex) and waits until everything committed before
    /// it is applied. A new or restarted leader may otherwise answer with stale offsets.
    /// Later reads go straight through while the leader's lease holds (see `lease.rs`),
    /// and confirm again with a quorum when it does not.
    pub async fn read_replica(&self, topic: &str, partition: PartitionId) -> Result<Arc<Replica>> {
        let r = self.leader_replica(topic, partition)?;
        let term = r.raft.metrics().borrow_watched().current_term;
        if r.read_term.load(Ordering::Acquire) == term && self.lease_holds(&r.raft) {
            return Ok(r);
        }
        let what = format!("{topic}/{partition}");
        let wait = Duration::from_millis(self.cfg.timing.election_max_ms * 2);
        match tokio::time::timeout(wait, r.raft.ensure_linearizable(openraft::ReadPolicy::ReadIndex)).await {
            Ok(Ok(_)) => {
                // A leader restored on restart reads with the read index of its old term
                // while its commit point is still being relearned, so ReadIndex alone can
                // serve a prefix of the committed log (a whole-cluster kill -9 test saw
                // the newest acknowledged records missing). Everything committed is in the
                // leader's log, so the first read of a term also waits until the whole
                // log is applied.
                let last = r.raft.metrics().borrow_watched().last_log_index;
                if r.raft.wait(Some(wait)).applied_index_at_least(last, "applied up to the leader's log").await.is_err()
                {
                    return Err(BrokerError::Unavailable(format!("{what}: the leader is still applying its log")));
                }
                r.read_term.store(term, Ordering::Release);
                Ok(r)
            }
            Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f)))) => {
                let leader = f.leader_id.and_then(|id| Some((id, self.node_addr(id)?)));
                Err(BrokerError::NotLeader { what, leader })
            }
            Ok(Err(e)) => Err(BrokerError::Unavailable(format!("{what}: {e}"))),
            Err(_) => {
                Err(BrokerError::Unavailable(format!("{what}: the leader could not confirm its leadership in time")))
            }
        }
    }

    /// Maps a failed Raft write to what the client should do.
    pub(crate) fn write_error(
        &self,
        what: String,
        e: RaftError<tidemark_raft::TypeConfig, ClientWriteError<tidemark_raft::TypeConfig>>,
    ) -> BrokerError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                let leader = f.leader_id.and_then(|id| Some((id, self.node_addr(id)?)));
                BrokerError::NotLeader { what, leader }
            }
            // Right after the cluster forms, or while another change commits: retriable.
            RaftError::APIError(ClientWriteError::ChangeMembershipError(
                openraft::error::ChangeMembershipError::InProgress(e),
            )) => BrokerError::Unavailable(format!("{what}: a membership change is still committing ({e}); retry")),
            RaftError::APIError(e) => BrokerError::Internal(format!("{what}: {e}")),
            RaftError::Fatal(e) => BrokerError::Unavailable(format!("{what} stopped on this node: {e}")),
        }
    }

    /// Offsets of a partition as this node's replica knows them: (start, end, leader,
    /// bytes retained).
    pub fn partition_offsets(&self, group: GroupId) -> Option<(Offset, Offset, Option<NodeId>, u64)> {
        let r = self.local_replica(group)?;
        let st = r.shared.read();
        let leader = r.raft.metrics().borrow_watched().current_leader;
        Some((st.log_start_offset, st.next_offset, leader, st.retained_bytes))
    }

    pub(crate) fn engine(&self) -> &SharedEngine {
        &self.ctx.engine
    }
}

/// Initializes `raft` with `members` after `delay`, unless it has heard from a leader.
pub(crate) async fn initialize_later(raft: Raft, members: BTreeMap<NodeId, BasicNode>, delay: Duration) {
    tokio::time::sleep(delay).await;
    // A group stopped meanwhile (its topic deleted, the node stopping) is left alone:
    // asking it anything makes openraft log an error.
    if raft.metrics().borrow_watched().running_state.is_err() {
        return;
    }
    if matches!(raft.is_initialized().await, Ok(false)) {
        if let Err(e) = raft.initialize(members).await {
            tracing::debug!(error = %e, "group already initialized");
        }
    }
}
