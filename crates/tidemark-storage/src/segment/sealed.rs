//! Index files of sealed segments, so a restart does not read the data it already knows.
//!
//! ```text
//!  while a segment is active:  each frame's ops, values left out (put by reference:
//!                              key, position, length, CRC), are kept aside (Skeleton)
//!  when it is sealed:          NNN.idx = those frames + a final synced mark with the
//!                              segment's length; fsynced, then renamed into place
//!  at open, sealed segment:    NNN.idx intact and the length matches ─▶ replay the index
//!                              otherwise ─▶ replay the segment itself (and write its index)
//! ```
//!
//! Why: replay used to read every retained byte, so restart time grew with retention
//! (a second per GiB on the machine of docs/performance.md). An index file is about
//! 40 bytes per write. Values read from a sealed segment are still checked against their
//! CRC on every read, so rot there is caught when it matters; the newest segment is
//! always replayed in full, so a torn tail is still told apart from damage.
//!
//! An index file is only ever a shortcut: when it is missing, cut short or fails a CRC,
//! the segment is replayed instead, so the index needs no directory sync of its own.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::frame::{self, FrameBuilder, Op, HEADER_LEN};
use super::log::{io, segment_path, Index, SegmentLog};
use crate::Result;

pub(super) fn index_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.idx"))
}

/// The frames of the active segment without their values.
#[derive(Default)]
pub(super) struct Skeleton {
    frames: Vec<u8>,
}

impl Skeleton {
    /// Adds the skeleton of the frame at `frame_pos` whose payload (checked) is `payload`,
    /// and returns the skeleton's payload: what the index applies, so each value's CRC is
    /// computed once, here.
    pub(super) fn add(&mut self, frame_pos: u64, payload: &[u8]) -> Result<&[u8]> {
        let ops = frame::decode_ops(payload).map_err(|m| crate::StorageError::Internal {
            op: "index",
            message: format!("a frame being indexed is unreadable: {m}"),
        })?;
        let mut out = FrameBuilder::new(ops.len() * 40);
        for op in ops {
            match op {
                Op::Put { key, value_at, value_len } => {
                    let pos = frame_pos + (HEADER_LEN + value_at) as u64;
                    let crc = crc32c::crc32c(&payload[value_at..value_at + value_len]);
                    out.put_ref(key, pos, value_len as u32, crc)?;
                }
                Op::Delete { key } => out.op(&crate::BatchOp::Delete { key: key.to_vec() })?,
                Op::DeleteRange { start, end } => out.delete_range(start, end)?,
                Op::Synced { segment, len } => out.synced(segment, len),
                Op::PutRef { key, pos, len, crc } => out.put_ref(key, pos, len, crc)?,
            }
        }
        let start = self.frames.len() + HEADER_LEN;
        self.frames.extend_from_slice(&out.finish()?);
        Ok(&self.frames[start..])
    }

    /// Writes the index file of segment `id`, sealed at `len` bytes, and starts over.
    pub(super) fn seal(&mut self, dir: &Path, id: u64, len: u64) -> Result<()> {
        let mut end = FrameBuilder::new(17);
        end.synced(id, len);
        let end = end.finish()?;
        let frames = std::mem::take(&mut self.frames);
        let (path, tmp) = (index_path(dir, id), dir.join(format!("{id:020}.idx.tmp")));
        let mut file =
            OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).map_err(|e| io("index", &tmp, e))?;
        file.write_all(&frames).and_then(|()| file.write_all(&end)).map_err(|e| io("index", &tmp, e))?;
        file.sync_data().map_err(|e| io("index", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io("index", &path, e))
    }
}

/// Replays segment `id` (`segment_len` bytes on disk) from its index file into `index`.
/// False, with `index` untouched, when there is no usable index file.
pub(super) fn replay_index(index: &mut Index, dir: &Path, id: u64, segment_len: u64) -> bool {
    let Ok(bytes) = std::fs::read(index_path(dir, id)) else { return false };
    let mut payloads = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + HEADER_LEN).and_then(|h| <[u8; HEADER_LEN]>::try_from(h).ok()) else {
            return false;
        };
        let Ok((len, crc)) = frame::parse_header(&header) else { return false };
        let Some(payload) = bytes.get(at + HEADER_LEN..at + HEADER_LEN + len) else { return false };
        if crc32c::crc32c(payload) != crc {
            return false;
        }
        payloads.push(payload);
        at += HEADER_LEN + len;
    }
    // The last frame says how long the segment was when it was sealed.
    let sealed_at = payloads.last().and_then(|p| match frame::decode_ops(p).ok()?.as_slice() {
        [Op::Synced { segment, len }] if *segment == id => Some(*len),
        _ => None,
    });
    if sealed_at != Some(segment_len) || payloads.iter().any(|p| frame::decode_ops(p).is_err()) {
        return false;
    }
    for payload in payloads {
        // Checked above; the index applies put-by-reference ops as they are.
        let _ = index.apply(id, 0, payload);
    }
    true
}

/// Removes the index file of segment `id`, if there is one.
pub(super) fn remove_index(dir: &Path, id: u64) -> Result<()> {
    let path = index_path(dir, id);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove index", &path, e)),
        _ => Ok(()),
    }
}

/// Whether segment `id` has an index file (for tests of restart).
pub(super) fn has_index(dir: &Path, id: u64) -> bool {
    index_path(dir, id).exists()
}

impl SegmentLog {
    /// Checks up to `max_bytes` of sealed segments, frame by frame, against their CRCs,
    /// going on where the last call stopped; returns the bytes checked. Opening trusts
    /// sealed segments' index files and reads check only the values they return, so
    /// without this, rot in data nobody reads would go unnoticed until a peer needed it.
    /// Damage found is recorded as [`SegmentLog::damage_report`] describes. Blocking.
    pub fn scrub(&self, max_bytes: u64) -> Result<u64> {
        let active = self.lock_active().id;
        let mut at = *self.scrub_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut checked, mut wrapped) = (0, false);
        while checked < max_bytes {
            let next = {
                let index = self.read_index();
                let seg = index.segments.range(at.0..).find(|(&id, _)| id != active);
                seg.map(|(&id, s)| (id, s.file.clone(), s.size))
            };
            let Some((id, file, size)) = next else {
                // Every sealed segment was checked: start over (once per call).
                if std::mem::replace(&mut wrapped, true) {
                    break;
                }
                at = (0, 0);
                continue;
            };
            let mut pos = if id == at.0 { at.1 } else { 0 };
            while pos < size && checked < max_bytes {
                let Some((_, end)) = super::recover::frame_at(&file, pos, size) else {
                    let path = segment_path(&self.dir, id);
                    return Err(self.damage_found(format!(
                        "{}: a frame at byte {pos} fails its CRC (found by the background check)",
                        path.display()
                    )));
                };
                checked += end - pos;
                pos = end;
            }
            if pos >= size {
                // Old segments were dropped from the page cache when they rolled; keep it so.
                if id + super::log::CACHED_SEGMENTS <= active {
                    super::log::drop_cached_pages(&file);
                }
                at = (id + 1, 0);
            } else {
                at = (id, pos);
            }
        }
        *self.scrub_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = at;
        Ok(checked)
    }
}
