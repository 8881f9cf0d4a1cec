//! Durable copies of a group's small state, so neither a restart nor a lagging replica
//! needs the whole history.
//!
//! ```text
//!   apply ── every N entries / bytes ──▶ checkpoint  (restart: restore it, replay the tail)
//!   trigger().snapshot() ─────────────▶ base        (openraft's snapshot; the log is purged
//!                                                    up to base.last_log_id, never further)
//! ```
//!
//! Two records per group, in the engine's state tree:
//!
//! - the **checkpoint**, the newest state written at apply time. It bounds restart: the
//!   state machine starts from it and openraft re-applies only the tail after it.
//! - the **base**, openraft's snapshot. The partition log *is* the Raft log, so the base
//!   must sit at or below the first log entry the state still reads (the oldest retained
//!   batch); a replica that installs it then receives every retained entry through normal
//!   replication and can never have a hole between the log start and the snapshot.
//!   Its content is the state at `applied_through` (newer than `last_log_id`): entries in
//!   between are replicated again and skipped by the state machine, which already holds
//!   their effect (see [`crate::state_machine`]).

use std::io;

use serde::{Deserialize, Serialize};
use tidemark_storage::SharedEngine;
use tidemark_types::GroupId;

use crate::log_store::{state_key, STATE_TREE};
use crate::types::{LogId, StoredMembership};

pub(crate) const CHECKPOINT: u8 = b'c';
pub(crate) const BASE: u8 = b'b';

/// A state machine's state as of `last_log_id` (for openraft) holding the effect of every
/// entry up to `applied_through` (for the state machine itself).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    pub last_log_id: Option<LogId>,
    pub applied_through: u64,
    pub membership: StoredMembership,
    pub data: Vec<u8>,
}

/// The part of a checkpoint that travels as openraft's snapshot payload (openraft carries
/// the log id and membership in the snapshot meta).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Payload {
    pub applied_through: u64,
    pub data: Vec<u8>,
}

/// When a state machine writes a checkpoint: after this many applied entries or command
/// bytes since the last one, whichever comes first. A restart re-applies at most that much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    pub entries: u64,
    pub bytes: u64,
}

impl Default for CheckpointPolicy {
    /// 8192 entries or 64 MiB of commands: a restart re-reads and re-applies at most that.
    fn default() -> Self {
        CheckpointPolicy { entries: 8192, bytes: 64 << 20 }
    }
}

/// Where one group keeps its checkpoint and base.
#[derive(Clone)]
pub struct CheckpointStore {
    pub(crate) group: GroupId,
    pub(crate) engine: SharedEngine,
}

impl CheckpointStore {
    pub fn new(group: GroupId, engine: SharedEngine) -> Self {
        CheckpointStore { group, engine }
    }

    pub(crate) fn load(&self, tag: u8) -> io::Result<Option<Checkpoint>> {
        let key = state_key(self.group, tag);
        match self.engine.get(STATE_TREE, &key).map_err(io::Error::other)? {
            Some(v) => crate::codec::decode(&v).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("group {:#x}: unreadable checkpoint: {e}", self.group),
                )
            }),
            None => Ok(None),
        }
    }

    /// Written, not yet durable: the next group commit syncs it, and the log store syncs
    /// before it purges anything (see `LogStore::purge`).
    pub(crate) fn save(&self, tag: u8, cp: &Checkpoint) -> io::Result<()> {
        let bytes = bincode::serialize(cp).map_err(io::Error::other)?;
        self.engine.put(STATE_TREE, &state_key(self.group, tag), &bytes).map_err(io::Error::other)
    }

    /// The log id of entry `index`, if the log still holds it.
    pub(crate) fn log_id_at(&self, index: u64) -> io::Result<Option<LogId>> {
        use openraft::entry::RaftEntry;
        let found = crate::log_store::read_entries(&self.engine, self.group, index, index + 1, 1)?;
        Ok(found.first().map(|e| e.log_id()))
    }
}
