//! Replacing dead nodes (`replace_dead_after`, off by default). The metadata leader
//! notes when it last heard from each member; one silent for longer than the setting is
//! removed the way `cluster remove-node` removes a node: its partitions get new replicas
//! on the other nodes (each move needs only a majority of the old replicas), then it
//! leaves the metadata group. Off by default because a node that is merely slow to come
//! back (a long reboot) would be replaced needlessly, and copying its data costs a lot.
//! A replaced node that comes back is refused by the others (it is no longer a member);
//! wipe its data directory and add it again.

use std::collections::{HashMap, HashSet};
use std::sync::Weak;
use std::time::Duration;

use tidemark_types::NodeId;
use tokio::time::Instant;

use crate::broker::Broker;

/// How often the metadata leader looks.
const EVERY: Duration = Duration::from_secs(1);

/// Runs until the broker is dropped.
pub async fn run(broker: Weak<Broker>, after: Duration) {
    let mut last_seen: HashMap<NodeId, Instant> = HashMap::new();
    let mut refused: HashSet<NodeId> = HashSet::new();
    loop {
        tokio::time::sleep(EVERY).await;
        let Some(b) = broker.upgrade() else { return };
        if b.registry().is_closed() {
            return;
        }
        let live = match b.live_nodes() {
            Some(live) if b.metadata_leader() == Some(b.node_id()) => live,
            // Only the leader judges, and a new leader counts from when it took over.
            _ => {
                last_seen.clear();
                continue;
            }
        };
        let now = Instant::now();
        for node in b.cluster_members().into_keys() {
            let seen = last_seen.entry(node).or_insert(now);
            if live.contains(&node) {
                *seen = now;
                refused.remove(&node);
                continue;
            }
            if now.duration_since(*seen) < after {
                continue;
            }
            match b.remove_node(node).await {
                Ok(Some(moving)) => tracing::debug!(node, moving, "replacing a dead node: partitions moving"),
                Ok(None) => {
                    tracing::warn!(
                        node,
                        after = ?after,
                        "node was dead for longer than replace_dead_after: its partitions have new replicas \
                         and it left the cluster (to bring it back, wipe its data dir and add it again)"
                    );
                    last_seen.remove(&node);
                }
                Err(error) if refused.insert(node) => {
                    tracing::warn!(node, %error, "cannot replace the dead node yet")
                }
                Err(_) => {}
            }
        }
    }
}
