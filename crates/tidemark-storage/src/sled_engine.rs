//! [`SledEngine`]: the production engine over sled 0.34 (not compiled under madsim: sled
//! spawns OS threads, which the simulation forbids).
//!
//! Each engine tree is a `sled::Tree` of one `sled::Db`, so one `Db::flush` makes every
//! tree durable with a single fsync — the group commit the Raft log store builds on.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::{range_is_empty, BatchOp, Engine, Result, StorageError, WriteBatch};

/// Page cache size for [`SledEngine::open`]. The engine holds the Raft logs (the record
/// data itself) and small state machine state; reads of recent entries are the hot path,
/// and 256 MiB keeps them cached without crowding a laptop running three nodes.
pub const DEFAULT_CACHE_CAPACITY: u64 = 256 * 1024 * 1024;

/// The sled-backed [`Engine`].
///
/// Configuration choices, and why:
/// - `flush_every_ms(None)`: sled's periodic background fsync is off. Durability is
///   promised only by [`Engine::flush`], which the log store calls once per group commit;
///   a timer-driven fsync would add disk work without adding any guarantee the node could
///   rely on. (sled may still write a full IO buffer early; nothing depends on that.)
/// - `Mode::HighThroughput`: Raft logs are append-heavy with prefix purges; this mode
///   rewrites segments less eagerly than the default `LowSpace`, trading disk for less
///   write amplification.
pub struct SledEngine {
    db: sled::Db,
    /// The database directory, kept open to make sled's writes durable (see `flush`).
    dir: std::fs::File,
    /// `open_tree` takes a lock and does a lookup in sled's meta tree; caching the cheap
    /// (Arc-backed) handles keeps it off every operation.
    trees: RwLock<HashMap<String, sled::Tree>>,
}

impl std::fmt::Debug for SledEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledEngine").finish_non_exhaustive()
    }
}

impl SledEngine {
    /// Opens (creating if needed) the database in `dir` with [`DEFAULT_CACHE_CAPACITY`].
    pub fn open(dir: &Path) -> Result<SledEngine> {
        Self::open_with_cache_capacity(dir, DEFAULT_CACHE_CAPACITY)
    }

    /// Opens (creating if needed) the database in `dir` with a page cache of `bytes`.
    /// Blocking; waits up to two seconds for a lock left by an engine just dropped on the
    /// same directory, then fails (another live engine or process holds it).
    pub fn open_with_cache_capacity(dir: &Path, bytes: u64) -> Result<SledEngine> {
        let db = open_db(dir, bytes)?;
        let dir_file = std::fs::File::open(dir)
            .map_err(|e| StorageError::Io { op: "open", message: format!("path {}: {e}", dir.display()) })?;
        tracing::debug!(path = %dir.display(), cache_bytes = bytes, "opened sled engine");
        Ok(SledEngine { db, dir: dir_file, trees: RwLock::new(HashMap::new()) })
    }

    /// The cached handle of `name`, opening it on first use.
    fn tree(&self, name: &str) -> Result<sled::Tree> {
        // Poisoning is ignored: the map only ever holds fully opened handles.
        if let Some(t) = self.trees.read().unwrap_or_else(PoisonError::into_inner).get(name) {
            return Ok(t.clone());
        }
        let mut trees = self.trees.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = trees.get(name) {
            return Ok(t.clone());
        }
        let tree = self.db.open_tree(name.as_bytes()).map_err(|e| convert("open_tree", &tree_ctx(name), e))?;
        trees.insert(name.to_owned(), tree.clone());
        Ok(tree)
    }
}

/// How long `open` waits for the directory lock of a just-dropped engine: sled releases
/// its `flock` from a background thread after `Db` is dropped (spacejam/sled#1234,
/// #1289), so an in-process restart can race it. A lock held by a live engine outlasts
/// the wait, so opening one directory twice still fails.
const LOCK_WAIT: Duration = Duration::from_secs(2);
const LOCK_RETRY_INTERVAL: Duration = Duration::from_millis(20);

fn open_db(dir: &Path, cache_bytes: u64) -> Result<sled::Db> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(None)
            .open();
        match opened {
            Ok(db) => return Ok(db),
            Err(e) if is_lock_contention(&e) && Instant::now() < deadline => {
                std::thread::sleep(LOCK_RETRY_INTERVAL);
            }
            Err(e) => return Err(convert("open", &format!("path {}", dir.display()), e)),
        }
    }
}

/// Makes every write on the file system holding `dir` durable.
#[cfg(target_os = "linux")]
fn sync_filesystem(dir: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `dir` is an open file descriptor for the duration of the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Elsewhere: `fsync` of the directory (sled's own files are synced by `Db::flush` there).
#[cfg(not(target_os = "linux"))]
fn sync_filesystem(dir: &std::fs::File) -> std::io::Result<()> {
    dir.sync_all()
}

/// sled 0.34 reports a held lock only as an `ErrorKind::Other` message.
fn is_lock_contention(err: &sled::Error) -> bool {
    matches!(err, sled::Error::Io(e) if e.to_string().contains("could not acquire lock"))
}

fn tree_ctx(tree: &str) -> String {
    format!("tree {tree:?}")
}

/// Maps a sled error to a [`StorageError`], keeping the operation and context.
fn convert(op: &'static str, context: &str, err: sled::Error) -> StorageError {
    let message = format!("{context}: {err}");
    match err {
        sled::Error::Io(_) => StorageError::Io { op, message },
        sled::Error::Corruption { .. } => StorageError::Corrupt { op, message },
        _ => StorageError::Internal { op, message },
    }
}

/// The half-open key range [start, end) as sled bounds.
fn bounds<'a>(start: &'a [u8], end: Option<&'a [u8]>) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (Bound::Included(start), end.map_or(Bound::Unbounded, Bound::Excluded))
}

impl Engine for SledEngine {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let value = self.tree(tree)?.get(key).map_err(|e| convert("get", &tree_ctx(tree), e))?;
        Ok(value.map(|v| v.to_vec()))
    }

    fn put(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<()> {
        self.tree(tree)?.insert(key, value).map_err(|e| convert("put", &tree_ctx(tree), e))?;
        Ok(())
    }

    fn delete(&self, tree: &str, key: &[u8]) -> Result<()> {
        self.tree(tree)?.remove(key).map_err(|e| convert("delete", &tree_ctx(tree), e))?;
        Ok(())
    }

    fn write(&self, tree: &str, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // sled::Batch is keyed, so a later op on the same key replaces an earlier one:
        // the same "last op wins" as applying our ops in order.
        let mut sled_batch = sled::Batch::default();
        for op in batch.into_ops() {
            match op {
                BatchOp::Put { key, value } => sled_batch.insert(key, value),
                BatchOp::Delete { key } => sled_batch.remove(key),
            }
        }
        self.tree(tree)?.apply_batch(sled_batch).map_err(|e| convert("write", &tree_ctx(tree), e))
    }

    fn range(&self, tree: &str, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if range_is_empty(start, end) || limit == 0 {
            return Ok(Vec::new());
        }
        let t = self.tree(tree)?;
        let mut out = Vec::new();
        for item in t.range::<&[u8], _>(bounds(start, end)).take(limit) {
            let (k, v) = item.map_err(|e| convert("range", &tree_ctx(tree), e))?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn last_in_range(&self, tree: &str, start: &[u8], end: Option<&[u8]>) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if range_is_empty(start, end) {
            return Ok(None);
        }
        match self.tree(tree)?.range::<&[u8], _>(bounds(start, end)).next_back() {
            None => Ok(None),
            Some(Ok((k, v))) => Ok(Some((k.to_vec(), v.to_vec()))),
            Some(Err(e)) => Err(convert("last_in_range", &tree_ctx(tree), e)),
        }
    }

    /// One `apply_batch` of removes, so a crash never leaves a hole in the middle of a
    /// purged range. It holds every doomed key in memory at once; log purges are
    /// incremental (retention), so ranges stay moderate.
    fn delete_range(&self, tree: &str, start: &[u8], end: Option<&[u8]>) -> Result<()> {
        if range_is_empty(start, end) {
            return Ok(());
        }
        let t = self.tree(tree)?;
        let mut batch = sled::Batch::default();
        let mut any = false;
        for key in t.range::<&[u8], _>(bounds(start, end)).keys() {
            let key = key.map_err(|e| convert("delete_range", &tree_ctx(tree), e))?;
            batch.remove(key);
            any = true;
        }
        if !any {
            return Ok(());
        }
        t.apply_batch(batch).map_err(|e| convert("delete_range", &tree_ctx(tree), e))
    }

    /// `Db::flush` writes sled's log, which all trees share, but on Linux it only calls
    /// `sync_file_range`: that neither flushes the device's write cache nor syncs file
    /// metadata, and values over 128 KiB (most record batches) live in separate blob
    /// files sled never syncs. So a power loss could lose acknowledged records. After
    /// sled's flush, `syncfs` makes everything on the data directory's file system
    /// durable with one journal commit (cheaper than one fsync per blob file).
    fn flush(&self) -> Result<()> {
        let failed = |e: String| StorageError::FsyncFailed { message: e };
        self.db.flush().map_err(|e| failed(format!("sled flush: {e}")))?;
        sync_filesystem(&self.dir).map_err(|e| failed(format!("syncfs of the data directory: {e}")))
    }
}
