//! The state machine's checkpoints and base snapshots, over the memory engine.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use openraft::entry::RaftEntry;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::vote::RaftLeaderId;
use tidemark_storage::{MemoryEngine, SharedEngine, WriteBatch};

use super::*;
use crate::log_store::{log_key_for_tests, LOG_TREE};
use crate::types::Entry;

/// A log of applied commands (their indexes); it reads log entries from `first` on.
#[derive(Default, Clone)]
struct Recorder {
    applied: Arc<Mutex<Vec<u64>>>,
    first: Arc<Mutex<Option<u64>>>,
}

impl StateMachineLogic for Recorder {
    fn apply(&mut self, index: u64, _: &Command) -> CommandResponse {
        self.applied.lock().unwrap().push(index);
        CommandResponse::default()
    }
    fn snapshot(&self) -> Vec<u8> {
        bincode::serialize(&*self.applied.lock().unwrap()).unwrap()
    }
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        *self.applied.lock().unwrap() = bincode::deserialize(snapshot).map_err(|e| e.to_string())?;
        Ok(())
    }
    fn retained_from(&self) -> Option<u64> {
        *self.first.lock().unwrap()
    }
}

fn entry(index: u64) -> Entry {
    let leader = openraft::alias::CommittedLeaderIdOf::<TypeConfig>::new(1, 1);
    Entry::new_normal(openraft::LogId::new(leader, index), Command(Bytes::from_static(b"x")))
}

/// Writes entries `from..=to` into the log tree, as the log store would.
fn write_log(engine: &SharedEngine, from: u64, to: u64) {
    let mut b = WriteBatch::new();
    for i in from..=to {
        b.put(log_key_for_tests(7, i).to_vec(), bincode::serialize(&entry(i)).unwrap());
    }
    engine.write(LOG_TREE, b).unwrap();
}

async fn apply(sm: &mut GroupStateMachine, from: u64, to: u64) {
    let entries: Vec<io::Result<EntryResponder<TypeConfig>>> = (from..=to).map(|i| Ok((entry(i), None))).collect();
    sm.apply(futures::stream::iter(entries)).await.unwrap();
}

fn open(engine: &SharedEngine, logic: &Recorder, every: u64) -> GroupStateMachine {
    let policy = CheckpointPolicy { entries: every, bytes: u64::MAX };
    GroupStateMachine::open(Box::new(logic.clone()), CheckpointStore::new(7, engine.clone()), policy).unwrap()
}

async fn applied_index(sm: &mut GroupStateMachine) -> Option<u64> {
    sm.applied_state().await.unwrap().0.map(|id| id.index())
}

#[test]
fn a_restart_starts_from_the_newest_checkpoint() {
    futures::executor::block_on(async {
        let engine: SharedEngine = Arc::new(MemoryEngine::new());
        let logic = Recorder::default();
        let mut sm = open(&engine, &logic, 10);
        apply(&mut sm, 1, 25).await;
        // Checkpoints at 10 and 20 (every 10 entries, judged once per applied run): the
        // run of 25 wrote one at its end.
        let again = Recorder::default();
        let mut sm = open(&engine, &again, 10);
        assert_eq!(applied_index(&mut sm).await, Some(25), "the checkpoint holds the whole run");
        assert_eq!(again.applied.lock().unwrap().len(), 25, "state restored, not replayed");
        apply(&mut sm, 26, 30).await;
        let third = Recorder::default();
        let mut sm = open(&engine, &third, 10);
        assert_eq!(applied_index(&mut sm).await, Some(25), "5 entries since: openraft re-applies that tail");
    });
}

#[test]
fn the_base_never_passes_the_oldest_retained_entry() {
    futures::executor::block_on(async {
        let engine: SharedEngine = Arc::new(MemoryEngine::new());
        write_log(&engine, 1, 40);
        let logic = Recorder::default();
        *logic.first.lock().unwrap() = Some(15);
        let mut sm = open(&engine, &logic, 1000);
        apply(&mut sm, 1, 40).await;
        let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id.map(|id| id.index()), Some(14), "claimed just below entry 15");

        // A lagging replica installs it, then receives 15..=40 again through replication:
        // the state already holds them, so they must not be applied twice.
        let engine2: SharedEngine = Arc::new(MemoryEngine::new());
        let follower = Recorder::default();
        let mut sm2 = open(&engine2, &follower, 1000);
        sm2.install_snapshot(&snap.meta, snap.snapshot.clone()).await.unwrap();
        assert_eq!(applied_index(&mut sm2).await, Some(14));
        apply(&mut sm2, 15, 41).await;
        let seen = follower.applied.lock().unwrap().clone();
        assert_eq!(seen, (1..=41).collect::<Vec<_>>(), "every entry applied exactly once");

        // The installed state survives a restart of the follower.
        let after = Recorder::default();
        let mut sm3 = open(&engine2, &after, 1000);
        assert_eq!(applied_index(&mut sm3).await, Some(14));
        apply(&mut sm3, 15, 41).await;
        assert_eq!(after.applied.lock().unwrap().len(), 41, "restart skips what the state holds");
    });
}

#[test]
fn the_base_moves_only_forward_and_only_onto_stored_entries() {
    futures::executor::block_on(async {
        let engine: SharedEngine = Arc::new(MemoryEngine::new());
        write_log(&engine, 10, 20);
        let logic = Recorder::default();
        let mut sm = open(&engine, &logic, 1000);
        apply(&mut sm, 1, 20).await;
        *logic.first.lock().unwrap() = Some(5);
        let built = sm.get_snapshot_builder().await.build_snapshot().await;
        assert!(built.is_err(), "entry 4 is not in the log: no base can be claimed there");
        *logic.first.lock().unwrap() = Some(12);
        let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id.map(|id| id.index()), Some(11));
        *logic.first.lock().unwrap() = Some(8);
        let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id.map(|id| id.index()), Some(11), "never back");
        *logic.first.lock().unwrap() = None;
        let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id.map(|id| id.index()), Some(20), "no data kept: the whole state");
    });
}
