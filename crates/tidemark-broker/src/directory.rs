//! The directory of client addresses. Nodes reach each other on their cluster
//! addresses (the Raft membership, from `--peers`); clients must be given the addresses
//! where nodes serve them, which only each node knows. The metadata leader asks every
//! member (a `Hello` over the cluster transport) and records what it says in the
//! metadata group, so every node can hand out every address, that of a node that is down
//! included, and a node that moved its client listener is updated within seconds.

use std::sync::Weak;
use std::time::Duration;

use tidemark_types::NodeId;

use crate::broker::Broker;
use crate::meta::MetaCommand;

/// How often the leader asks while some member's address is not recorded yet.
const EAGER: Duration = Duration::from_millis(300);
/// How often it checks once every address is recorded (a node may restart elsewhere).
const STEADY: Duration = Duration::from_secs(5);
/// How long one member may take to answer.
const ASK_TTL: Duration = Duration::from_secs(1);

/// Runs until the broker is dropped.
pub async fn run(broker: Weak<Broker>) {
    let mut pause = EAGER;
    loop {
        tokio::time::sleep(pause).await;
        let Some(b) = broker.upgrade() else { return };
        if b.registry().is_closed() {
            return;
        }
        pause =
            if b.metadata_leader() != Some(b.node_id()) || b.publish_client_addresses().await { STEADY } else { EAGER };
    }
}

impl Broker {
    /// Asks every member where it serves clients and records what changed; true when
    /// every member's address is recorded.
    async fn publish_client_addresses(&self) -> bool {
        let mut complete = true;
        for (node, cluster_addr) in self.cluster_members() {
            let said = if node == self.node_id() {
                Ok(self.client_address().to_string())
            } else {
                self.ask_client_address(node, &cluster_addr).await
            };
            let recorded = self.node_addr(node);
            match said {
                Ok(address) if recorded.as_deref() != Some(address.as_str()) => {
                    let cmd = MetaCommand::PublishAddress { node, address: address.clone() };
                    match self.meta_raft.client_write(cmd.encode()).await {
                        Ok(_) => tracing::info!(node, %address, "recorded where the node serves clients"),
                        Err(e) => {
                            tracing::debug!(node, error = %e, "could not record the node's client address");
                            complete = false;
                        }
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(node, %error, "could not ask the node for its client address");
                    complete &= recorded.is_some();
                }
            }
        }
        complete
    }

    async fn ask_client_address(&self, node: NodeId, cluster_addr: &str) -> Result<String, String> {
        let reply = self.peer_pool().hello(node, cluster_addr, ASK_TTL).await?;
        if reply.node != node || reply.cluster_id != self.cluster_id() {
            return Err(format!(
                "{cluster_addr} answered as node {} of cluster {:?}, not as node {node} of {:?}",
                reply.node,
                reply.cluster_id,
                self.cluster_id()
            ));
        }
        if reply.client_address.is_empty() {
            return Err("the node has no client address yet".into());
        }
        Ok(reply.client_address)
    }
}
