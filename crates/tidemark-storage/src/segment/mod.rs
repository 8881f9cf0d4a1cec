//! [`SegmentedEngine`]: the production engine. One tree — the Raft log, which holds every
//! record batch — lives in append-only segment files ([`SegmentLog`]); every other tree
//! (votes and other small state) lives in an inner engine, sled in production.
//!
//! ```text
//!            Engine calls
//!                 │
//!      tree == log tree ? ──yes──▶ SegmentLog (segments/NNN.log, one fdatasync per flush)
//!                 │no
//!                 ▼
//!          inner engine (sled; flushed only when it was written since the last flush)
//! ```
//!
//! The split exists for throughput and memory: sled rewrote large values into blob files,
//! kept every inserted value alive in memory, and needed a whole-file-system `syncfs` per
//! group commit to be durable. The segment log writes each batch once and syncs one file.

mod compact;
mod frame;
mod log;
mod recover;
mod sealed;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

pub use compact::Compaction;
pub use log::{SegmentLog, DEFAULT_SEGMENT_BYTES};

use crate::{range_is_empty, Engine, Result, WriteBatch};

/// An [`Engine`] that keeps `log_tree` in a [`SegmentLog`] and everything else in `E`.
pub struct SegmentedEngine<E> {
    log_tree: String,
    log: SegmentLog,
    inner: E,
    /// The inner engine was written since its last flush. Votes are the only regular
    /// writes there, so most group commits skip its (costly) flush.
    inner_dirty: AtomicBool,
}

impl<E> std::fmt::Debug for SegmentedEngine<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentedEngine").field("log_tree", &self.log_tree).finish_non_exhaustive()
    }
}

#[cfg(not(madsim))]
impl SegmentedEngine<crate::SledEngine> {
    /// Opens a node's data directory: segments in `dir/log`, sled in `dir/state`.
    /// Blocking (replays the log). Refuses a directory laid out by an older release, in
    /// which sled held the whole log, rather than start empty beside it.
    pub fn open_data_dir(dir: &Path, log_tree: &str, segment_bytes: u64) -> Result<Self> {
        if dir.join("conf").exists() && dir.join("db").exists() {
            return Err(crate::StorageError::Corrupt {
                op: "open",
                message: format!(
                    "{} holds data in the old all-sled layout, which this release cannot read; \
                     move it aside (or delete it) and start the node again",
                    dir.display()
                ),
            });
        }
        let inner = crate::SledEngine::open(&dir.join("state"))?;
        Self::open(&dir.join("log"), log_tree, inner, segment_bytes)
    }
}

impl<E: Engine> SegmentedEngine<E> {
    /// Opens (replaying) the segment log in `log_dir` for `log_tree`, beside `inner`.
    pub fn open(log_dir: &Path, log_tree: &str, inner: E, segment_bytes: u64) -> Result<Self> {
        let log = SegmentLog::open(log_dir, segment_bytes)?;
        Ok(SegmentedEngine { log_tree: log_tree.to_owned(), log, inner, inner_dirty: AtomicBool::new(false) })
    }

    /// The segment log itself, for tests of recovery and space reclamation.
    pub fn log(&self) -> &SegmentLog {
        &self.log
    }

    fn is_log(&self, tree: &str) -> bool {
        tree == self.log_tree
    }

    /// Runs a write on the inner engine and remembers that it needs a flush. Marked after
    /// the write returns, so a flush that starts later always sees the mark.
    fn inner_write(&self, write: impl FnOnce(&E) -> Result<()>) -> Result<()> {
        write(&self.inner)?;
        self.inner_dirty.store(true, Ordering::SeqCst);
        Ok(())
    }
}

impl<E: Engine> Engine for SegmentedEngine<E> {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.is_log(tree) {
            self.log.get(key)
        } else {
            self.inner.get(tree, key)
        }
    }

    fn put(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<()> {
        if self.is_log(tree) {
            let mut b = WriteBatch::new();
            b.put(key, value);
            self.log.write(b)
        } else {
            self.inner_write(|e| e.put(tree, key, value))
        }
    }

    fn delete(&self, tree: &str, key: &[u8]) -> Result<()> {
        if self.is_log(tree) {
            let mut b = WriteBatch::new();
            b.delete(key);
            self.log.write(b)
        } else {
            self.inner_write(|e| e.delete(tree, key))
        }
    }

    fn write(&self, tree: &str, batch: WriteBatch) -> Result<()> {
        if self.is_log(tree) {
            self.log.write(batch)
        } else {
            self.inner_write(|e| e.write(tree, batch))
        }
    }

    fn range(&self, tree: &str, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if !self.is_log(tree) {
            return self.inner.range(tree, start, end, limit);
        }
        if range_is_empty(start, end) || limit == 0 {
            return Ok(Vec::new());
        }
        self.log.range(start, end, limit)
    }

    fn last_in_range(&self, tree: &str, start: &[u8], end: Option<&[u8]>) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if !self.is_log(tree) {
            return self.inner.last_in_range(tree, start, end);
        }
        if range_is_empty(start, end) {
            return Ok(None);
        }
        self.log.last_in_range(start, end)
    }

    fn delete_range(&self, tree: &str, start: &[u8], end: Option<&[u8]>) -> Result<()> {
        if range_is_empty(start, end) {
            return Ok(());
        }
        if self.is_log(tree) {
            self.log.delete_range(start, end)
        } else {
            self.inner_write(|e| e.delete_range(tree, start, end))
        }
    }

    /// Compacts the segment log, copying at most 64 MiB per call (emptied segments cost
    /// nothing to remove). When there was nothing to copy, checks up to 32 MiB of sealed
    /// segments for rot instead (all of a GiB every few minutes at the default 5 s
    /// retention check).
    fn maintain(&self) -> Result<u64> {
        let rewritten = self.log.compact(64 << 20)?.bytes_rewritten;
        if rewritten == 0 {
            self.log.scrub(32 << 20)?;
        }
        Ok(rewritten)
    }

    fn damage_report(&self) -> Option<String> {
        self.log.damage_report()
    }

    fn clear_damage(&self) -> Result<()> {
        self.log.clear_damage()
    }

    fn flush(&self) -> Result<()> {
        self.log.flush()?;
        if self.inner_dirty.swap(false, Ordering::SeqCst) {
            if let Err(e) = self.inner.flush() {
                self.inner_dirty.store(true, Ordering::SeqCst);
                return Err(e);
            }
        }
        Ok(())
    }
}
