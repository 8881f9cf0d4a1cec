//! The newest entries of one group's log, kept in memory.
//!
//! Right after an entry is appended, openraft reads it back once per follower (to
//! replicate it) and once more to apply it. Served from the storage engine, each of those
//! reads is a `pread` plus a bincode decode: a copy of every record batch, three times
//! over on a leader of three replicas (profiled: about a fifth of a saturated node's CPU
//! went to such copies). Entries hold their batch as `Bytes`, so keeping the newest ones
//! here makes those reads reference-count bumps.
//!
//! Invariant: the cached entries are always a contiguous *suffix* of the log (or none),
//! so a read that starts inside the cache can be answered from it alone.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use openraft::entry::RaftEntry;
use openraft::EntryPayload;

use crate::types::Entry;

/// How many payload bytes one group keeps. Replication and apply read an entry within
/// milliseconds of its append, so a few MiB is plenty even at full speed.
pub const RECENT_BYTES: usize = 4 << 20;

/// Shared by every clone of a group's log store (openraft hands clones to its
/// replication tasks and keeps one for appends).
#[derive(Clone, Default)]
pub struct RecentEntries {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    entries: VecDeque<Entry>,
    bytes: usize,
}

fn weight(entry: &Entry) -> usize {
    let payload = match &entry.payload {
        EntryPayload::Normal(cmd) => cmd.0.len(),
        _ => 0,
    };
    payload + 64
}

impl Inner {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.index())
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

impl RecentEntries {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records entries just written at the end of the log. A gap (which openraft never
    /// makes: it truncates first) restarts the cache rather than break the suffix rule.
    pub fn appended(&self, entries: &[Entry]) {
        let mut inner = self.lock();
        for e in entries {
            let contiguous = inner.entries.back().is_none_or(|last| last.index() + 1 == e.index());
            if !contiguous {
                inner.clear();
            }
            inner.bytes += weight(e);
            inner.entries.push_back(e.clone());
        }
        while inner.bytes > RECENT_BYTES && inner.entries.len() > 1 {
            if let Some(old) = inner.entries.pop_front() {
                inner.bytes -= weight(&old);
            }
        }
    }

    /// Forgets entries with index `>= from` (the log was truncated there).
    pub fn truncated_from(&self, from: u64) {
        let mut inner = self.lock();
        while inner.entries.back().is_some_and(|e| e.index() >= from) {
            if let Some(e) = inner.entries.pop_back() {
                inner.bytes -= weight(&e);
            }
        }
    }

    /// Forgets entries with index `<= upto` (the log was purged up to there).
    pub fn purged_upto(&self, upto: u64) {
        let mut inner = self.lock();
        while inner.entries.front().is_some_and(|e| e.index() <= upto) {
            if let Some(e) = inner.entries.pop_front() {
                inner.bytes -= weight(&e);
            }
        }
    }

    /// The entries with `start <= index < end` if the cache covers `start`; entries past
    /// the cached end do not exist (the cache is a suffix of the log). `None` means "read
    /// the engine".
    pub fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let inner = self.lock();
        let first = inner.first_index()?;
        let last = first + inner.entries.len() as u64 - 1;
        if start < first || start > last + 1 {
            return None;
        }
        let from = (start - first) as usize;
        let to = (end.min(last + 1).max(start) - first) as usize;
        Some(inner.entries.range(from..to).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Command;
    use bytes::Bytes;
    use openraft::entry::RaftEntry;
    use openraft::vote::RaftLeaderId;

    fn entry(index: u64, len: usize) -> Entry {
        let leader = openraft::alias::CommittedLeaderIdOf::<crate::types::TypeConfig>::new(1, 1);
        let log_id = openraft::LogId::new(leader, index);
        Entry::new_normal(log_id, Command(Bytes::from(vec![0u8; len])))
    }

    fn indexes(v: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        v.map(|v| v.iter().map(|e| e.index()).collect())
    }

    #[test]
    fn serves_reads_that_start_inside_the_cached_suffix() {
        let c = RecentEntries::default();
        assert_eq!(indexes(c.get(0, 10)), None, "empty: read the engine");
        c.appended(&[entry(5, 10), entry(6, 10), entry(7, 10)]);
        assert_eq!(indexes(c.get(4, 8)), None, "starts before the cache");
        assert_eq!(indexes(c.get(5, 7)), Some(vec![5, 6]));
        assert_eq!(indexes(c.get(6, u64::MAX)), Some(vec![6, 7]), "nothing exists past the end");
        assert_eq!(indexes(c.get(8, 12)), Some(vec![]), "just past the end: nothing yet");
        assert_eq!(indexes(c.get(9, 12)), None);
    }

    #[test]
    fn truncate_purge_and_gaps_keep_it_a_suffix() {
        let c = RecentEntries::default();
        c.appended(&[entry(1, 10), entry(2, 10), entry(3, 10)]);
        c.truncated_from(3);
        assert_eq!(indexes(c.get(1, 10)), Some(vec![1, 2]));
        c.appended(&[entry(3, 10)]);
        c.purged_upto(1);
        assert_eq!(indexes(c.get(1, 10)), None);
        assert_eq!(indexes(c.get(2, 10)), Some(vec![2, 3]));
        c.appended(&[entry(9, 10)]);
        assert_eq!(indexes(c.get(2, 10)), None, "a gap restarts the cache");
        assert_eq!(indexes(c.get(9, 10)), Some(vec![9]));
    }

    #[test]
    fn stays_within_its_byte_budget_but_keeps_the_newest() {
        let c = RecentEntries::default();
        let big = RECENT_BYTES / 4;
        c.appended(&[entry(1, big), entry(2, big), entry(3, big), entry(4, big)]);
        assert_eq!(indexes(c.get(1, 10)), None, "the oldest was evicted");
        assert_eq!(indexes(c.get(2, 10)), Some(vec![2, 3, 4]));
        c.appended(&[entry(5, RECENT_BYTES * 2)]);
        assert_eq!(indexes(c.get(5, 10)), Some(vec![5]), "one oversized entry still stays");
    }
}
