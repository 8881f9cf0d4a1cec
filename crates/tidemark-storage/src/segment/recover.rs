//! Opening a segment log: replay, and telling a torn tail apart from damaged synced data.
//!
//! ```text
//!  replay every segment, frame by frame, into the index
//!    a bad frame (cut short, bad magic, CRC mismatch) at byte p of segment s:
//!      s sealed (not the newest)                    ─▶ damage (sealed segments were synced whole)
//!      s newest, a later valid frame marks > p synced ─▶ damage
//!      s newest, nothing says p was synced            ─▶ torn tail: a crash cut an unsynced
//!                                                       write; cut it off, nothing acked is lost
//!    s shorter than a mark says it was synced          ─▶ damage (truncated)
//!  damage ─▶ write DAMAGED (synced), cut s at p, delete every later segment, replay again
//! ```
//!
//! Why cut everything after the damage rather than skip the bad frame: the damaged frame
//! may have held deletes (a Raft truncation or purge); replaying what follows without it
//! could bring back entries that were removed. What is left is a state the log really
//! had. The DAMAGED file tells the layer above that acknowledged data may be gone: it must
//! not vote with this log until it has repaired it from its peers (`tidemark_raft::repair`).
//!
//! The limit: damage confined to the frames of the very last sync before a crash, with no
//! later mark, looks exactly like a torn tail and is cut without a report.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::frame::{self, HEADER_LEN, MAGIC};
use super::log::{io, segment_path, Index, Segment};
use super::sealed::{self, Skeleton};
use crate::{Result, StorageError};

const MARKER: &str = "DAMAGED";

/// What opening found.
pub(super) struct Recovered {
    pub(super) index: Index,
    /// The newest segment and its valid length (None: an empty directory).
    pub(super) tail: Option<(u64, u64)>,
    pub(super) damaged: Option<String>,
    /// The newest segment's frames without values, for its index file once sealed.
    pub(super) skeleton: Skeleton,
}

/// How one segment replayed.
struct Scan {
    id: u64,
    valid: u64,
    file_len: u64,
    bad: Option<&'static str>,
}

struct Damage {
    segment: u64,
    at: u64,
    why: String,
}

pub(super) fn recover(dir: &Path, dir_file: &File) -> Result<Recovered> {
    // The second pass finds no damage: everything from the first damaged byte is gone.
    for _ in 0..2 {
        let ids = segment_ids(dir)?;
        let mut index = Index::default();
        let mut scans = Vec::with_capacity(ids.len());
        let mut skeleton = Skeleton::default();
        for (n, &id) in ids.iter().enumerate() {
            let path = segment_path(dir, id);
            let file = OpenOptions::new().read(true).write(true).open(&path).map_err(|e| io("open", &path, e))?;
            let file_len = file.metadata().map_err(|e| io("open", &path, e))?.len();
            index.segments.insert(id, Segment::new(Arc::new(file)));
            let newest = n + 1 == ids.len();
            let scan = if !newest && sealed::replay_index(&mut index, dir, id, file_len) {
                Scan { id, valid: file_len, file_len, bad: None }
            } else {
                skeleton = Skeleton::default();
                let scan = replay(&mut index, id, &path, &mut skeleton)?;
                if !newest && scan.bad.is_none() {
                    if let Err(e) = skeleton.seal(dir, id, scan.valid) {
                        tracing::warn!(error = %e, "could not write a sealed segment's index");
                    }
                }
                scan
            };
            if scan.bad.is_some() {
                scan_marks(&mut index, id, scan.valid + 1, scan.file_len)?;
            }
            if let Some(seg) = index.segments.get_mut(&id) {
                seg.size = scan.valid;
            }
            scans.push(scan);
        }
        if let Some(damage) = find_damage(&index, &scans) {
            cut_damage(dir, dir_file, &ids, &damage)?;
            continue;
        }
        if let Some(last) = scans.last().filter(|s| s.bad.is_some()) {
            cut_torn_tail(&index, last, &segment_path(dir, last.id))?;
        }
        let damaged = read_marker(dir)?;
        return Ok(Recovered { index, tail: scans.last().map(|s| (s.id, s.valid)), damaged, skeleton });
    }
    Err(StorageError::Internal { op: "open", message: format!("{}: damage remained after cutting it", dir.display()) })
}

/// The segments in `dir`, oldest first. Index files left without their segment (a crash
/// between the two removals) and unfinished ones are removed.
fn segment_ids(dir: &Path) -> Result<Vec<u64>> {
    let (mut ids, mut indexes) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir).map_err(|e| io("open", dir, e))? {
        let name = entry.map_err(|e| io("open", dir, e))?.file_name();
        let name = name.to_string_lossy();
        let id = |suffix| name.strip_suffix(suffix).and_then(|s| s.parse::<u64>().ok());
        if let Some(id) = id(".log") {
            ids.push(id);
        } else if let Some(id) = id(".idx") {
            indexes.push(id);
        } else if name.ends_with(".idx.tmp") {
            let _ = std::fs::remove_file(dir.join(&*name));
        }
    }
    ids.sort_unstable();
    for orphan in indexes.into_iter().filter(|id| ids.binary_search(id).is_err()) {
        sealed::remove_index(dir, orphan)?;
    }
    Ok(ids)
}

/// Replays one segment into `index`, up to its first bad frame, keeping its skeleton.
fn replay(index: &mut Index, id: u64, path: &Path, skeleton: &mut Skeleton) -> Result<Scan> {
    let segment = index.segments[&id].file.clone();
    let file_len = segment.metadata().map_err(|e| io("open", path, e))?.len();
    let mut reader = BufReader::with_capacity(1 << 20, &*segment);
    let mut pos = 0u64;
    let mut payload = Vec::new();
    let bad = loop {
        if pos == file_len {
            break None;
        }
        let mut header = [0u8; HEADER_LEN];
        if reader.read_exact(&mut header).is_err() {
            break Some("a cut-short frame header");
        }
        let (len, crc) = match frame::parse_header(&header) {
            Ok(h) => h,
            Err(why) => break Some(why),
        };
        // The length is unchecked until the CRC is: a torn or rotten header may claim up
        // to MAX_PAYLOAD (1 GiB), which must not be allocated and zeroed for a frame the
        // file cannot hold.
        if pos + (HEADER_LEN + len) as u64 > file_len {
            break Some("a cut-short frame");
        }
        payload.resize(len, 0);
        if reader.read_exact(&mut payload).is_err() {
            break Some("a cut-short frame");
        }
        if crc32c::crc32c(&payload) != crc {
            break Some("a CRC mismatch");
        }
        let corrupt =
            |m: &str| StorageError::Corrupt { op: "open", message: format!("{} at byte {pos}: {m}", path.display()) };
        let sketch = skeleton.add(pos, &payload).map_err(|e| corrupt(&e.to_string()))?;
        index.apply(id, pos, sketch).map_err(corrupt)?;
        pos += (HEADER_LEN + len) as u64;
    };
    Ok(Scan { id, valid: pos, file_len, bad })
}

/// Looks past a bad frame for intact frames and notes the synced marks they hold. Reads
/// in bounded pieces: one frame, or 64 KiB while looking for the next frame's magic.
fn scan_marks(index: &mut Index, id: u64, from: u64, file_len: u64) -> Result<()> {
    let file = index.segments[&id].file.clone();
    let mut at = from;
    while at + HEADER_LEN as u64 <= file_len {
        match frame_at(&file, at, file_len) {
            Some((payload, next)) => {
                for op in frame::decode_ops(&payload).unwrap_or_default() {
                    if let frame::Op::Synced { segment, len } = op {
                        index.note_synced(segment, len);
                    }
                }
                at = next;
            }
            None => at = next_magic(&file, at + 1, file_len),
        }
    }
    Ok(())
}

/// The intact frame at `at`, if there is one, and where the next would start.
pub(super) fn frame_at(file: &File, at: u64, file_len: u64) -> Option<(Vec<u8>, u64)> {
    let mut header = [0u8; HEADER_LEN];
    file.read_exact_at(&mut header, at).ok()?;
    let (len, crc) = frame::parse_header(&header).ok()?;
    let end = at + (HEADER_LEN + len) as u64;
    if end > file_len {
        return None;
    }
    let mut payload = vec![0u8; len];
    file.read_exact_at(&mut payload, at + HEADER_LEN as u64).ok()?;
    (crc32c::crc32c(&payload) == crc).then_some((payload, end))
}

/// The first position at or after `from` where the frame magic appears (or `file_len`).
fn next_magic(file: &File, from: u64, file_len: u64) -> u64 {
    let magic = MAGIC.to_le_bytes();
    let mut buf = vec![0u8; 64 << 10];
    let mut at = from;
    while at + magic.len() as u64 <= file_len {
        let n = buf.len().min((file_len - at) as usize);
        if file.read_exact_at(&mut buf[..n], at).is_err() {
            return file_len;
        }
        if let Some(i) = buf[..n].windows(magic.len()).position(|w| w == magic) {
            return at + i as u64;
        }
        // Overlap by three bytes so a magic split across two reads is still found.
        at += (n - (magic.len() - 1)) as u64;
    }
    file_len
}

fn find_damage(index: &Index, scans: &[Scan]) -> Option<Damage> {
    for (n, scan) in scans.iter().enumerate() {
        let newest = n + 1 == scans.len();
        let synced = index.synced.get(&scan.id).copied().unwrap_or(0);
        let why = match scan.bad {
            Some(why) if !newest => format!("{why} in a sealed segment (synced whole when it was sealed)"),
            Some(why) if synced > scan.valid => format!("{why} inside data synced up to byte {synced}"),
            None if synced > scan.valid => {
                format!("the file ends at byte {} but {synced} bytes of it were synced (it was truncated)", scan.valid)
            }
            _ => continue,
        };
        return Some(Damage { segment: scan.id, at: scan.valid, why });
    }
    None
}

/// Records the damage durably, then cuts the log back to the last intact byte before it.
fn cut_damage(dir: &Path, dir_file: &File, ids: &[u64], damage: &Damage) -> Result<()> {
    let path = segment_path(dir, damage.segment);
    let what = format!("{}: {} at byte {}", path.display(), damage.why, damage.at);
    let later = ids.iter().filter(|&&id| id > damage.segment).count();
    tracing::error!(damage = %what, later_segments_dropped = later, "segment log: synced data is damaged; cutting the log back to the last intact frame");
    write_marker(dir, dir_file, &what)?;
    for &id in ids.iter().rev().filter(|&&id| id >= damage.segment) {
        sealed::remove_index(dir, id)?;
    }
    for &id in ids.iter().rev().filter(|&&id| id > damage.segment) {
        let later = segment_path(dir, id);
        std::fs::remove_file(&later).map_err(|e| io("remove damaged segment", &later, e))?;
    }
    let file = OpenOptions::new().write(true).open(&path).map_err(|e| io("open", &path, e))?;
    file.set_len(damage.at).map_err(|e| io("cut damaged segment", &path, e))?;
    file.sync_all().map_err(|e| fsync_failed(&path, e))?;
    dir_file.sync_all().map_err(|e| fsync_failed(dir, e))
}

fn cut_torn_tail(index: &Index, scan: &Scan, path: &Path) -> Result<()> {
    let why = scan.bad.unwrap_or("damage");
    tracing::warn!(path = %path.display(), at = scan.valid, cut = scan.file_len - scan.valid, why, "cutting off a torn write at the log tail");
    let segment = &index.segments[&scan.id].file;
    segment.set_len(scan.valid).map_err(|e| io("truncate torn tail", path, e))?;
    segment.sync_all().map_err(|e| fsync_failed(path, e))
}

fn fsync_failed(path: &Path, e: std::io::Error) -> StorageError {
    StorageError::FsyncFailed { message: format!("{}: {e}", path.display()) }
}

fn marker_path(dir: &Path) -> PathBuf {
    dir.join(MARKER)
}

/// Adds a line to the DAMAGED file and makes it durable.
pub(super) fn write_marker(dir: &Path, dir_file: &File, what: &str) -> Result<()> {
    let path = marker_path(dir);
    let mut file =
        OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io("record damage", &path, e))?;
    file.write_all(format!("{what}\n").as_bytes()).map_err(|e| io("record damage", &path, e))?;
    file.sync_all().map_err(|e| fsync_failed(&path, e))?;
    dir_file.sync_all().map_err(|e| fsync_failed(dir, e))
}

fn read_marker(dir: &Path) -> Result<Option<String>> {
    let path = marker_path(dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim_end().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read damage report", &path, e)),
    }
}

pub(super) fn clear_marker(dir: &Path, dir_file: &File) -> Result<()> {
    let path = marker_path(dir);
    match std::fs::remove_file(&path) {
        Ok(()) => dir_file.sync_all().map_err(|e| fsync_failed(dir, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("clear damage report", &path, e)),
    }
}
