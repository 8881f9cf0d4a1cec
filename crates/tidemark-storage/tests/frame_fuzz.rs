//! Property tests of opening a segment log whose files were damaged in arbitrary ways:
//! garbage after the last frame, rot anywhere in a segment, rot or cuts in an index file.
//! Whatever the damage, opening never panics and never allocates by what a damaged
//! length field claims, and the log never serves a wrong value: what survives is a
//! prefix of what was written, and each value reads back intact or as an error.
//! `segment_damage.rs` checks chosen damage scenarios and their reports in detail;
//! `src/segment/frame_tests.rs` checks the frame codec itself.
#![cfg(not(madsim))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::collection::vec;
use proptest::prelude::*;
use tidemark_storage::Engine;

mod common;
use common::{key, keys, open, segments, LOG};

const MAGIC: [u8; 4] = *b"GSMT";
const WRITTEN: u64 = 12;
/// The most opening a damaged log may hold at once: its 1 MiB read buffer, the index
/// and a few small frames, never a buffer sized by a damaged length (up to 1 GiB).
const PEAK_LIMIT: usize = 8 << 20;

struct Counting;

thread_local! {
    static HELD: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn count(grow: usize, shrink: usize) {
    let _ = HELD.try_with(|held| {
        let now = (held.get() + grow).saturating_sub(shrink);
        held.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call goes straight to `System`; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size(), 0);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(0, layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size, layout.size());
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A log of 12 synced values over several 256-byte segments, sealed ones with their
/// index files; written once, copied for each case.
fn fixture() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path(), 256);
        for i in 0..WRITTEN {
            e.put(LOG, &key(i), &value(i)).unwrap();
            e.flush().unwrap();
        }
        dir
    })
    .path()
}

fn value(i: u64) -> Vec<u8> {
    vec![i as u8; 80]
}

fn copy_of_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn files_with(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == extension))
        .collect();
    files.sort();
    files
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    std::fs::OpenOptions::new().append(true).open(path).unwrap().write_all(bytes).unwrap();
}

/// Opens the log in `dir`, asserting it stayed within [`PEAK_LIMIT`] while doing so.
fn open_measured(dir: &Path) -> impl Engine {
    let base = HELD.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let e = open(dir, 256);
    let peak = PEAK.with(Cell::get) - base;
    assert!(peak <= PEAK_LIMIT, "opening held {peak} bytes at once");
    e
}

/// What survived is the first few values written, each read back intact or refused
/// (rot found by its checksum), never wrong. Returns how many survived. Keys are probed
/// one by one: a range read stops at the first rotten value.
fn serves_a_prefix(e: &impl Engine) -> Result<usize, TestCaseError> {
    let present: Vec<bool> = (0..WRITTEN)
        .map(|i| match e.get(LOG, &key(i)) {
            Ok(Some(found)) => {
                assert_eq!(found, value(i), "value {i} read back wrong");
                true
            }
            Ok(None) => false,
            Err(_) => true,
        })
        .collect();
    let survived = present.iter().take_while(|&&p| p).count();
    prop_assert!(present[survived..].iter().all(|&p| !p), "not a prefix: {:?}", present);
    Ok(survived)
}

/// Garbage after the last frame: random bytes, or a frame header with a random length
/// and whatever follows.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    let header = (any::<u32>(), any::<u32>(), vec(any::<u8>(), 0..64)).prop_map(|(len, crc, rest)| {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&crc.to_le_bytes());
        b.extend_from_slice(&rest);
        b
    });
    prop_oneof![vec(any::<u8>(), 1..64), header]
}

/// The regression: a frame header at the tail claiming a 512 MiB payload (a torn write,
/// or a flipped bit in its length) made opening allocate and zero 512 MiB before finding
/// the file far too short. The check against the file length now comes first.
#[test]
fn a_frame_claiming_more_than_the_file_holds_is_not_allocated() {
    let dir = copy_of_fixture();
    let mut header = MAGIC.to_vec();
    header.extend_from_slice(&(512u32 << 20).to_le_bytes());
    header.extend_from_slice(&[0; 8]);
    append(segments(dir.path()).last().unwrap(), &header);
    let e = open_measured(dir.path());
    assert_eq!(keys(&e), (0..WRITTEN).collect::<Vec<_>>());
    assert_eq!(e.damage_report(), None, "an unsynced torn tail is not damage");
    drop(e);

    // The same length in the last frame of a sealed segment replayed without its index
    // file: damage, reported, and still not allocated.
    let first = segments(dir.path())[0].clone();
    std::fs::remove_file(first.with_extension("idx")).unwrap();
    let mut bytes = std::fs::read(&first).unwrap();
    let last = frame_starts(&bytes).pop().unwrap();
    bytes[last + 4..last + 8].copy_from_slice(&(512u32 << 20).to_le_bytes());
    std::fs::write(&first, bytes).unwrap();
    let e = open_measured(dir.path());
    assert!(e.damage_report().unwrap().contains("cut-short frame"), "{:?}", e.damage_report());
    assert!(keys(&e).len() < WRITTEN as usize);
}

/// Where each frame of an intact segment file starts.
fn frame_starts(bytes: &[u8]) -> Vec<usize> {
    let (mut starts, mut at) = (Vec::new(), 0);
    while at + 12 <= bytes.len() {
        starts.push(at);
        at += 12 + u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
    }
    starts
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Garbage after the last whole frame is a torn tail: cut off, nothing lost, no report.
    #[test]
    fn garbage_at_the_tail_is_cut_and_nothing_is_lost(garbage in garbage()) {
        let dir = copy_of_fixture();
        append(segments(dir.path()).last().unwrap(), &garbage);
        let e = open_measured(dir.path());
        prop_assert_eq!(serves_a_prefix(&e)?, WRITTEN as usize);
        prop_assert_eq!(e.damage_report(), None);
    }

    /// An index file is only a shortcut: one cut short or rotten anywhere is not trusted,
    /// and the log reads exactly as before.
    #[test]
    fn a_damaged_index_file_changes_nothing(
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        xor in 1u8..,
        cut: bool,
    ) {
        let dir = copy_of_fixture();
        let indexes = files_with(dir.path(), "idx");
        let path = which.get(&indexes);
        let mut bytes = std::fs::read(path).unwrap();
        let at = at.index(bytes.len());
        if cut { bytes.truncate(at) } else { bytes[at] ^= xor }
        std::fs::write(path, bytes).unwrap();
        let e = open_measured(dir.path());
        prop_assert_eq!(serves_a_prefix(&e)?, WRITTEN as usize);
        prop_assert!((0..WRITTEN).all(|i| e.get(LOG, &key(i)).is_ok()));
        prop_assert_eq!(e.damage_report(), None);
    }

    /// Rot anywhere in the segments, with or without the index files: opening succeeds
    /// and the log serves a prefix of what was written, each value intact or refused.
    #[test]
    fn rot_anywhere_never_serves_a_wrong_value(
        rot in vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), 1u8..), 1..4),
        drop_indexes: bool,
    ) {
        let dir = copy_of_fixture();
        let logs = segments(dir.path());
        for (which, at, xor) in rot {
            let path = which.get(&logs);
            let mut bytes = std::fs::read(path).unwrap();
            let at = at.index(bytes.len());
            bytes[at] ^= xor;
            std::fs::write(path, bytes).unwrap();
        }
        if drop_indexes {
            files_with(dir.path(), "idx").iter().for_each(|p| std::fs::remove_file(p).unwrap());
        }
        let e = open_measured(dir.path());
        serves_a_prefix(&e)?;
    }
}
