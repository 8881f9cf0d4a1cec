//! Giving back the space of segments that hold mostly dead values.
//!
//! ```text
//!   oldest segment under a quarter live, or the whole log under half live?  ──no──▶ done
//!        │yes
//!        ▼
//!   oldest segment: copy its live values to the head (a few MiB per lock hold)
//!        ▼
//!   flush: the copies are synced, then the emptied oldest segment is unlinked
//! ```
//!
//! Only the oldest segment can be unlinked (a later one may hold the deletes that keep
//! older values dead), so a value that lives long, such as the retained data of a topic
//! with long retention, would otherwise pin every segment written after it, however dead.
//! Copying the oldest segment's survivors forward bounds the disk at about twice the live
//! data plus a few segments, at the price of rewriting long-lived values once per cycle
//! (TiKV's raft-engine does the same with its purge and rewrite).

use std::sync::Arc;

use super::frame::FrameBuilder;
use super::log::{Loc, SegmentLog};
use crate::{BatchOp, Result};

/// At most this much is copied per hold of the write lock, so writers wait briefly.
const CHUNK_BYTES: u64 = 4 << 20;
/// An oldest segment with less live data than this share of its size is copied forward
/// whatever the rest looks like: a few surviving values (the metadata group's, a slow
/// topic's) must not keep a whole segment, and every later one, on disk.
const OLDEST_LIVE_SHARE: u64 = 4;

/// What a compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compaction {
    pub segments_emptied: u64,
    pub bytes_rewritten: u64,
}

impl SegmentLog {
    /// Empties (and unlinks) the oldest segment while it is under a quarter live, or while
    /// less than half of the bytes on disk are live and more than two segments' worth are
    /// on disk; it stops once `max_copy` bytes were copied. Blocking: run it off the write
    /// path.
    pub fn compact(&self, max_copy: u64) -> Result<Compaction> {
        let mut done = Compaction::default();
        // Segments emptied by deletes since the last write go now, even on an idle log.
        self.flush()?;
        while done.bytes_rewritten < max_copy {
            let Some(oldest) = self.compaction_candidate() else { break };
            done.bytes_rewritten += self.rewrite_segment(oldest)?;
            done.segments_emptied += 1;
            // Syncs the copies first, then unlinks the segment they came from.
            self.flush()?;
        }
        Ok(done)
    }

    /// (bytes on disk, live value bytes) over every segment.
    pub fn disk_usage(&self) -> (u64, u64) {
        let index = self.read_index();
        index.segments.values().fold((0, 0), |(size, live), s| (size + s.size, live + s.live_bytes))
    }

    fn compaction_candidate(&self) -> Option<u64> {
        let active = self.lock_active().id;
        let index = self.read_index();
        let (size, live) =
            index.segments.values().fold((0u64, 0u64), |(size, live), s| (size + s.size, live + s.live_bytes));
        let (&oldest, seg) = index.segments.first_key_value()?;
        let mostly_dead = seg.live_bytes * OLDEST_LIVE_SHARE < seg.size;
        let worth_it = mostly_dead || (size > 2 * self.segment_bytes && live * 2 < size);
        (oldest != active && worth_it).then_some(oldest)
    }

    /// Copies every value still in `segment` to the head; returns the bytes copied.
    fn rewrite_segment(&self, segment: u64) -> Result<u64> {
        let keys: Vec<Box<[u8]>> = {
            let index = self.read_index();
            index.keys.iter().filter(|(_, loc)| loc.segment == segment).map(|(k, _)| k.clone()).collect()
        };
        let mut copied = 0;
        let mut rest = &keys[..];
        while !rest.is_empty() {
            let mut active = self.lock_active();
            // Under the writers' lock nothing can move a key: look each one up again and
            // copy only those still in the segment.
            let found: Vec<(Box<[u8]>, Loc, Arc<std::fs::File>)> = {
                let index = self.read_index();
                let mut bytes = 0;
                let mut taken = 0;
                let mut found = Vec::new();
                for key in rest {
                    taken += 1;
                    if let Some(loc) = index.keys.get(key).filter(|l| l.segment == segment) {
                        bytes += loc.len as u64;
                        found.push((key.clone(), *loc, index.segments[&segment].file.clone()));
                    }
                    if bytes >= CHUNK_BYTES {
                        break;
                    }
                }
                rest = &rest[taken..];
                found
            };
            if found.is_empty() {
                continue;
            }
            let mut frame = FrameBuilder::new(found.iter().map(|(k, l, _)| k.len() + 7 + l.len as usize).sum());
            for (key, loc, file) in &found {
                let value = self.read_at(file, *loc)?;
                copied += value.len() as u64;
                frame.op(&BatchOp::Put { key: key.to_vec(), value })?;
            }
            self.append_locked(&mut active, frame.finish()?)?;
        }
        Ok(copied)
    }
}
