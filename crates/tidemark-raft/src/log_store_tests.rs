//! Purge against a crash, on the production layout: the log in segment files, the purged
//! mark in another engine, each synced on its own.

use std::sync::Arc;

use bytes::Bytes;
use openraft::entry::RaftEntry;
use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::vote::RaftLeaderId;
use tidemark_storage::{MemoryEngine, SegmentedEngine, SharedEngine};

use super::*;
use crate::types::Command;

fn entry(index: u64) -> Entry {
    let leader = openraft::alias::CommittedLeaderIdOf::<TypeConfig>::new(1, 1);
    Entry::new_normal(openraft::LogId::new(leader, index), Command(Bytes::from_static(b"batch")))
}

fn open(dir: &std::path::Path, state: &MemoryEngine) -> (SharedEngine, LogStore) {
    let engine: SharedEngine = Arc::new(SegmentedEngine::open(dir, LOG_TREE, state.clone(), 1 << 20).unwrap());
    let store = LogStore::new(9, engine.clone(), Flusher::start(engine.clone()));
    (engine, store)
}

/// A crash right after a purge returns must find either the entries or the purged mark
/// that says they are gone: a mark lost while the deletes survived made the restarted
/// group fail with "log entry not found" at index 0 (seen in the whole-cluster kill -9
/// test once purges began).
#[tokio::test]
async fn a_crash_after_purge_keeps_the_purged_mark_with_the_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let state = MemoryEngine::new();
    {
        let (engine, mut store) = open(dir.path(), &state);
        let mut batch = WriteBatch::new();
        for i in 0..10 {
            batch.put(log_key(9, i).to_vec(), encode(&entry(i)).unwrap());
        }
        engine.write(LOG_TREE, batch).unwrap();
        engine.flush().unwrap();
        store.purge(entry(4).log_id()).await.unwrap();
    }
    // Power cut: the state engine loses what it had not synced; segment files keep what
    // was written to them.
    state.crash(0);
    let (_, mut store) = open(dir.path(), &state);
    let st = store.get_log_state().await.unwrap();
    let purged = st.last_purged_log_id.map(|id| id.index());
    assert_eq!(purged, Some(4), "the purged mark is durable once purge returns");
    let first = purged.map_or(0, |p| p + 1);
    let left = store.try_get_log_entries(first..10).await.unwrap();
    assert_eq!(left.len() as u64, 10 - first, "every entry after the mark is there");
}

/// A crash between the durable purged mark and the (unsynced) deletes can leave entries
/// at or below the mark, even all of them below it when a follower purged to a snapshot
/// past its log. The restarted log must start after the mark, with those entries gone.
#[tokio::test]
async fn entries_left_below_the_purged_mark_by_a_crash_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let state = MemoryEngine::new();
    let (engine, mut store) = open(dir.path(), &state);
    let mut batch = WriteBatch::new();
    for i in 0..=49 {
        batch.put(log_key(9, i).to_vec(), encode(&entry(i)).unwrap());
    }
    engine.write(LOG_TREE, batch).unwrap();
    // The mark of a purge to index 53 made durable; the deletes lost.
    store.write_state(PURGED, &entry(53).log_id()).unwrap();
    engine.flush().unwrap();
    let st = store.get_log_state().await.unwrap();
    assert_eq!(st.last_purged_log_id.map(|id| id.index()), Some(53));
    assert_eq!(st.last_log_id.map(|id| id.index()), Some(53), "the log never ends below its purged mark");
    assert!(store.try_get_log_entries(0..54).await.unwrap().is_empty(), "the stale entries are gone");
}
