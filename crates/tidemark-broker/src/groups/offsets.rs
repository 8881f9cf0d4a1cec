//! Committed group offsets, replicated in the partition's own Raft group (a tagged
//! partition command) and kept in `PartitionState`, so they are in its snapshots and
//! survive failover like the data they point into.
//!
//! Fencing is decided at apply: a commit made under an older generation than the one
//! already stored is refused on every replica alike, so once a partition's new owner
//! has committed, the old owner can never overwrite its progress.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tidemark_raft::{Command, CommandResponse};
use tidemark_types::Offset;

use crate::partition::PartitionState;

/// The first byte of a commit command (appends use 1).
pub const TAG_COMMIT: u8 = 2;

/// One group's committed position in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    /// The next offset the group will read.
    pub offset: Offset,
    /// The partition generation of the commit; only grows (except for admin resets).
    pub generation: u64,
    /// The leader's clock when it was committed.
    pub committed_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitCommand {
    pub group_id: u64,
    pub generation: u64,
    pub offset: Offset,
    /// An administrative reset (the group has no members): skips the generation check.
    pub force: bool,
    pub leader_time_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommitResult {
    Committed,
    /// A newer generation has committed already.
    Stale {
        current: u64,
    },
    Rejected,
}

impl CommitCommand {
    pub fn encode(&self) -> Command {
        let body = bincode::serialize(self).expect("commit commands always encode");
        let mut b = BytesMut::with_capacity(body.len() + 1);
        b.put_u8(TAG_COMMIT);
        b.put_slice(&body);
        Command(b.freeze())
    }
}

/// Whether `command` is a commit (and not an append).
pub fn is_commit(command: &Command) -> bool {
    command.0.first() == Some(&TAG_COMMIT)
}

/// Applies a commit command to the partition state.
pub fn apply_commit(state: &mut PartitionState, command: &Command) -> CommandResponse {
    let result = match tidemark_raft::codec::decode::<CommitCommand>(&command.0[1..]) {
        Ok(c) => commit(state, &c),
        Err(_) => CommitResult::Rejected,
    };
    CommandResponse(Bytes::from(bincode::serialize(&result).expect("results always encode")))
}

fn commit(state: &mut PartitionState, c: &CommitCommand) -> CommitResult {
    let stored = state.committed.get(&c.group_id).copied();
    if let Some(s) = stored {
        if !c.force && c.generation < s.generation {
            return CommitResult::Stale { current: s.generation };
        }
    }
    let generation = stored.map_or(c.generation, |s| s.generation.max(c.generation));
    let entry = CommittedOffset { offset: c.offset, generation, committed_at_ms: c.leader_time_ms };
    state.committed.insert(c.group_id, entry);
    CommitResult::Committed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::{PartitionLogic, PartitionShared};
    use tidemark_raft::StateMachineLogic;

    fn run(logic: &mut PartitionLogic, index: u64, generation: u64, offset: u64, force: bool) -> CommitResult {
        let c = CommitCommand { group_id: 9, generation, offset, force, leader_time_ms: 5 };
        bincode::deserialize(&logic.apply(index, &c.encode()).0).unwrap()
    }

    #[test]
    fn older_generations_are_fenced_at_apply() {
        let shared = PartitionShared::new();
        let mut logic = PartitionLogic(shared.clone());
        assert_eq!(run(&mut logic, 1, 3, 10, false), CommitResult::Committed);
        assert_eq!(run(&mut logic, 2, 3, 12, false), CommitResult::Committed, "same owner, later offset");
        assert_eq!(run(&mut logic, 3, 5, 20, false), CommitResult::Committed, "the new owner");
        assert_eq!(run(&mut logic, 4, 3, 30, false), CommitResult::Stale { current: 5 }, "the old owner is fenced");
        assert_eq!(shared.read().committed[&9].offset, 20);
        assert_eq!(run(&mut logic, 5, 0, 0, true), CommitResult::Committed, "an admin reset");
        assert_eq!(shared.read().committed[&9], CommittedOffset { offset: 0, generation: 5, committed_at_ms: 5 });
        assert_eq!(run(&mut logic, 6, 3, 30, false), CommitResult::Stale { current: 5 }, "a reset keeps the fence");
        assert_eq!(shared.read().next_offset, 0, "commits take no offsets");
    }

    #[test]
    fn committed_offsets_are_in_the_snapshot() {
        let shared = PartitionShared::new();
        let mut logic = PartitionLogic(shared.clone());
        run(&mut logic, 1, 1, 7, false);
        let other = PartitionShared::new();
        PartitionLogic(other.clone()).restore(&logic.snapshot()).unwrap();
        assert_eq!(other.read().committed[&9].offset, 7);
    }
}
