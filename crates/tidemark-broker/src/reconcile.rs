//! Keeps this node's partition replicas in line with the metadata: starts the groups
//! placed here, stops (and deletes) those of deleted topics.
//!
//! The preferred leader (first replica) initializes a new group at once; the others
//! wait a few election timeouts and initialize only if nobody reached them, so the group
//! still forms when the preferred leader is down. Identical initial membership makes a
//! double initialization harmless.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use openraft::BasicNode;
use tidemark_types::{GroupId, NodeId};

use crate::broker::{Broker, Replica};
use crate::partition::{PartitionLogic, PartitionShared};

/// Runs until the broker is dropped.
pub async fn run(broker: Weak<Broker>) {
    let mut seen = u64::MAX;
    loop {
        let Some(b) = broker.upgrade() else { return };
        let version = b.meta.changes.version();
        if version != seen {
            seen = version;
            b.reconcile_once().await;
        }
        // Holding the broker while waiting only delays its drop by at most a second.
        b.meta.changes.changed_since(seen, Duration::from_secs(1)).await;
    }
}

struct Wanted {
    topic: String,
    partition: u32,
    replicas: Vec<NodeId>,
    /// Whether this node is one of the replicas the group was formed with.
    form: bool,
}

impl Broker {
    async fn reconcile_once(self: &Arc<Self>) {
        let me = self.node_id();
        let mut wanted: HashMap<GroupId, Wanted> = HashMap::new();
        for t in self.topics() {
            for (p, replicas) in t.replicas.iter().enumerate() {
                let p = p as u32;
                if t.hosts(p).contains(&me) {
                    // A replica a move adds joins the running group; it never forms one.
                    let form = replicas.contains(&me);
                    let w = Wanted { topic: t.name.to_string(), partition: p, replicas: replicas.clone(), form };
                    wanted.insert(t.group(p), w);
                }
            }
        }
        let running: Vec<GroupId> = self.replicas.read().unwrap_or_else(|e| e.into_inner()).keys().copied().collect();
        for group in running.iter().filter(|g| !wanted.contains_key(g)) {
            self.stop_replica(*group).await;
        }
        for (group, w) in wanted {
            if !running.contains(&group) {
                if let Err(e) = self.start_replica(group, w).await {
                    tracing::error!(group, error = %e, "could not start partition replica");
                }
            }
        }
    }

    async fn start_replica(self: &Arc<Self>, group: GroupId, w: Wanted) -> Result<(), String> {
        let shared = PartitionShared::new();
        let raft = self.ctx.start_group(group, Box::new(PartitionLogic(shared.clone()))).await?;
        self.registry.insert(group, raft.clone());
        let members: BTreeMap<NodeId, BasicNode> =
            w.replicas.iter().map(|id| (*id, BasicNode { addr: self.cluster_addr(*id).unwrap_or_default() })).collect();
        let preferred = w.replicas.first() == Some(&self.node_id());
        let delay = if preferred { Duration::ZERO } else { Duration::from_millis(self.cfg.timing.election_max_ms * 3) };
        if w.form {
            tokio::spawn(crate::broker::initialize_later(raft.clone(), members, delay));
        }
        let replica = Replica { group, raft, shared, read_term: 0.into(), produce_order: Default::default() };
        self.replicas.write().unwrap_or_else(|e| e.into_inner()).insert(group, Arc::new(replica));
        tracing::info!(group, topic = %w.topic, partition = w.partition, "partition replica started");
        Ok(())
    }

    async fn stop_replica(&self, group: GroupId) {
        let replica = self.replicas.write().unwrap_or_else(|e| e.into_inner()).remove(&group);
        self.registry.remove(group);
        if let Some(r) = replica {
            let _ = r.raft.shutdown().await;
        }
        if let Err(e) = tidemark_raft::log_store::delete_group(self.engine(), group) {
            tracing::error!(group, error = %e, "could not delete the data of a deleted partition");
        }
        tracing::info!(group, "partition replica removed");
    }
}
