//! The segmented engine (segment log + inner engine): it conforms like every engine, and
//! its log survives restarts, cuts off torn tails and gives back the
//! space of dead segments.
#![cfg(not(madsim))]

use std::cell::Cell;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use tidemark_storage::{conformance, Engine, MemoryEngine, SegmentedEngine, SharedEngine, WriteBatch};

mod common;
use common::{key, keys, open, segments, LOG};

/// The log tree is the one most conformance checks use ("t"), then the other tree the
/// isolation check uses ("a"), so both the segment log and the routing are covered.
#[test]
fn segmented_engine_conforms() {
    let root = tempfile::tempdir().unwrap();
    let next = Cell::new(0u32);
    for tree in ["t", "a"] {
        conformance::run_all(&|| {
            let n = next.get();
            next.set(n + 1);
            let dir = root.path().join(format!("log-{n}"));
            Arc::new(SegmentedEngine::open(&dir, tree, MemoryEngine::new(), 4096).unwrap()) as SharedEngine
        });
    }
}

#[test]
fn flushed_writes_deletes_and_truncations_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = open(dir.path(), 1024);
        for i in 0..50u64 {
            let mut b = WriteBatch::new();
            b.put(key(i), vec![i as u8; 100]);
            e.write(LOG, b).unwrap();
        }
        e.delete_range(LOG, &key(0), Some(&key(10))).unwrap(); // a purged prefix
        e.delete_range(LOG, &key(40), None).unwrap(); // a truncated suffix
        e.put(LOG, &key(40), b"rewritten").unwrap();
        e.delete(LOG, &key(20)).unwrap();
        e.flush().unwrap();
        assert!(e.log().segment_count() > 1, "1 KiB segments must have rolled");
    }
    let e = open(dir.path(), 1024);
    let want: Vec<u64> = (10..40).filter(|&i| i != 20).chain([40]).collect();
    assert_eq!(keys(&e), want);
    assert_eq!(e.get(LOG, &key(15)).unwrap(), Some(vec![15; 100]));
    assert_eq!(e.get(LOG, &key(40)).unwrap(), Some(b"rewritten".to_vec()));
    e.put(LOG, &key(41), b"after restart").unwrap();
    e.flush().unwrap();
    drop(e);
    assert_eq!(open(dir.path(), 1024).get(LOG, &key(41)).unwrap(), Some(b"after restart".to_vec()));
}

fn newest_segment(dir: &Path) -> std::path::PathBuf {
    segments(dir).pop().unwrap()
}

#[test]
fn a_torn_write_at_the_tail_is_cut_off_and_writing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = open(dir.path(), 1 << 20);
        e.put(LOG, &key(1), b"one").unwrap();
        e.put(LOG, &key(2), b"two").unwrap();
        e.flush().unwrap();
    }
    let tail = newest_segment(dir.path());
    let len = std::fs::metadata(&tail).unwrap().len();
    // A crash in the middle of the second frame: its last bytes never reached the disk.
    OpenOptions::new().write(true).open(&tail).unwrap().set_len(len - 2).unwrap();
    let e = open(dir.path(), 1 << 20);
    assert_eq!(keys(&e), vec![1]);
    e.put(LOG, &key(3), b"three").unwrap();
    e.flush().unwrap();
    drop(e);
    // Garbage after the last whole frame (a frame whose header made it, payload not).
    OpenOptions::new().append(true).open(&tail).unwrap().write_all(&[0x47, 0x53, 0x4d, 0x54, 9, 0, 0, 0]).unwrap();
    let e = open(dir.path(), 1 << 20);
    assert_eq!(keys(&e), vec![1, 3]);
    assert_eq!(e.damage_report(), None, "a torn, unsynced tail is not damage");
    assert_eq!(e.get(LOG, &key(3)).unwrap(), Some(b"three".to_vec()));
}

#[test]
fn segments_whose_values_are_all_deleted_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path(), 256);
    for i in 0..40u64 {
        e.put(LOG, &key(i), &[1u8; 100]).unwrap();
    }
    e.flush().unwrap();
    let before = e.log().segment_count();
    assert!(before >= 10, "expected many 256-byte segments, got {before}");
    e.delete_range(LOG, &key(0), Some(&key(30))).unwrap();
    e.flush().unwrap();
    let after = e.log().segment_count();
    assert!(after <= before - 8, "dead segments stay: {before} -> {after}");
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    let with = |ext: &str| files.iter().filter(|p| p.extension().is_some_and(|x| x == ext)).count();
    assert_eq!((with("log"), with("idx")), (after, after - 1), "segments (and their index files) on disk match");
    assert_eq!(files.len(), 2 * after - 1, "nothing else is left behind");
    drop(e);
    assert_eq!(keys(&open(dir.path(), 256)), (30..40).collect::<Vec<_>>(), "deleted values stay deleted");
}

#[test]
fn writes_to_other_trees_go_to_the_inner_engine() {
    let dir = tempfile::tempdir().unwrap();
    let inner = MemoryEngine::new();
    let e = SegmentedEngine::open(dir.path(), LOG, inner.clone(), 1 << 20).unwrap();
    e.put("raft_state", b"vote", b"v").unwrap();
    e.put(LOG, &key(1), b"x").unwrap();
    assert_eq!(inner.get("raft_state", b"vote").unwrap(), Some(b"v".to_vec()));
    assert_eq!(inner.get(LOG, &key(1)).unwrap(), None, "log entries never reach the inner engine");
    let flushes = inner.flush_count();
    e.flush().unwrap();
    assert_eq!(inner.flush_count(), flushes + 1, "a dirty inner engine is flushed");
    e.put(LOG, &key(2), b"y").unwrap();
    e.flush().unwrap();
    assert_eq!(inner.flush_count(), flushes + 1, "a clean inner engine is not flushed again");
}

#[test]
fn a_data_dir_of_the_old_all_sled_layout_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    drop(tidemark_storage::SledEngine::open(dir.path()).unwrap());
    let err =
        SegmentedEngine::open_data_dir(dir.path(), LOG, tidemark_storage::segment::DEFAULT_SEGMENT_BYTES).unwrap_err();
    assert!(err.to_string().contains("old all-sled layout") && err.to_string().contains("move it aside"), "{err}");
}

#[test]
fn a_fresh_data_dir_keeps_log_and_state_apart_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e =
            SegmentedEngine::open_data_dir(dir.path(), LOG, tidemark_storage::segment::DEFAULT_SEGMENT_BYTES).unwrap();
        e.put(LOG, &key(1), b"entry").unwrap();
        e.put("raft_state", b"vote", b"v").unwrap();
        e.flush().unwrap();
    }
    assert!(dir.path().join("log").is_dir() && dir.path().join("state").is_dir());
    let e = SegmentedEngine::open_data_dir(dir.path(), LOG, tidemark_storage::segment::DEFAULT_SEGMENT_BYTES).unwrap();
    assert_eq!(e.get(LOG, &key(1)).unwrap(), Some(b"entry".to_vec()));
    assert_eq!(e.get("raft_state", b"vote").unwrap(), Some(b"v".to_vec()));
}

/// One long-lived value (a long-retention topic's batch) among a stream of values that
/// die soon after they are written (a short-retention topic): without compaction the
/// long-lived value pins every segment after it; with it the disk stays bounded, and a
/// reopen sees exactly the live values.
#[test]
fn a_long_lived_value_does_not_pin_the_dead_segments_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let pinned = key(u64::MAX);
    let mut rewritten = 0;
    {
        let e = open(dir.path(), 4096);
        e.put(LOG, &pinned, b"kept for a long time").unwrap();
        for i in 0..400u64 {
            e.put(LOG, &key(i), &[i as u8; 500]).unwrap();
            if i >= 5 {
                e.delete_range(LOG, &key(0), Some(&key(i - 4))).unwrap(); // retention
            }
            e.flush().unwrap();
            if i % 20 == 19 {
                rewritten += e.maintain().unwrap();
            }
        }
        let (size, live) = e.log().disk_usage();
        assert!(e.log().segment_count() <= 6, "{} segments left for ~3 KiB of live data", e.log().segment_count());
        assert!(size <= 6 * 4096 + 4096, "{size} bytes on disk for {live} live");
        assert!(rewritten > 0, "the pinned value was copied forward");
        // Written: 400 values of 500 bytes; copied again: a small fraction of that.
        assert!(rewritten < 400 * 500 / 2, "rewrote {rewritten} bytes");
    }
    let e = open(dir.path(), 4096);
    assert_eq!(e.get(LOG, &pinned).unwrap().as_deref(), Some(&b"kept for a long time"[..]));
    assert_eq!(keys(&e), vec![395, 396, 397, 398, 399, u64::MAX], "deleted values stay deleted after reopen");
}

/// The oldest segment holds one small survivor (the metadata group's first entry, say)
/// while everything after it is live: the whole log is far from half dead, but that one
/// value must still not keep the segment on disk.
#[test]
fn a_mostly_dead_oldest_segment_is_emptied_even_when_the_rest_is_live() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path(), 4096);
    e.put(LOG, &key(u64::MAX), b"survivor").unwrap();
    for i in 0..7u64 {
        e.put(LOG, &key(i), &[1; 500]).unwrap(); // the rest of segment 1, deleted below
    }
    for i in 100..140u64 {
        e.put(LOG, &key(i), &[2; 500]).unwrap(); // live data in the later segments
    }
    e.delete_range(LOG, &key(0), Some(&key(7))).unwrap();
    e.flush().unwrap();
    let first = dir.path().join(format!("{:020}.log", 1));
    assert!(first.exists());
    let (size, live) = e.log().disk_usage();
    assert!(live * 2 > size, "the log as a whole is mostly live ({live} of {size})");
    e.maintain().unwrap();
    assert!(!first.exists(), "the oldest segment was emptied and removed");
    drop(e);
    let e = open(dir.path(), 4096);
    assert_eq!(e.get(LOG, &key(u64::MAX)).unwrap().as_deref(), Some(&b"survivor"[..]));
    assert_eq!(keys(&e).len(), 41);
}

/// Sealed segments reopen from their index files (values are not read); a missing, cut
/// short or damaged index file is not trusted: the segment is replayed instead, and its
/// index written again.
#[test]
fn sealed_segments_reopen_from_their_index_files_and_bad_ones_are_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let expected = {
        let e = open(dir.path(), 1024);
        for i in 0..120u64 {
            e.put(LOG, &key(i), &vec![i as u8; 100 + i as usize]).unwrap();
            if i % 10 == 9 {
                e.flush().unwrap();
            }
        }
        e.delete_range(LOG, &key(0), Some(&key(7))).unwrap();
        e.delete(LOG, &key(50)).unwrap();
        e.put(LOG, &key(60), b"rewritten").unwrap();
        e.flush().unwrap();
        assert!(e.log().segment_count() > 10);
        assert_eq!(e.log().indexed_segments(), e.log().segment_count() - 1, "every sealed segment is indexed");
        e.range(LOG, b"", None, usize::MAX).unwrap()
    };
    let reopened = open(dir.path(), 1024);
    assert_eq!(reopened.range(LOG, b"", None, usize::MAX).unwrap(), expected);
    drop(reopened);

    let mut indexes: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "idx"))
        .collect();
    indexes.sort();
    std::fs::remove_file(&indexes[0]).unwrap();
    let bytes = std::fs::read(&indexes[1]).unwrap();
    std::fs::write(&indexes[1], &bytes[..bytes.len() - 5]).unwrap();
    let mut bytes = std::fs::read(&indexes[2]).unwrap();
    bytes[20] ^= 0xff;
    std::fs::write(&indexes[2], bytes).unwrap();
    let e = open(dir.path(), 1024);
    assert_eq!(e.range(LOG, b"", None, usize::MAX).unwrap(), expected);
    assert_eq!(e.log().indexed_segments(), e.log().segment_count() - 1, "the bad index files were rewritten");
}
