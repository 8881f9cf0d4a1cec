//! What the segment log tests share: an engine over a directory, numbered keys, and the
//! segment files on disk.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};

use tidemark_storage::{Engine, MemoryEngine, SegmentedEngine};

pub const LOG: &str = "raft_log";

pub fn open(dir: &Path, segment_bytes: u64) -> SegmentedEngine<MemoryEngine> {
    SegmentedEngine::open(dir, LOG, MemoryEngine::new(), segment_bytes).unwrap()
}

pub fn key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

/// The keys of the log tree, as numbers, in order.
pub fn keys(engine: &dyn Engine) -> Vec<u64> {
    let rows = engine.range(LOG, b"", None, usize::MAX).unwrap();
    rows.iter().map(|(k, _)| u64::from_be_bytes(k[..8].try_into().unwrap())).collect()
}

/// The segment files in `dir`, oldest first (index files and reports left out).
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}
