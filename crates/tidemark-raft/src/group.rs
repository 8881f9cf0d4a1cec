//! Starting one Raft group on this node, with the node's shared engine, flusher and
//! peer connections.

use std::sync::Arc;

use openraft::{Config, SnapshotPolicy};
use tidemark_storage::SharedEngine;
use tidemark_types::{GroupId, NodeId};

use crate::checkpoint::{CheckpointPolicy, CheckpointStore};
use crate::flusher::Flusher;
use crate::log_store::LogStore;
use crate::network::{NetworkFactory, PeerPool};
use crate::repair::Repairs;
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
/// it: the partition log *is* the Raft log, and only retention may remove a prefix. The
/// broker triggers both (see `crate::checkpoint` for why the snapshot sits at the oldest
/// retained entry).
/// The most bytes of entries one AppendEntries may carry (the transport accepts 256 MiB).
pub const REPLICATION_BYTES: usize = 64 << 20;

/// How many entries one AppendEntries carries, so that `max_entry_bytes`-sized entries never
/// exceed [`REPLICATION_BYTES`]: openraft caps requests by entry count only, and a request
/// over the transport's limit would fail the same way on every retry, stalling a lagging
/// follower for good.
pub fn max_payload_entries(max_entry_bytes: usize) -> u64 {
    (REPLICATION_BYTES / max_entry_bytes.max(1)).clamp(1, 256) as u64
}

pub fn raft_config(timing: RaftTiming, max_entry_bytes: usize) -> Result<Arc<Config>, String> {
    let config = Config {
        cluster_name: "tidemark".into(),
        heartbeat_interval: timing.heartbeat_ms,
        election_timeout_min: timing.election_min_ms,
        election_timeout_max: timing.election_max_ms,
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: u64::MAX,
        max_payload_entries: max_payload_entries(max_entry_bytes),
        // A leader replicates an entry while its own write of it is still being synced. If
        // it then crashes before that sync, it comes back without the entry that a follower
        // may already hold. Restored as leader in the same term (openraft's default), it
        // would hand that log id to a different entry and the replicas would diverge. An
        // election gives it a new term, so every log id names one entry only.
        enable_leader_restore: Some(false),
        // A follower whose disk was wiped or replaced comes back with an empty log. Without
        // this, openraft treats that as a bug and panics the *leader's* group; with it, the
        // leader starts the follower over (snapshot, then every retained entry). Acknowledged
        // entries are fsynced on a majority, so a lost minority disk loses nothing.
        allow_log_reversion: Some(true),
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
    pub checkpoints: CheckpointPolicy,
    /// Groups repairing after disk damage (see [`crate::repair`]); shared with the registry.
    pub repairs: Arc<Repairs>,
}

impl GroupContext {
    /// Creates (or, after a restart, reopens) group `group` with the given state machine logic.
    pub async fn start_group(&self, group: GroupId, logic: Box<dyn StateMachineLogic>) -> Result<Raft, String> {
        let store = LogStore::new(group, self.engine.clone(), self.flusher.clone());
        let network = NetworkFactory::new(group, self.pool.clone());
        let checkpoints = CheckpointStore::new(group, self.engine.clone());
        let mut sm = GroupStateMachine::open(logic, checkpoints, self.checkpoints)
            .map_err(|e| format!("opening the state of raft group {group:#x}: {e}"))?;
        sm.skip_after_blank = crate::planted::skip_after_blank(group);
        let repair = crate::repair::pending(&self.engine, &self.repairs, group)?;
        // A replica under repair must not campaign (nor vote: see the registry).
        let config = match repair {
            Some(_) => Arc::new(Config { enable_elect: false, ..(*self.config).clone() }),
            None => self.config.clone(),
        };
        let raft = Raft::new(self.node_id, config, network, store, sm)
            .await
            .map_err(|e| format!("starting raft group {group:#x}: {e}"))?;
        if let Some(term) = repair {
            let (engine, flusher, repairs) = (self.engine.clone(), self.flusher.clone(), self.repairs.clone());
            tokio::spawn(crate::repair::watch(raft.clone(), engine, flusher, repairs, group, term));
        }
        Ok(raft)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_requests_stay_under_the_byte_cap() {
        for batch in [1usize, 4 << 10, 1 << 20, 4 << 20, 64 << 20] {
            let n = max_payload_entries(batch) as usize;
            assert!(n >= 1);
            assert!(n * batch <= REPLICATION_BYTES.max(batch), "{n} entries of {batch} bytes");
        }
        assert_eq!(max_payload_entries(4 << 20), 16, "the default 4 MiB batch limit");
        assert_eq!(max_payload_entries(1024), 256, "small entries: openraft's usual count");
    }
}
