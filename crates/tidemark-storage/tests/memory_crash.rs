//! MemoryEngine's durability model: what a simulated crash keeps and loses.

use tidemark_storage::{Engine, MemoryEngine, StorageError, WriteBatch};

fn keys(e: &MemoryEngine, tree: &str) -> Vec<Vec<u8>> {
    e.range(tree, b"", None, usize::MAX).unwrap().into_iter().map(|(k, _)| k).collect()
}

#[test]
fn unsynced_writes_are_lost_on_crash_zero() {
    let e = MemoryEngine::new();
    e.put("t", b"a", b"1").unwrap();
    e.put("t", b"b", b"2").unwrap();
    assert_eq!(e.unsynced_len(), 2);
    e.crash(0);
    assert_eq!(keys(&e, "t"), Vec::<Vec<u8>>::new());
    assert_eq!(e.unsynced_len(), 0);
    assert_eq!(e.crash_count(), 1);
}

#[test]
fn crash_keeps_a_prefix_of_unsynced_ops() {
    let e = MemoryEngine::new();
    e.put("t", b"a", b"1").unwrap();
    let mut batch = WriteBatch::new();
    batch.put(b"b".to_vec(), b"2".to_vec());
    batch.put(b"c".to_vec(), b"3".to_vec());
    e.write("t", batch).unwrap();
    e.put("t", b"d", b"4").unwrap();
    assert_eq!(e.unsynced_len(), 3, "a batch is one op");
    e.crash(2);
    assert_eq!(keys(&e, "t"), vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    // What survived a crash is on disk: a second crash keeps it.
    e.crash(0);
    assert_eq!(keys(&e, "t").len(), 3);
    // A keep count above the unsynced length keeps everything.
    e.put("t", b"e", b"5").unwrap();
    e.crash(100);
    assert_eq!(keys(&e, "t").len(), 4);
}

#[test]
fn flushed_writes_survive_and_later_ones_do_not() {
    let e = MemoryEngine::new();
    e.put("t", b"a", b"1").unwrap();
    e.put("t", b"b", b"1").unwrap();
    e.flush().unwrap();
    assert_eq!(e.unsynced_len(), 0);
    e.put("t", b"a", b"2").unwrap();
    e.delete("t", b"b").unwrap();
    e.put("t", b"c", b"2").unwrap();
    e.crash(0);
    assert_eq!(e.get("t", b"a").unwrap(), Some(b"1".to_vec()), "overwrite undone");
    assert_eq!(e.get("t", b"b").unwrap(), Some(b"1".to_vec()), "delete undone");
    assert_eq!(e.get("t", b"c").unwrap(), None, "new key lost");
    assert_eq!(e.flush_count(), 1);
}

#[test]
fn clones_share_state_across_incarnations() {
    let harness = MemoryEngine::new();
    let first = harness.clone();
    first.put("t", b"synced", b"1").unwrap();
    first.flush().unwrap();
    first.put("t", b"unsynced", b"1").unwrap();
    drop(first);
    harness.crash(0);
    let second = harness.clone();
    assert_eq!(second.get("t", b"synced").unwrap(), Some(b"1".to_vec()));
    assert_eq!(second.get("t", b"unsynced").unwrap(), None);
}

#[test]
fn fsync_noop_makes_crash_lose_flushed_writes() {
    let e = MemoryEngine::new();
    e.put("t", b"before", b"1").unwrap();
    e.flush().unwrap();
    e.set_fsync_noop(true);
    e.put("t", b"a", b"1").unwrap();
    e.flush().expect("the planted bug claims success");
    assert_eq!(e.unsynced_len(), 1);
    e.crash(0);
    assert_eq!(keys(&e, "t"), vec![b"before".to_vec()]);
    e.set_fsync_noop(false);
    e.put("t", b"b", b"1").unwrap();
    e.flush().unwrap();
    e.crash(0);
    assert_eq!(keys(&e, "t"), vec![b"b".to_vec(), b"before".to_vec()]);
}

#[test]
fn fsync_error_returns_err_and_syncs_nothing() {
    let e = MemoryEngine::new();
    e.put("t", b"a", b"1").unwrap();
    e.set_fsync_error(true);
    let err = e.flush().unwrap_err();
    assert!(matches!(err, StorageError::FsyncFailed { .. }), "{err:?}");
    assert_eq!(e.unsynced_len(), 1);
    assert_eq!(e.flush_count(), 1);
    e.crash(0);
    assert_eq!(e.get("t", b"a").unwrap(), None);
    e.set_fsync_error(false);
    e.flush().unwrap();
}

#[test]
fn unsynced_delete_range_is_undone_by_crash() {
    let e = MemoryEngine::new();
    for n in 0u64..10 {
        e.put("log", &n.to_be_bytes(), b"v").unwrap();
    }
    e.put("other", b"k", b"v").unwrap();
    e.flush().unwrap();
    e.delete_range("log", &0u64.to_be_bytes(), Some(&5u64.to_be_bytes())).unwrap();
    assert_eq!(keys(&e, "log").len(), 5);
    assert_eq!(e.unsynced_len(), 1, "a range delete is one op");
    e.crash(0);
    assert_eq!(keys(&e, "log").len(), 10, "deleted keys restored");
    e.delete_range("log", &0u64.to_be_bytes(), Some(&5u64.to_be_bytes())).unwrap();
    e.flush().unwrap();
    e.crash(0);
    assert_eq!(keys(&e, "log").len(), 5, "flushed range delete stays");
    assert_eq!(e.get("other", b"k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn torn_tail_keeps_batches_whole() {
    for keep in 0..=5 {
        let e = MemoryEngine::new();
        for n in 0u8..5 {
            let mut batch = WriteBatch::new();
            batch.put(vec![n, 0], vec![n]);
            batch.put(vec![n, 1], vec![n]);
            e.write("t", batch).unwrap();
        }
        e.crash(keep);
        let want: Vec<Vec<u8>> = (0..keep as u8).flat_map(|n| [vec![n, 0], vec![n, 1]]).collect();
        assert_eq!(keys(&e, "t"), want, "keep {keep} batches, each whole");
    }
}
