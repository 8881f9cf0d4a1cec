//! [`SegmentLog`]: one ordered keyspace kept as append-only segment files plus an
//! in-memory index of where each live value lies.
//!
//! ```text
//!  write ─▶ frame ─▶ append to the active segment ─▶ index: key → (segment, pos, len)
//!  read  ─▶ index lookup ─▶ pread from the segment (page cache)
//!  flush ─▶ fdatasync of the active segment (older ones were synced when they rolled)
//!  open  ─▶ replay every frame in order (recover.rs): a torn, unsynced tail is cut off;
//!           damage to synced data is cut off too, and reported (see `damage_report`)
//! ```
//!
//! Why: record batches are the bulk of what a node writes. A B-tree store rewrites them
//! (leaf splits, blob files) and fsyncs far more than they are; here each batch is written
//! once and each group commit costs one `fdatasync` of one file.
//!
//! Space comes back when the oldest segment holds no live value: it is unlinked whole.
//! Only the oldest may go, because a delete recorded in a later segment must outlive the
//! values it deleted, or a restart would bring them back. So that one long-lived value
//! cannot pin every segment after it, [`SegmentLog::compact`] (in `compact.rs`) rewrites
//! the oldest segment's live values at the head once most of the disk is dead.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::frame::{self, FrameBuilder, Op, HEADER_LEN};
use super::recover;
use super::sealed::{self, Skeleton};
use crate::{BatchOp, Result, StorageError, WriteBatch};

/// A segment is closed and a new one started once it holds this many bytes.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// How many of the newest segments keep their pages in the page cache. Older ones are
/// dropped from it when a segment rolls (they were synced when they rolled): readers that
/// far behind read from disk, and the pages freed are the ones the next writes reuse.
/// Measured on the 2-core VM of docs/performance.md, whose hypervisor takes freed guest
/// memory back: writing into never-touched page-cache pages ran at 929 MB/s, into just
/// freed ones at 5.2 GB/s, and the copy was a third of a saturated node's CPU.
pub(super) const CACHED_SEGMENTS: u64 = 4;

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Clone, Copy, Debug)]
pub(super) struct Loc {
    pub(super) segment: u64,
    pub(super) pos: u64,
    pub(super) len: u32,
    /// CRC32C of the value, checked on every read so that rot on this disk is never
    /// served to a client or replicated to a peer.
    pub(super) crc: u32,
}

pub(super) struct Segment {
    pub(super) file: Arc<File>,
    /// Index entries pointing into this segment.
    pub(super) live: u64,
    /// Bytes of the values those entries point to.
    pub(super) live_bytes: u64,
    /// Bytes of the file (frames included).
    pub(super) size: u64,
}

impl Segment {
    pub(super) fn new(file: Arc<File>) -> Segment {
        Segment { file, live: 0, live_bytes: 0, size: 0 }
    }
}

/// What readers need: the index and the files it points into.
#[derive(Default)]
pub(super) struct Index {
    pub(super) keys: BTreeMap<Box<[u8]>, Loc>,
    pub(super) segments: BTreeMap<u64, Segment>,
    /// The longest synced length recorded for each segment (frame op `Synced`).
    pub(super) synced: BTreeMap<u64, u64>,
}

/// What only writers touch: the active segment and where its end is.
pub(super) struct Active {
    pub(super) id: u64,
    pub(super) file: Arc<File>,
    pub(super) len: u64,
    /// Set after a failed write: the file may end in a partial frame, so nothing more may
    /// be appended after it.
    pub(super) failed: bool,
    /// How much of this segment is known synced, and how much of that a mark records.
    pub(super) synced: u64,
    pub(super) marked: u64,
    /// This segment's frames without their values: its index file once it is sealed.
    pub(super) skeleton: Skeleton,
}

impl Active {
    pub(super) fn new(id: u64, file: Arc<File>, len: u64, skeleton: Skeleton) -> Active {
        Active { id, file, len, failed: false, synced: 0, marked: 0, skeleton }
    }
}

pub struct SegmentLog {
    pub(super) dir: PathBuf,
    dir_file: File,
    pub(super) segment_bytes: u64,
    index: RwLock<Index>,
    pub(super) active: Mutex<Active>,
    /// What damage to synced data was found (see [`SegmentLog::damage_report`]).
    damaged: Mutex<Option<String>>,
    /// Where the background check of sealed segments goes on: (segment, byte).
    pub(super) scrub_at: Mutex<(u64, u64)>,
}

pub(super) fn io(op: &'static str, path: &Path, e: std::io::Error) -> StorageError {
    StorageError::Io { op, message: format!("{}: {e}", path.display()) }
}

pub(super) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.log"))
}

impl Index {
    pub(super) fn insert(&mut self, key: &[u8], loc: Loc) {
        if let Some(seg) = self.segments.get_mut(&loc.segment) {
            seg.live += 1;
            seg.live_bytes += loc.len as u64;
        }
        if let Some(old) = self.keys.insert(key.into(), loc) {
            self.release(old);
        }
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(old) = self.keys.remove(key) {
            self.release(old);
        }
    }

    fn remove_range(&mut self, start: &[u8], end: Option<&[u8]>) {
        let doomed: Vec<Box<[u8]>> = self.keys.range::<[u8], _>(bounds(start, end)).map(|(k, _)| k.clone()).collect();
        for key in doomed {
            self.remove(&key);
        }
    }

    fn release(&mut self, loc: Loc) {
        if let Some(seg) = self.segments.get_mut(&loc.segment) {
            seg.live = seg.live.saturating_sub(1);
            seg.live_bytes = seg.live_bytes.saturating_sub(loc.len as u64);
        }
    }

    /// Oldest segments (never `active`) that no live value points into.
    fn take_dead_prefix(&mut self, active: u64) -> Vec<u64> {
        let mut dead = Vec::new();
        while let Some((&id, seg)) = self.segments.first_key_value() {
            if id == active || seg.live > 0 {
                break;
            }
            self.segments.remove(&id);
            dead.push(id);
        }
        dead
    }

    pub(super) fn apply(
        &mut self,
        segment: u64,
        frame_pos: u64,
        payload: &[u8],
    ) -> std::result::Result<(), &'static str> {
        for op in frame::decode_ops(payload)? {
            match op {
                Op::Put { key, value_at, value_len } => {
                    let pos = frame_pos + (HEADER_LEN + value_at) as u64;
                    let crc = crc32c::crc32c(&payload[value_at..value_at + value_len]);
                    self.insert(key, Loc { segment, pos, len: value_len as u32, crc });
                }
                Op::Delete { key } => self.remove(key),
                Op::DeleteRange { start, end } => self.remove_range(start, end),
                Op::Synced { segment, len } => self.note_synced(segment, len),
                Op::PutRef { key, pos, len, crc } => self.insert(key, Loc { segment, pos, len, crc }),
            }
        }
        Ok(())
    }

    pub(super) fn note_synced(&mut self, segment: u64, len: u64) {
        let known = self.synced.entry(segment).or_default();
        *known = (*known).max(len);
    }
}

fn bounds<'a>(start: &'a [u8], end: Option<&'a [u8]>) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (Bound::Included(start), end.map_or(Bound::Unbounded, Bound::Excluded))
}

impl SegmentLog {
    /// Opens the log in `dir` (created if missing), replaying every segment. Blocking.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<SegmentLog> {
        std::fs::create_dir_all(dir).map_err(|e| io("open", dir, e))?;
        let dir_file = File::open(dir).map_err(|e| io("open", dir, e))?;
        let recovered = recover::recover(dir, &dir_file)?;
        let mut index = recovered.index;
        let active = match recovered.tail {
            Some((id, len)) => Active::new(id, index.segments[&id].file.clone(), len, recovered.skeleton),
            None => {
                let file = create_segment(dir, &dir_file, 1)?;
                index.segments.insert(1, Segment::new(file.clone()));
                Active::new(1, file, 0, Skeleton::default())
            }
        };
        tracing::debug!(path = %dir.display(), segments = index.segments.len(), keys = index.keys.len(), "opened segment log");
        Ok(SegmentLog {
            dir: dir.to_path_buf(),
            dir_file,
            segment_bytes,
            index: RwLock::new(index),
            active: Mutex::new(active),
            damaged: Mutex::new(recovered.damaged),
            scrub_at: Mutex::new((0, 0)),
        })
    }

    /// Why this log holds less than was synced to it, if damage was found: at open (the
    /// damaged frame and everything after it were cut off) or on a read whose checksum
    /// failed. The report is durable until [`SegmentLog::clear_damage`]: the node must
    /// not vote with what is left until it has repaired from its peers.
    pub fn damage_report(&self) -> Option<String> {
        self.damaged.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Forgets the damage report, once the caller has made its repair durable.
    pub fn clear_damage(&self) -> Result<()> {
        let mut damaged = self.damaged.lock().unwrap_or_else(PoisonError::into_inner);
        recover::clear_marker(&self.dir, &self.dir_file)?;
        *damaged = None;
        Ok(())
    }

    /// Records damage found while running: durably, so the next start repairs.
    pub(super) fn damage_found(&self, what: String) -> StorageError {
        tracing::error!(damage = %what, "segment log: synced data is damaged; restart the node to repair it from its peers");
        let mut damaged = self.damaged.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = recover::write_marker(&self.dir, &self.dir_file, &what) {
            tracing::error!(error = %e, "could not record the damage durably");
        }
        damaged.get_or_insert_with(|| what.clone());
        StorageError::Corrupt { op: "read", message: what }
    }

    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let size = batch.ops().iter().map(|op| op.key().len() + 7 + op_value_len(op)).sum();
        let mut frame = FrameBuilder::new(size);
        for op in batch.ops() {
            frame.op(op)?;
        }
        self.append(frame.finish()?)
    }

    pub fn delete_range(&self, start: &[u8], end: Option<&[u8]>) -> Result<()> {
        if !self.read_index().keys.range::<[u8], _>(bounds(start, end)).any(|_| true) {
            return Ok(());
        }
        let mut frame = FrameBuilder::new(start.len() + end.map_or(0, <[u8]>::len) + 8);
        frame.delete_range(start, end)?;
        self.append(frame.finish()?)
    }

    /// Appends one sealed frame and publishes its effect to readers. Readers see a write
    /// only once its bytes are in the file, so a read never races the write it observes.
    fn append(&self, bytes: Vec<u8>) -> Result<()> {
        let mut active = self.lock_active();
        self.append_locked(&mut active, bytes)
    }

    pub(super) fn lock_active(&self) -> std::sync::MutexGuard<'_, Active> {
        self.active.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`Self::append`] with the active segment already locked.
    pub(super) fn append_locked(&self, active: &mut Active, bytes: Vec<u8>) -> Result<()> {
        if active.failed {
            return Err(StorageError::Io {
                op: "write",
                message: "an earlier write to the segment log failed; the node must restart".into(),
            });
        }
        if active.synced > active.marked {
            let mut mark = FrameBuilder::new(17);
            mark.synced(active.id, active.synced);
            active.marked = active.synced;
            self.write_frame(active, mark.finish()?)?;
        }
        self.write_frame(active, bytes)?;
        if active.len >= self.segment_bytes {
            self.roll(active)?;
        }
        Ok(())
    }

    /// Writes one frame at the end of the active segment and indexes it.
    fn write_frame(&self, active: &mut Active, bytes: Vec<u8>) -> Result<()> {
        let pos = active.len;
        if let Err(e) = active.file.write_all_at(&bytes, pos) {
            active.failed = true;
            return Err(io("write", &segment_path(&self.dir, active.id), e));
        }
        active.len += bytes.len() as u64;
        let segment = active.id;
        let len = active.len;
        // Outside the index lock: readers (fetches) need it.
        let sketch = active.skeleton.add(pos, &bytes[HEADER_LEN..])?;
        {
            let mut index = self.write_index();
            if let Some(seg) = index.segments.get_mut(&segment) {
                seg.size = len;
            }
            index.apply(segment, pos, sketch).map_err(|m| StorageError::Internal {
                op: "write",
                message: format!("frame just built is unreadable: {m}"),
            })?;
        }
        Ok(())
    }

    /// Closes the active segment (synced first, so only the newest segment can ever end
    /// in a torn frame) and starts the next.
    fn roll(&self, active: &mut Active) -> Result<()> {
        let path = segment_path(&self.dir, active.id);
        active
            .file
            .sync_data()
            .map_err(|e| StorageError::FsyncFailed { message: format!("{}: {e}", path.display()) })?;
        // Only a shortcut for the next start (see sealed.rs): a failure is not fatal.
        if let Err(e) = active.skeleton.seal(&self.dir, active.id, active.len) {
            tracing::warn!(error = %e, "could not write a sealed segment's index; the next start replays the segment");
        }
        let id = active.id + 1;
        let file = create_segment(&self.dir, &self.dir_file, id)?;
        let evict = {
            let mut index = self.write_index();
            index.segments.insert(id, Segment::new(file.clone()));
            id.checked_sub(CACHED_SEGMENTS).and_then(|old| index.segments.get(&old)).map(|s| s.file.clone())
        };
        // Outside the index lock: dropping 64 MiB of pages takes a while and readers
        // (fetches) need that lock.
        if let Some(old) = evict {
            drop_cached_pages(&old);
        }
        // The new segment starts by recording how long the sealed one is, so that a later
        // truncation of it is seen as damage at open.
        let sealed = std::mem::replace(active, Active::new(id, file, 0, Skeleton::default()));
        let mut mark = FrameBuilder::new(17);
        mark.synced(sealed.id, sealed.len);
        self.write_frame(active, mark.finish()?)
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let found = {
            let index = self.read_index();
            index.keys.get(key).map(|loc| (*loc, index.segments[&loc.segment].file.clone()))
        };
        found.map(|(loc, file)| self.read_at(&file, loc)).transpose()
    }

    pub fn range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Entries> {
        let found: Vec<(Vec<u8>, Loc, Arc<File>)> = {
            let index = self.read_index();
            index
                .keys
                .range::<[u8], _>(bounds(start, end))
                .take(limit)
                .map(|(k, loc)| (k.to_vec(), *loc, index.segments[&loc.segment].file.clone()))
                .collect()
        };
        found.into_iter().map(|(k, loc, file)| Ok((k, self.read_at(&file, loc)?))).collect()
    }

    pub fn last_in_range(&self, start: &[u8], end: Option<&[u8]>) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let found = {
            let index = self.read_index();
            let last = index.keys.range::<[u8], _>(bounds(start, end)).next_back();
            last.map(|(k, loc)| (k.to_vec(), *loc, index.segments[&loc.segment].file.clone()))
        };
        found.map(|(k, loc, file)| Ok((k, self.read_at(&file, loc)?))).transpose()
    }

    /// Makes every write that returned before this call durable, then gives back the
    /// space of dead segments.
    pub fn flush(&self) -> Result<()> {
        let (file, id, len) = {
            let active = self.lock_active();
            (active.file.clone(), active.id, active.len)
        };
        let failed = |what: &str, e: std::io::Error| StorageError::FsyncFailed { message: format!("{what}: {e}") };
        file.sync_data().map_err(|e| failed(&segment_path(&self.dir, id).display().to_string(), e))?;
        {
            let mut active = self.lock_active();
            if active.id == id {
                active.synced = active.synced.max(len);
            }
        }
        // Oldest first, each removal synced before the next: a later segment may hold the
        // deletes that keep an older one's values dead, so it must never be gone while the
        // older one could come back after a crash.
        let dead = self.write_index().take_dead_prefix(id);
        for id in dead {
            let path = segment_path(&self.dir, id);
            sealed::remove_index(&self.dir, id)?;
            std::fs::remove_file(&path).map_err(|e| io("remove segment", &path, e))?;
            self.dir_file.sync_all().map_err(|e| failed(&self.dir.display().to_string(), e))?;
        }
        Ok(())
    }

    /// How many sealed segments have an index file, for tests of restart.
    pub fn indexed_segments(&self) -> usize {
        let ids: Vec<u64> = self.read_index().segments.keys().copied().collect();
        ids.into_iter().filter(|&id| sealed::has_index(&self.dir, id)).count()
    }

    /// The number of segment files, for tests of space reclamation.
    pub fn segment_count(&self) -> usize {
        self.read_index().segments.len()
    }

    pub(super) fn read_at(&self, file: &File, loc: Loc) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, loc.pos).map_err(|e| io("read", &segment_path(&self.dir, loc.segment), e))?;
        if crc32c::crc32c(&buf) != loc.crc {
            let path = segment_path(&self.dir, loc.segment);
            return Err(self.damage_found(format!(
                "{}: the {} bytes at byte {} fail their checksum",
                path.display(),
                loc.len,
                loc.pos
            )));
        }
        Ok(buf)
    }

    pub(super) fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }
}

fn op_value_len(op: &BatchOp) -> usize {
    match op {
        BatchOp::Put { value, .. } => value.len(),
        BatchOp::Delete { .. } => 0,
    }
}

/// Asks the kernel to drop `file`'s clean pages from the page cache (advice only: a
/// failure changes nothing but memory use, so it is ignored).
pub(super) fn drop_cached_pages(file: &File) {
    #[cfg(all(target_os = "linux", not(madsim)))]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: `file` is an open descriptor for the duration of the call.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    #[cfg(not(all(target_os = "linux", not(madsim))))]
    let _ = file;
}

pub(super) fn create_segment(dir: &Path, dir_file: &File, id: u64) -> Result<Arc<File>> {
    let path = segment_path(dir, id);
    let file =
        OpenOptions::new().read(true).write(true).create_new(true).open(&path).map_err(|e| io("create", &path, e))?;
    dir_file.sync_all().map_err(|e| StorageError::FsyncFailed { message: format!("{}: {e}", dir.display()) })?;
    Ok(Arc::new(file))
}
