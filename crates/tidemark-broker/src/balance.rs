//! Leader balance: each partition's first replica is its preferred leader, and
//! placement spreads those evenly over the nodes. After a node restarts, its partitions
//! are led by others, which then carry more than their share. Every few seconds each
//! leader hands a partition back to its preferred replica once that replica is up and
//! holds the whole log, one partition at a time with a pause between, so clients see
//! at most a NotLeader they follow at once, never a burst of errors.

use std::sync::Weak;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::ServerState;

use crate::broker::Broker;

/// How often each node looks for leaderships to hand back.
const EVERY: Duration = Duration::from_secs(3);
/// How many entries behind the end the preferred replica may be.
const MAX_LAG: u64 = 64;
/// The pause after each hand-back, so a returning node's partitions move one by one.
const PACE: Duration = Duration::from_millis(300);

/// Runs until the broker is dropped.
pub async fn run(broker: Weak<Broker>) {
    loop {
        tokio::time::sleep(EVERY).await;
        let Some(b) = broker.upgrade() else { return };
        b.hand_back_preferred_leaderships().await;
    }
}

impl Broker {
    /// Hands each partition this node leads but does not prefer back to its preferred
    /// replica, when that replica answers and has every entry; returns how many.
    pub(crate) async fn hand_back_preferred_leaderships(&self) -> usize {
        let me = self.node_id();
        let mut handed = 0;
        for topic in self.topics() {
            for (partition, replicas) in topic.replicas.iter().enumerate() {
                // A moving partition's leadership is the move's business.
                if topic.moves.contains_key(&(partition as u32)) {
                    continue;
                }
                let Some(&preferred) = replicas.first().filter(|p| **p != me) else { continue };
                let Some(replica) = self.local_replica(topic.group(partition as u32)) else { continue };
                let ready = {
                    let m = replica.raft.metrics().borrow_watched().clone();
                    let caught_up = m.replication.as_ref().and_then(|r| r.get(&preferred).cloned().flatten());
                    // Within a few entries of the end: under steady writes a follower is
                    // always a little behind, and the transfer waits for the rest.
                    let behind = m.last_log_index.unwrap_or(0).saturating_sub(caught_up.map_or(0, |l| l.index));
                    m.state == ServerState::Leader
                        && caught_up.is_some()
                        && behind <= MAX_LAG
                        && self.lease_holds(&replica.raft)
                };
                if ready && replica.raft.trigger().transfer_leader(preferred).await.is_ok() {
                    tracing::info!(topic = %topic.name, partition, to = preferred, "handing leadership back to the preferred replica");
                    handed += 1;
                    tokio::time::sleep(PACE).await;
                }
            }
        }
        handed
    }
}
