//! Reading every replica of every partition straight from the harness-owned engines,
//! after the cluster healed, for the byte-for-byte replica checker.
//!
//! The offset index of each replica (its applied state) says which log entry holds which
//! offsets; the batch bytes come from that node's own engine, not through any node's
//! fetch path, so a replica that stored different bytes cannot hide behind a healthy one.

use std::sync::Arc;
use std::time::Duration;

use openraft::EntryPayload;
use tidemark_broker::partition::batch_of;
use tidemark_raft::log_store::read_entries;
use tidemark_storage::SharedEngine;

use crate::checkers::{PartitionReplicas, ReplicaLog, StoredBatch};
use crate::harness::SimCluster;
use crate::workload::TopicSpec;

/// Waits (up to `limit`) until every replica of every partition has applied the same
/// log end, then reads them all. Replicas that never converge are read as they are: the
/// checker reports the difference.
pub async fn read_replicas(cluster: &SimCluster, topics: &[TopicSpec], limit: Duration) -> Vec<PartitionReplicas> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let snapshot = snapshot(cluster, topics);
        let converged = snapshot.iter().all(|p| {
            p.replicas.iter().all(|r| r.error.is_none())
                && p.replicas
                    .windows(2)
                    .all(|w| (w[0].log_start, w[0].next_offset) == (w[1].log_start, w[1].next_offset))
        });
        if converged || tokio::time::Instant::now() >= deadline {
            return snapshot;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn snapshot(cluster: &SimCluster, topics: &[TopicSpec]) -> Vec<PartitionReplicas> {
    let Some(meta_view) = (0..cluster.len()).find_map(|i| cluster.broker(i)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for topic in topics {
        let Ok(meta) = meta_view.topic(&topic.name) else {
            continue;
        };
        for (p, nodes) in meta.replicas.iter().enumerate() {
            let group = meta.group(p as u32);
            let replicas = nodes.iter().map(|&node| read_replica(cluster, node, group)).collect();
            out.push(PartitionReplicas { topic: topic.name.clone(), partition: p as u32, replicas });
        }
    }
    out
}

fn read_replica(cluster: &SimCluster, node: u64, group: u64) -> ReplicaLog {
    let mut log = ReplicaLog { node, log_start: 0, next_offset: 0, batches: Vec::new(), error: None };
    let i = node as usize - 1;
    let Some(replica) = cluster.broker(i).and_then(|b| b.local_replica(group)) else {
        log.error = Some("the replica is not running".into());
        return log;
    };
    let engine: SharedEngine = Arc::new(cluster.engines[i].clone());
    let state = replica.shared.read().clone();
    log.log_start = state.log_start_offset;
    log.next_offset = state.next_offset;
    for e in &state.index {
        let entry = match read_entries(&engine, group, e.log_index, e.log_index + 1, 1) {
            Ok(mut v) if v.len() == 1 => v.remove(0),
            Ok(_) => {
                log.error = Some(format!("log index {} (offset {}) is missing", e.log_index, e.base_offset));
                return log;
            }
            Err(err) => {
                log.error = Some(format!("log index {}: {err}", e.log_index));
                return log;
            }
        };
        let bytes = match &entry.payload {
            EntryPayload::Normal(cmd) => batch_of(cmd).unwrap_or_default(),
            _ => Default::default(),
        };
        log.batches.push(StoredBatch {
            base_offset: e.base_offset,
            record_count: e.record_count,
            log_index: e.log_index,
            bytes,
        });
    }
    log
}
