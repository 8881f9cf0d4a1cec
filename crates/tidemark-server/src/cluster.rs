//! Which cluster this node belongs to.
//!
//! Every internal request carries the sender's cluster id and is refused by a node of
//! another cluster (see `raft_api.rs`), so a node pointed at the wrong peers, or a stale
//! node of a cluster that was wiped and formed again, can never deliver a vote, an append
//! or a snapshot. The id is kept in the data directory. A node without one gets it:
//!
//! - from `--cluster-id`, when it is set (the same on every node);
//! - else from any peer that has one (a node whose disk was replaced rejoins this way);
//! - else, once every node in `--peers` has answered that it has none (a new cluster), the
//!   lowest-numbered node draws a random one and the others learn it from that node.
//!
//! So a new cluster forms once all of its nodes have been up together, like Kafka's
//! `kafka-storage format --cluster-id` without the extra step.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tidemark_raft::PeerPool;
use tidemark_storage::SharedEngine;
use tidemark_types::NodeId;

use crate::node::NodeError;
use crate::NodeConfig;

/// Where the id lives in the engine: a tree of its own, which neither a group's repair
/// nor any purge touches.
const TREE: &str = "node";
const KEY: &[u8] = b"cluster_id";
/// How long to wait between rounds of asking the peers.
const ROUND: Duration = Duration::from_millis(250);
/// How often to say what the node is still waiting for.
const PROGRESS: Duration = Duration::from_secs(5);

/// What a node says about itself on its cluster listener (`Hello`).
pub struct Identity {
    pub node: NodeId,
    pub client_address: String,
    cluster_id: OnceLock<String>,
}

impl Identity {
    pub fn new(node: NodeId, client_address: String) -> Arc<Identity> {
        Arc::new(Identity { node, client_address, cluster_id: OnceLock::new() })
    }

    /// Empty until the node knows its cluster.
    pub fn cluster_id(&self) -> &str {
        self.cluster_id.get().map_or("", String::as_str)
    }
}

fn storage(e: tidemark_storage::StorageError) -> NodeError {
    NodeError::Cluster(format!("reading or writing the cluster id in the data directory: {e}"))
}

/// Settles this node's cluster id (stored, configured, learned or drawn: see the module
/// doc), stores it durably and records it in `identity`. Waits, with progress in the
/// log, while a new cluster is still missing nodes.
pub async fn establish(
    engine: &SharedEngine,
    config: &NodeConfig,
    identity: &Identity,
    peers: &BTreeMap<NodeId, String>,
    tls: Option<tidemark_raft::ClientTls>,
) -> Result<String, NodeError> {
    let configured = config.cluster_id.as_str();
    let stored = engine.get(TREE, KEY).map_err(storage)?.map(|v| String::from_utf8_lossy(&v).into_owned());
    let id = match stored {
        Some(stored) if !configured.is_empty() && stored != configured => {
            return Err(NodeError::Cluster(format!(
                "this data directory belongs to cluster {stored}, not to {configured} (--cluster-id); \
                 point --data-dir at this cluster's data, or remove --cluster-id"
            )))
        }
        Some(stored) => stored,
        None => {
            let id = if !configured.is_empty() {
                configured.to_string()
            } else if !config.join.is_empty() {
                let member = BTreeMap::from([(0, config.join.clone())]);
                discover(identity.node, &member, false, tls).await
            } else if peers.len() <= 1 {
                tidemark_raft::runtime::random_hex(16)
            } else {
                discover(identity.node, peers, true, tls).await
            };
            engine.put(TREE, KEY, id.as_bytes()).map_err(storage)?;
            let flushed = engine.clone();
            tidemark_raft::blocking::run_blocking(move || flushed.flush()).await.map_err(storage)?;
            tracing::info!(cluster_id = %id, "joined the cluster");
            id
        }
    };
    let _ = identity.cluster_id.set(id.clone());
    Ok(id)
}

/// Asks the peers until one has an id, or, when `may_draw`, until all said they have
/// none and this node is the one to draw it.
async fn discover(
    me: NodeId,
    peers: &BTreeMap<NodeId, String>,
    may_draw: bool,
    tls: Option<tidemark_raft::ClientTls>,
) -> String {
    let pool = PeerPool::with_tls(me, "", tls);
    let lowest = may_draw && peers.keys().next() == Some(&me);
    let mut last_progress = tokio::time::Instant::now();
    loop {
        let mut waiting = Vec::new();
        for (&node, addr) in peers.iter().filter(|(id, _)| **id != me) {
            match pool.hello(node, addr, Duration::from_secs(1)).await {
                Ok(r) if !r.cluster_id.is_empty() => {
                    tracing::info!(node, cluster_id = %r.cluster_id, "learned the cluster id from a peer");
                    return r.cluster_id;
                }
                Ok(_) => {}
                Err(error) => waiting.push(format!("{node} at {addr} ({error})")),
            }
        }
        if waiting.is_empty() && lowest {
            let id = tidemark_raft::runtime::random_hex(16);
            tracing::info!(cluster_id = %id, "every peer is new: forming a new cluster");
            return id;
        }
        if last_progress.elapsed() >= PROGRESS {
            last_progress = tokio::time::Instant::now();
            if !may_draw {
                tracing::warn!(
                    waiting = %waiting.join(", "),
                    "waiting for the member to join through to answer with its cluster id (--join)"
                );
            } else if waiting.is_empty() {
                tracing::info!("waiting for node {} to form the cluster", peers.keys().next().unwrap_or(&me));
            } else {
                tracing::warn!(
                    waiting = %waiting.join(", "),
                    "a new cluster forms once every node in --peers answers on its cluster address; \
                     start them, or set the same --cluster-id on every node to form without waiting"
                );
            }
        }
        tokio::time::sleep(ROUND).await;
    }
}
