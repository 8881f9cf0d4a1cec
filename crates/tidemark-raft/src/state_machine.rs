//! The openraft state machine of one group, over logic the broker supplies.
//!
//! The state machine holds only small state (topic metadata, or a partition's offset
//! index and producer table); the data stays in the log. It lives in memory, starts from
//! the group's newest checkpoint after a restart and re-applies only the log tail after
//! it (see [`crate::checkpoint`]). Snapshots carry the same small state.
//!
//! ```text
//!  entry ─▶ index <= applied_through? ─yes─▶ skipped (its effect is already in the state)
//!                   │no
//!                   ▼
//!            logic.apply ─▶ every N entries / bytes: checkpoint
//! ```

use std::io;

use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};

use crate::checkpoint::{Checkpoint, CheckpointPolicy, CheckpointStore, Payload, BASE, CHECKPOINT};
use crate::types::{Command, CommandResponse, LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};

/// What a group's state means: implemented by the broker for the metadata group and
/// for partition groups. Everything here must be deterministic: every replica applies
/// the same commands in the same order and must reach the same state.
pub trait StateMachineLogic: Send + Sync + 'static {
    /// Applies one committed command found at Raft log `index`.
    fn apply(&mut self, index: u64, command: &Command) -> CommandResponse;
    /// Called after each run of applied entries with the last applied index, including
    /// blank and membership entries (so readers can wake up once per run).
    fn applied_up_to(&mut self, _index: u64) {}
    /// The small state, serialized.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the state with a snapshot taken by `snapshot` (on any replica).
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;
    /// The first Raft log index whose entry the state still reads (a partition's oldest
    /// retained batch), or None when it reads none. The snapshot, and so the purge, never
    /// goes past the entry before it.
    fn retained_from(&self) -> Option<u64> {
        None
    }
}

/// openraft's view of one group's state machine.
pub struct GroupStateMachine {
    logic: Box<dyn StateMachineLogic>,
    last_applied: Option<LogId>,
    /// Every entry up to here is in the state, even when `last_applied` is lower (just
    /// after installing a base snapshot): those entries are skipped when applied again.
    applied_through: u64,
    membership: StoredMembership,
    /// The membership before `membership`, for a base snapshot claimed below it.
    prev_membership: StoredMembership,
    store: CheckpointStore,
    policy: CheckpointPolicy,
    /// Entries and command bytes applied since the last checkpoint.
    since_checkpoint: (u64, u64),
    base: Option<Snapshot>,
    /// A planted bug for the simulation's self-tests; see [`crate::planted`]. Always false
    /// outside them.
    pub(crate) skip_after_blank: bool,
}

impl GroupStateMachine {
    /// Starts from the group's newest checkpoint, if it has one. Blocking (reads storage).
    pub fn open(
        mut logic: Box<dyn StateMachineLogic>,
        store: CheckpointStore,
        policy: CheckpointPolicy,
    ) -> io::Result<Self> {
        let checkpoint = store.load(CHECKPOINT)?.unwrap_or_default();
        if !checkpoint.data.is_empty() {
            logic.restore(&checkpoint.data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        let base = store.load(BASE)?.map(|cp| to_snapshot(&cp)).transpose()?;
        Ok(GroupStateMachine {
            logic,
            last_applied: checkpoint.last_log_id,
            applied_through: checkpoint.applied_through,
            membership: checkpoint.membership.clone(),
            prev_membership: checkpoint.membership,
            store,
            policy,
            since_checkpoint: (0, 0),
            base,
            skip_after_blank: false,
        })
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            last_log_id: self.last_applied,
            applied_through: self.applied_through,
            membership: self.membership.clone(),
            data: self.logic.snapshot(),
        }
    }

    fn save_checkpoint(&mut self) -> io::Result<()> {
        self.store.save(CHECKPOINT, &self.checkpoint())?;
        self.since_checkpoint = (0, 0);
        Ok(())
    }

    /// The newest base snapshot this state allows: the current state, claimed at the
    /// entry before the first one the state still reads. Keeps the old base when the
    /// claim cannot move forward (its entry is gone, or a membership change sits between).
    fn build_base(&mut self) -> io::Result<Option<Snapshot>> {
        let Some(applied) = self.last_applied else { return Ok(self.base.clone()) };
        let want = self.logic.retained_from().map_or(applied.index, |first| first.saturating_sub(1));
        let index = want.min(applied.index);
        let old = self.base.as_ref().and_then(|b| b.meta.last_log_id).map_or(0, |id| id.index + 1);
        if index < old {
            return Ok(self.base.clone());
        }
        let at = |m: &StoredMembership| m.log_id().map_or(0, |id| id.index);
        let membership = if at(&self.membership) <= index {
            self.membership.clone()
        } else if at(&self.prev_membership) <= index {
            self.prev_membership.clone()
        } else {
            return Ok(self.base.clone());
        };
        let last_log_id = if index == applied.index { Some(applied) } else { self.store.log_id_at(index)? };
        if last_log_id.is_none() {
            return Ok(self.base.clone());
        }
        let cp =
            Checkpoint { last_log_id, applied_through: self.applied_through, membership, data: self.logic.snapshot() };
        self.store.save(BASE, &cp)?;
        self.base = Some(to_snapshot(&cp)?);
        Ok(self.base.clone())
    }
}

fn to_snapshot(cp: &Checkpoint) -> io::Result<Snapshot> {
    let payload = Payload { applied_through: cp.applied_through, data: cp.data.clone() };
    let meta = SnapshotMeta { last_log_id: cp.last_log_id, last_membership: cp.membership.clone() };
    Ok(Snapshot { meta, snapshot: bincode::serialize(&payload).map_err(io::Error::other)? })
}

/// Builds snapshots from a copy taken when the builder is created.
pub struct SnapshotBuilder(io::Result<Snapshot>);

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        match &self.0 {
            Ok(s) => Ok(s.clone()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        }
    }
}

impl RaftStateMachine<TypeConfig> for GroupStateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        let mut last = None;
        let mut after_blank = false;
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            let index = log_id.index();
            let response = match &entry.payload {
                EntryPayload::Blank => CommandResponse::default(),
                EntryPayload::Normal(_) if index <= self.applied_through => CommandResponse::default(),
                EntryPayload::Normal(_) if self.skip_after_blank && after_blank => CommandResponse::default(),
                EntryPayload::Normal(cmd) => {
                    self.since_checkpoint.1 += cmd.0.len() as u64;
                    self.logic.apply(index, cmd)
                }
                EntryPayload::Membership(m) => {
                    let new = StoredMembership::new(Some(log_id), m.clone());
                    self.prev_membership = std::mem::replace(&mut self.membership, new);
                    CommandResponse::default()
                }
            };
            after_blank = matches!(entry.payload, EntryPayload::Blank);
            last = Some(index);
            self.last_applied = Some(log_id);
            self.applied_through = self.applied_through.max(index);
            self.since_checkpoint.0 += 1;
            if let Some(r) = responder {
                r.send(response);
            }
        }
        if let Some(index) = last {
            self.logic.applied_up_to(index);
        }
        let (entries, bytes) = self.since_checkpoint;
        if entries >= self.policy.entries || bytes >= self.policy.bytes {
            self.save_checkpoint()?;
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let built = self.build_base().and_then(|b| b.ok_or_else(|| io::Error::other("nothing applied yet")));
        SnapshotBuilder(built)
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Vec<u8>) -> io::Result<()> {
        let payload: Payload =
            crate::codec::decode(&snapshot).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.logic.restore(&payload.data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.last_applied = meta.last_log_id;
        self.applied_through = payload.applied_through.max(meta.last_log_id.map_or(0, |id| id.index));
        self.membership = meta.last_membership.clone();
        self.prev_membership = meta.last_membership.clone();
        self.logic.applied_up_to(self.applied_through);
        let cp = Checkpoint {
            last_log_id: meta.last_log_id,
            applied_through: self.applied_through,
            membership: meta.last_membership.clone(),
            data: payload.data,
        };
        self.store.save(BASE, &cp)?;
        self.store.save(CHECKPOINT, &cp)?;
        self.since_checkpoint = (0, 0);
        self.base = Some(Snapshot { meta: meta.clone(), snapshot });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        Ok(self.base.clone())
    }
}

#[cfg(test)]
#[path = "state_machine_tests.rs"]
mod tests;
