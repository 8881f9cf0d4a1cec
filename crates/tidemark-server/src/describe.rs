//! Describing partitions: leader, offsets and in-sync replicas come from the local
//! replica when this node leads the partition, otherwise from its leader, asked over the
//! leader's client listener (only the leader knows which replicas keep up).

use std::sync::Arc;
use std::time::Duration;

use tidemark_broker::{Broker, TopicMeta};
use tidemark_proto::v1::tidemark_client::TidemarkClient;
use tidemark_proto::v1::{
    list_offsets_request::Spec, ListOffsetsRequest, PartitionInfo, TopicConfig, TopicDescription,
};

/// What a partition's leader says: log start, log end, leader, bytes, in-sync replicas.
type Remote = (u64, u64, Option<u64>, u64, Vec<u64>);

#[derive(Clone)]
pub struct Describer {
    pub broker: Arc<Broker>,
    /// Channels to the other nodes' client listeners (the cluster listener serves only
    /// the Raft transport).
    pub clients: Arc<tidemark_raft::PeerPool>,
}

impl Describer {
    pub async fn describe(&self, t: &TopicMeta) -> TopicDescription {
        let mut partitions = Vec::with_capacity(t.replicas.len());
        for (p, replicas) in t.replicas.iter().enumerate() {
            let p = p as u32;
            let local = self.broker.partition_offsets(t.group(p)).zip(self.broker.in_sync_replicas(t.group(p)));
            let (start, end, leader, bytes, isr) = match local {
                Some(((s, e, l, b), isr)) => (s, e, l, b, isr),
                None => self.ask_remote(t, p, replicas).await.unwrap_or((0, 0, None, 0, Vec::new())),
            };
            partitions.push(PartitionInfo {
                partition: p,
                leader: leader.unwrap_or(0),
                replicas: replicas.clone(),
                log_start_offset: start,
                log_end_offset: end,
                retained_bytes: bytes,
                in_sync_replicas: isr,
                moving_to: t.moves.get(&p).cloned().unwrap_or_default(),
            });
        }
        TopicDescription {
            name: t.name.to_string(),
            partitions,
            replication_factor: t.replication_factor,
            config: Some(TopicConfig {
                retention_ms: t.config.retention_ms,
                retention_bytes: t.config.retention_bytes,
                record_ttl_ms: t.config.record_ttl_ms,
            }),
        }
    }

    /// Asks the other replicas in turn (only the leader answers) for the partition's
    /// offsets and in-sync replicas, each with a short timeout.
    async fn ask_remote(&self, t: &TopicMeta, p: u32, replicas: &[u64]) -> Option<Remote> {
        for &node in replicas.iter().filter(|id| **id != self.broker.node_id()) {
            let Some(addr) = self.broker.node_addr(node) else { continue };
            let Ok(channel) = self.clients.channel(node, &addr) else { continue };
            let req = ListOffsetsRequest { topic: t.name.to_string(), partition: p, spec: Some(Spec::Latest(true)) };
            let mut client = TidemarkClient::new(channel);
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_millis(500), client.list_offsets(req)).await {
                let r = r.into_inner();
                return Some((
                    r.log_start_offset,
                    r.log_end_offset,
                    Some(r.leader),
                    r.retained_bytes,
                    r.in_sync_replicas,
                ));
            }
        }
        None
    }
}
