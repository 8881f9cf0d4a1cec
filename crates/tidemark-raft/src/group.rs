//! Starting one Raft group on this node, with the node's shared engine, flusher and
//! peer connections.

use std::sync::Arc;

use openraft::{Config, SnapshotPolicy};
use tidemark_storage::SharedEngine;
use tidemark_types::{GroupId, NodeId};

use crate::flusher::Flusher;
use crate::log_store::LogStore;
use crate::network::{NetworkFactory, PeerPool};
use crate::state_machine::{GroupStateMachine, StateMachineLogic};
use crate::types::Raft;

/// Raft timing, the same for every group on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTiming {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
}

impl Default for RaftTiming {
    /// A 3-node cluster on one LAN (or one laptop) fails over in about a second.
    fn default() -> Self {
        RaftTiming { heartbeat_ms: 100, election_min_ms: 500, election_max_ms: 1000 }
    }
}

/// The openraft configuration every group uses.
///
/// Snapshots are never taken on openraft's own initiative and the log is never purged by
/// it: the partition log *is* the Raft log, and only retention may remove a prefix.
pub fn raft_config(timing: RaftTiming) -> Result<Arc<Config>, String> {
    let config = Config {
        cluster_name: "tidemark".into(),
        heartbeat_interval: timing.heartbeat_ms,
        election_timeout_min: timing.election_min_ms,
        election_timeout_max: timing.election_max_ms,
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: u64::MAX,
        max_payload_entries: 256,
        // A leader replicates an entry while its own write of it is still being synced. If
        // it then crashes before that sync, it comes back without the entry that a follower
        // may already hold. Restored as leader in the same term (openraft's default), it
        // would hand that log id to a different entry and the replicas would diverge. An
        // election gives it a new term, so every log id names one entry only.
        enable_leader_restore: Some(false),
        ..Default::default()
    };
    Ok(Arc::new(config.validate().map_err(|e| e.to_string())?))
}

/// Everything a node shares among its groups.
#[derive(Clone)]
pub struct GroupContext {
    pub node_id: NodeId,
    pub engine: SharedEngine,
    pub flusher: Flusher,
    pub pool: Arc<PeerPool>,
    pub config: Arc<Config>,
}

impl GroupContext {
    /// Creates (or, after a restart, reopens) group `group` with the given state machine logic.
    pub async fn start_group(&self, group: GroupId, logic: Box<dyn StateMachineLogic>) -> Result<Raft, String> {
        let store = LogStore::new(group, self.engine.clone(), self.flusher.clone());
        let network = NetworkFactory::new(group, self.pool.clone());
        let mut sm = GroupStateMachine::new(logic);
        sm.skip_after_blank = crate::planted::skip_after_blank(group);
        Raft::new(self.node_id, self.config.clone(), network, store, sm)
            .await
            .map_err(|e| format!("starting raft group {group:#x}: {e}"))
    }
}
