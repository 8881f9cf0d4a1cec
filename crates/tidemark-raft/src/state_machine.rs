//! The openraft state machine of one group, over logic the broker supplies.
//!
//! The state machine holds only small state (topic metadata, or a partition's offset
//! index and producer table); the data stays in the log. It lives in memory and is
//! rebuilt after a restart by re-applying the log once the node learns the commit point
//! from its group. Snapshots carry the same small state.

use std::io;

use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};

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
}

/// openraft's view of one group's state machine.
pub struct GroupStateMachine {
    logic: Box<dyn StateMachineLogic>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    current: Option<Snapshot>,
    /// A planted bug for the simulation's self-tests; see [`crate::planted`]. Always false
    /// outside them.
    pub(crate) skip_after_blank: bool,
}

impl GroupStateMachine {
    pub fn new(logic: Box<dyn StateMachineLogic>) -> Self {
        GroupStateMachine {
            logic,
            last_applied: None,
            membership: StoredMembership::default(),
            current: None,
            skip_after_blank: false,
        }
    }

    fn build(&mut self) -> Snapshot {
        let meta = SnapshotMeta { last_log_id: self.last_applied, last_membership: self.membership.clone() };
        Snapshot { meta, snapshot: self.logic.snapshot() }
    }
}

/// Builds snapshots from a copy taken when the builder is created.
pub struct SnapshotBuilder(Snapshot);

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        Ok(self.0.clone())
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
            let response = match &entry.payload {
                EntryPayload::Blank => CommandResponse::default(),
                EntryPayload::Normal(_) if self.skip_after_blank && after_blank => CommandResponse::default(),
                EntryPayload::Normal(cmd) => self.logic.apply(log_id.index(), cmd),
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(log_id), m.clone());
                    CommandResponse::default()
                }
            };
            after_blank = matches!(entry.payload, EntryPayload::Blank);
            last = Some(log_id.index());
            self.last_applied = Some(log_id);
            if let Some(r) = responder {
                r.send(response);
            }
        }
        if let Some(index) = last {
            self.logic.applied_up_to(index);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let snap = self.build();
        self.current = Some(snap.clone());
        SnapshotBuilder(snap)
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Vec<u8>) -> io::Result<()> {
        self.logic.restore(&snapshot).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        if let Some(id) = &meta.last_log_id {
            self.logic.applied_up_to(id.index());
        }
        self.current = Some(Snapshot { meta: meta.clone(), snapshot });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        Ok(self.current.clone())
    }
}
