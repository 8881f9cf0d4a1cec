//! Damage to synced data in the segment log: found at open or on read, cut back to the
//! last intact frame, and reported durably until the layer above has repaired it. A torn,
//! unsynced tail is not damage (see segment_engine.rs).
#![cfg(not(madsim))]

use std::os::unix::fs::FileExt;
use std::path::Path;

use tidemark_storage::{Engine, StorageError};

mod common;
use common::{key, keys, open, segments, LOG};

/// Writes `n` values of 80 bytes, one flush (group commit) each, as the log store does.
fn write_synced(e: &dyn Engine, keys: std::ops::Range<u64>) {
    for i in keys {
        e.put(LOG, &key(i), &[i as u8; 80]).unwrap();
        e.flush().unwrap();
    }
}

fn flip_byte(path: &Path, at: u64) {
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8];
    file.read_exact_at(&mut b, at).unwrap();
    file.write_all_at(&[b[0] ^ 0x5a], at).unwrap();
}

/// Where the value of the frame holding `i` begins: the byte pattern is unique per key.
fn value_offset(path: &Path, i: u64) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    bytes.windows(80).position(|w| w.iter().all(|&b| b == i as u8)).unwrap() as u64
}

#[test]
fn damage_inside_a_sealed_segment_cuts_the_log_back_and_is_reported_until_cleared() {
    let dir = tempfile::tempdir().unwrap();
    write_synced(&open(dir.path(), 256), 0..12);
    let files = segments(dir.path());
    assert!(files.len() >= 3, "256-byte segments must have rolled: {files:?}");
    // Rot in the second segment, which was synced whole when it was sealed.
    let rotten = &files[1];
    let first_in_it = (0..12).find(|&i| std::fs::read(rotten).unwrap().windows(80).any(|w| w == [i as u8; 80]));
    let first_in_it = first_in_it.unwrap();
    flip_byte(rotten, value_offset(rotten, first_in_it) + 5);
    // Without its index file (a crash before it was written, or an older release), a
    // sealed segment is replayed and checked in full. (With one, the rot is found when
    // the value is read: see the test below.)
    std::fs::remove_file(rotten.with_extension("idx")).unwrap();

    let e = open(dir.path(), 256);
    let report = e.damage_report().expect("damage to a sealed segment must be reported");
    assert!(report.contains("CRC mismatch") && report.contains(&rotten.display().to_string()), "{report}");
    // What is left is a prefix of what was written: nothing after the damage survives,
    // so no delete the damaged frame may have held can be lost.
    assert_eq!(keys(&e), (0..first_in_it).collect::<Vec<_>>());
    assert_eq!(segments(dir.path()).len(), 2, "segments after the damaged one are removed");
    // Writing goes on, and the report survives a restart until it is cleared.
    write_synced(&e, 100..101);
    drop(e);
    let e = open(dir.path(), 256);
    assert!(e.damage_report().is_some(), "the report must be durable");
    assert_eq!(*keys(&e).last().unwrap(), 100);
    e.clear_damage().unwrap();
    drop(e);
    assert_eq!(open(dir.path(), 256).damage_report(), None);
}

#[test]
fn damage_to_synced_data_in_the_newest_segment_is_not_taken_for_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    write_synced(&open(dir.path(), 1 << 20), 0..10);
    let newest = segments(dir.path()).pop().unwrap();
    // Value 4 was synced, and later frames (written after later syncs) record that.
    flip_byte(&newest, value_offset(&newest, 4) + 40);
    let e = open(dir.path(), 1 << 20);
    let report = e.damage_report().expect("damage before synced frames must be reported");
    assert!(report.contains("inside data synced up to byte"), "{report}");
    assert_eq!(keys(&e), vec![0, 1, 2, 3]);
}

#[test]
fn a_truncated_sealed_segment_is_damage_even_at_a_frame_boundary() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = open(dir.path(), 200);
        write_synced(&e, 0..3);
        // Values 0 and 1 seal the first segment; chop its last frame off whole.
        e.flush().unwrap();
    }
    let first = &segments(dir.path())[0];
    let cut = value_offset(first, 1) - 12 - 2 - 8 - 4 - 1;
    std::fs::OpenOptions::new().write(true).open(first).unwrap().set_len(cut).unwrap();
    let e = open(dir.path(), 200);
    let report = e.damage_report().expect("a truncated sealed segment must be reported");
    assert!(report.contains("truncated"), "{report}");
    assert_eq!(keys(&e), vec![0]);
}

#[test]
fn rot_in_a_sealed_segment_opened_from_its_index_is_found_by_the_scrub_and_refused_on_read() {
    let dir = tempfile::tempdir().unwrap();
    write_synced(&open(dir.path(), 256), 0..12);
    let rotten = segments(dir.path())[1].clone();
    let i = (0..12).find(|&i| std::fs::read(&rotten).unwrap().windows(80).any(|w| w == [i as u8; 80])).unwrap();
    flip_byte(&rotten, value_offset(&rotten, i) + 5);
    let e = open(dir.path(), 256);
    assert_eq!(e.damage_report(), None, "opened from index files, without reading the values");
    let err = e.log().scrub(u64::MAX).unwrap_err();
    assert!(err.to_string().contains("background check"), "the scrub finds it: {err}");
    assert!(e.damage_report().unwrap().contains(&rotten.display().to_string()));
    let err = e.get(LOG, &key(i)).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    assert!(e.damage_report().is_some());
}

#[test]
fn a_value_that_rots_after_open_is_refused_on_read_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path(), 1 << 20);
    write_synced(&e, 0..3);
    let newest = segments(dir.path()).pop().unwrap();
    flip_byte(&newest, value_offset(&newest, 1));
    assert_eq!(e.get(LOG, &key(0)).unwrap(), Some(vec![0; 80]));
    let err = e.get(LOG, &key(1)).unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }) && err.to_string().contains("checksum"), "{err}");
    let err = e.range(LOG, &key(0), None, 10).unwrap_err();
    assert!(err.to_string().contains("checksum"), "a range read must not serve the rotten value: {err}");
    assert!(e.damage_report().unwrap().contains("fail their checksum"));
    drop(e);
    assert!(open(dir.path(), 1 << 20).damage_report().is_some(), "the report is durable");
}

#[test]
fn the_scrub_checks_every_sealed_segment_a_piece_at_a_time_and_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path(), 256);
    write_synced(&e, 0..12);
    let sealed: u64 = segments(dir.path()).iter().rev().skip(1).map(|p| std::fs::metadata(p).unwrap().len()).sum();
    let mut checked = 0;
    for _ in 0..100 {
        checked += e.log().scrub(100).unwrap();
        if checked >= sealed {
            break;
        }
    }
    assert_eq!(checked, sealed, "every sealed byte is checked, in pieces");
    assert!(e.log().scrub(u64::MAX).unwrap() > 0, "then it starts over");
    assert_eq!(e.damage_report(), None);
}
