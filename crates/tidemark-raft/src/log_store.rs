//! The Raft log of one group, kept in the node's storage engine. For a partition group
//! this *is* the partition log: each produced batch is stored once, as one entry, and
//! fetches read committed entries straight from here.
//!
//! Keys: tree `raft_log`, `group (u64 BE) ++ index (u64 BE)` so one group's entries are
//! contiguous and ordered; tree `raft_state`, `group ++ tag` for the vote and the last
//! purged log id.
//!
//! The committed log id is deliberately not persisted: a restarted node learns it again
//! from a quorum before applying anything. Persisting it lazily let a node restart with
//! a commit point its (fsynced) log did not match, which openraft rejects.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tidemark_storage::{SharedEngine, StorageError, WriteBatch};
use tidemark_types::GroupId;

use crate::flusher::Flusher;
use crate::recent::RecentEntries;
use crate::types::{Entry, LogId, TypeConfig, Vote};

pub const LOG_TREE: &str = "raft_log";
pub const STATE_TREE: &str = "raft_state";
pub(crate) const VOTE: u8 = b'v';
pub(crate) const PURGED: u8 = b'p';

#[cfg(test)]
pub(crate) fn log_key_for_tests(group: GroupId, index: u64) -> [u8; 16] {
    log_key(group, index)
}

fn log_key(group: GroupId, index: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

pub(crate) fn state_key(group: GroupId, tag: u8) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8] = tag;
    k
}

fn io_err(e: StorageError) -> io::Error {
    io::Error::other(e.to_string())
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    crate::codec::decode(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn encode<T: Serialize>(v: &T) -> io::Result<Vec<u8>> {
    bincode::serialize(v).map_err(io::Error::other)
}

/// Reads the entries of `group` with `start <= index < end`, at most `limit` of them.
/// Used by the log store and by fetches, which never ask past the applied index.
pub fn read_entries(
    engine: &SharedEngine,
    group: GroupId,
    start: u64,
    end: u64,
    limit: usize,
) -> io::Result<Vec<Entry>> {
    if start >= end {
        return Ok(Vec::new());
    }
    let rows = engine.range(LOG_TREE, &log_key(group, start), Some(&log_key(group, end)), limit).map_err(io_err)?;
    rows.iter().map(|(_, v)| decode(v)).collect()
}

/// Removes every trace of a group (its log, Raft state and checkpoints), for a deleted
/// topic.
pub fn delete_group(engine: &SharedEngine, group: GroupId) -> Result<(), StorageError> {
    engine.delete_range(LOG_TREE, &log_key(group, 0), Some(&log_key(group, u64::MAX)))?;
    let mut b = WriteBatch::new();
    for tag in [VOTE, PURGED, crate::checkpoint::CHECKPOINT, crate::checkpoint::BASE, crate::repair::REPAIR] {
        b.delete(state_key(group, tag).to_vec());
    }
    engine.write(STATE_TREE, b)
}

/// One group's log storage. Clones share the same engine, group-commit flusher and
/// in-memory tail of recent entries.
#[derive(Clone)]
pub struct LogStore {
    group: GroupId,
    engine: SharedEngine,
    flusher: Flusher,
    recent: RecentEntries,
}

impl LogStore {
    pub fn new(group: GroupId, engine: SharedEngine, flusher: Flusher) -> Self {
        LogStore { group, engine, flusher, recent: RecentEntries::default() }
    }

    fn read_state<T: DeserializeOwned>(&self, tag: u8) -> io::Result<Option<T>> {
        match self.engine.get(STATE_TREE, &state_key(self.group, tag)).map_err(io_err)? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    fn write_state<T: Serialize>(&self, tag: u8, v: &T) -> io::Result<()> {
        self.engine.put(STATE_TREE, &state_key(self.group, tag), &encode(v)?).map_err(io_err)
    }

    fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        };
        (start, end)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let (start, end) = Self::bounds(&range);
        if let Some(entries) = self.recent.get(start, end) {
            return Ok(entries);
        }
        read_entries(&self.engine, self.group, start, end, usize::MAX)
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        self.read_state(VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    /// `purge` makes its mark durable before it deletes, so a crash in between leaves
    /// entries at or below the mark (seen in the simulation, seed 14: a follower purged
    /// to a snapshot past its last entry, then lost the delete; openraft then refused to
    /// start the group: "inverted log order"). They are gone as far as the log is
    /// concerned: dropped here, and the last log id is never below the mark.
    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let purged: Option<LogId> = self.read_state(PURGED)?;
        if let Some(p) = &purged {
            let below = log_key(self.group, p.index() + 1);
            let stale = self.engine.range(LOG_TREE, &log_key(self.group, 0), Some(&below), 1).map_err(io_err)?;
            if !stale.is_empty() {
                self.engine.delete_range(LOG_TREE, &log_key(self.group, 0), Some(&below)).map_err(io_err)?;
            }
        }
        let last = self
            .engine
            .last_in_range(LOG_TREE, &log_key(self.group, 0), Some(&log_key(self.group, u64::MAX)))
            .map_err(io_err)?;
        let last_log_id = match last {
            Some((_, v)) => Some(decode::<Entry>(&v)?.log_id()),
            None => purged,
        };
        Ok(LogState { last_purged_log_id: purged, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// A vote must be durable before it is answered, or a restarted node could vote twice
    /// in one term.
    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        self.write_state(VOTE, vote)?;
        self.flusher.flush().await.map_err(io_err)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut batch = WriteBatch::new();
        for entry in &entries {
            batch.put(log_key(self.group, entry.index()).to_vec(), encode(entry)?);
        }
        self.engine.write(LOG_TREE, batch).map_err(io_err)?;
        self.recent.appended(&entries);
        self.flusher.after_flush(callback);
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.map_or(0, |id| id.index() + 1);
        self.engine
            .delete_range(LOG_TREE, &log_key(self.group, from), Some(&log_key(self.group, u64::MAX)))
            .map_err(io_err)?;
        // Only once the engine agrees, or the cache would stop being the log's suffix.
        self.recent.truncated_from(from);
        self.flusher.flush().await.map_err(io_err)
    }

    /// Called only up to the base snapshot (see [`crate::checkpoint`]), which is in the
    /// engine but perhaps not yet durable. The snapshot and the purged mark are synced
    /// before any entry is deleted: the log and the small state live in different files,
    /// so a crash could otherwise keep the deletes but lose the mark, and the restarted
    /// group would look for entries that are gone ("log entry not found" at index 0).
    /// Entries that survive a crash below a durable mark are deleted by the next purge.
    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        self.write_state(PURGED, &log_id)?;
        self.flusher.flush().await.map_err(io_err)?;
        self.engine
            .delete_range(LOG_TREE, &log_key(self.group, 0), Some(&log_key(self.group, log_id.index() + 1)))
            .map_err(io_err)?;
        self.recent.purged_upto(log_id.index());
        Ok(())
    }
}

#[cfg(test)]
#[path = "log_store_tests.rs"]
mod tests;
