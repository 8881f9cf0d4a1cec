//! Retention and log compaction: what keeps a node's disk, memory and restart time
//! bounded by what retention keeps rather than by everything ever written.
//!
//! ```text
//!  every tick, on each partition this node leads:
//!    retention_point(topic limits, leader clock) > log start ? ─▶ Trim command (replicated)
//!  every tick, on every group this node hosts (leader or not):
//!    oldest entry still needed moved past the snapshot ? ─▶ build a snapshot, wait for it
//!    snapshot past the purge point ?                     ─▶ purge the Raft log up to it
//!  then the storage engine compacts (gives back the space purges freed)
//! ```
//!
//! The cut is decided once, by the leader, and carried in the log: every replica applies
//! the same Trim at the same index and agrees on the log start, whatever its own clock
//! says. Each replica then purges its own copy of the log, up to its base snapshot, which
//! never passes the oldest retained batch (see `tidemark_raft::checkpoint`).

use std::sync::Weak;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use openraft::async_runtime::watch::WatchReceiver;
use tidemark_raft::{Command, Raft};
use tidemark_types::{now_ms, Offset};

use crate::broker::Broker;
use crate::meta::TopicConfig;
use crate::partition::PartitionState;

/// Command tag of a Trim: the first byte of a partition command.
pub const TAG_TRIM: u8 = 4;

/// How long a leader waits for its Trim to commit before trying again next tick.
const TRIM_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a pass waits for a triggered snapshot before purging up to the older one.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(2);

/// A command that moves the partition's log start to `to` (a batch boundary).
pub fn trim_command(to: Offset) -> Command {
    let mut b = BytesMut::with_capacity(9);
    b.put_u8(TAG_TRIM);
    b.put_u64(to);
    Command(b.freeze())
}

/// The new log start of a Trim command, if it is one.
pub fn trim_of(command: &Command) -> Option<Offset> {
    match command.0.as_ref() {
        [TAG_TRIM, rest @ ..] => rest.try_into().ok().map(u64::from_be_bytes),
        _ => None,
    }
}

impl PartitionState {
    /// The Raft log index of the oldest retained batch: the log must be kept from there on.
    pub fn retained_from(&self) -> Option<u64> {
        self.index.first().map(|e| e.log_index)
    }

    /// Where retention puts the log start now: past every leading batch that is older than
    /// `retention_ms` (by leader append time) or that keeps the partition over
    /// `retention_bytes`. 0 disables either limit. Never moves the log start back.
    pub fn retention_point(&self, config: &TopicConfig, now_ms: i64) -> Offset {
        let cutoff = (config.retention_ms > 0).then(|| now_ms.saturating_sub(config.retention_ms));
        let mut bytes = self.retained_bytes;
        let mut point = self.log_start_offset;
        for e in &self.index {
            let too_old = cutoff.is_some_and(|c| e.append_ms < c);
            let too_big = config.retention_bytes > 0 && bytes > config.retention_bytes;
            if !too_old && !too_big {
                break;
            }
            bytes -= e.batch_len as u64;
            point = e.next_offset();
        }
        point
    }

    /// Drops every batch that ends at or before `to` (batch granularity) with what only
    /// they needed: TTL deadlines and shared-group delivery state below the new start.
    /// Committed group offsets stay: a group behind the start gets OffsetOutOfRange and
    /// its reset policy applies, as in Kafka.
    pub fn trim(&mut self, to: Offset) {
        if to <= self.log_start_offset {
            return;
        }
        let drop = self.index.partition_point(|e| e.next_offset() <= to);
        let dropped: u64 = self.index.drain(..drop).map(|e| e.batch_len as u64).sum();
        self.retained_bytes -= dropped;
        let start = self.index.first().map_or(self.next_offset, |e| e.base_offset);
        self.log_start_offset = self.log_start_offset.max(start);
        let start = self.log_start_offset;
        self.record_deadlines = self.record_deadlines.split_off(&start);
        for cursor in self.shared.values_mut() {
            cursor.records = cursor.records.split_off(&start);
            cursor.start = cursor.start.max(start);
        }
        self.rebuild_time_marks();
    }
}

/// How long to rest between storage compaction passes while they still find work.
const COMPACTION_REST: Duration = Duration::from_millis(200);

/// Compacts storage, pass after pass while there is work (a deleted topic's space waits
/// behind the live data copied forward), for at most `budget`.
async fn maintain_storage(b: &Broker, budget: Duration) {
    let until = tokio::time::Instant::now() + budget;
    loop {
        let engine = b.engine().clone();
        match tidemark_raft::blocking::run_blocking(move || engine.maintain()).await {
            Ok(0) => return,
            Ok(bytes) => tracing::debug!(bytes, "storage compaction copied live data forward"),
            Err(e) => {
                tracing::warn!(error = %e, "storage compaction failed; it is retried next pass");
                return;
            }
        }
        if tokio::time::Instant::now() + COMPACTION_REST >= until {
            return;
        }
        tokio::time::sleep(COMPACTION_REST).await;
    }
}

/// Runs until the broker is dropped: one retention and compaction pass per `every`.
pub async fn run(broker: Weak<Broker>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(b) = broker.upgrade() else { return };
        b.enforce_retention().await;
        b.compact_logs().await;
        maintain_storage(&b, every).await;
    }
}

impl Broker {
    /// Proposes a Trim on every partition this node leads whose retention has passed.
    async fn enforce_retention(&self) {
        for topic in self.topics() {
            let config = topic.config;
            if config.retention_ms == 0 && config.retention_bytes == 0 {
                continue;
            }
            for p in 0..topic.partition_count() {
                let Some(r) = self.local_replica(topic.group(p)) else { continue };
                if r.raft.metrics().borrow_watched().state != openraft::ServerState::Leader {
                    continue;
                }
                let (start, point) = {
                    let st = r.shared.read();
                    (st.log_start_offset, st.retention_point(&config, now_ms()))
                };
                if point <= start {
                    continue;
                }
                match tokio::time::timeout(TRIM_TIMEOUT, r.raft.client_write(trim_command(point))).await {
                    Ok(Ok(_)) => {
                        tracing::debug!(topic = %topic.name, partition = p, from = start, to = point, "retention trimmed the log")
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(topic = %topic.name, partition = p, error = %e, "retention trim not applied")
                    }
                    Err(_) => tracing::debug!(topic = %topic.name, partition = p, "retention trim timed out"),
                }
            }
        }
    }

    /// Snapshots and purges every group on this node as far as its state allows.
    async fn compact_logs(&self) {
        let every = self.cfg.checkpoints.entries;
        let _ = compact(&self.meta_raft, None, every).await;
        let replicas: Vec<_> = self.replicas.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        for r in replicas {
            let retained_from = r.shared.read().retained_from();
            let _ = compact(&r.raft, Some(retained_from), every).await;
        }
    }
}

/// One step of compaction for a group: a purge up to the snapshot the previous step built,
/// then a new snapshot if the purge point can move further. Both every step: under steady
/// writes retention moves the point on every pass, and a purge that waited for a quiet
/// pass would never run. `retained_from` is `Some` for a partition (its oldest retained
/// entry, if any); the metadata group keeps no data in its log and snapshots once `every`
/// entries were applied since the last snapshot.
async fn compact(raft: &Raft, retained_from: Option<Option<u64>>, every: u64) -> Result<(), String> {
    let (applied, snapshot, purged) = {
        let m = raft.metrics().borrow_watched().clone();
        (m.last_applied.map(|l| l.index), m.snapshot.map(|l| l.index), m.purged.map(|l| l.index))
    };
    let Some(applied) = applied else { return Ok(()) };
    let snap = snapshot.unwrap_or(0);
    let due = match retained_from {
        None => applied >= snap.saturating_add(every),
        Some(None) => applied > snap,
        Some(Some(first)) => first.saturating_sub(1).min(applied) > snap,
    };
    let mut purge_to = snapshot.filter(|_| snapshot > purged);
    if due {
        raft.trigger().snapshot().await.map_err(|e| e.to_string())?;
        // Building is quick (small state); purging right after it, not a pass later,
        // keeps the disk one pass of writes closer to what retention keeps.
        let built =
            raft.wait(Some(SNAPSHOT_WAIT)).metrics(|m| m.snapshot.map(|l| l.index) > snapshot, "snapshot built").await;
        if let Ok(m) = built {
            purge_to = m.snapshot.map(|l| l.index).filter(|s| Some(*s) > purged);
        }
    }
    if let Some(index) = purge_to {
        raft.trigger().purge_log(index).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::{append_command, PartitionLogic, PartitionShared};
    use bytes::Bytes;
    use tidemark_raft::StateMachineLogic;
    use tidemark_types::{Record, RecordBatchBuilder};

    /// Four batches of two records, appended at leader times 1000, 2000, 3000, 4000.
    fn partition() -> (Arc<PartitionShared>, PartitionLogic, u64) {
        let shared = PartitionShared::new();
        let mut logic = PartitionLogic(shared.clone());
        let mut len = 0;
        for i in 0..4u64 {
            let mut b = RecordBatchBuilder::new();
            for _ in 0..2 {
                b.push(Record { value: Bytes::from_static(b"value"), ..Default::default() });
            }
            let batch = b.build(None);
            len = batch.len() as u64;
            logic.apply(10 + i, &append_command(&batch, 1000 * (i as i64 + 1), 60_000));
        }
        (shared, logic, len)
    }

    use std::sync::Arc;

    #[test]
    fn retention_by_time_and_size_cuts_whole_leading_batches() {
        let (shared, _, len) = partition();
        let st = shared.read();
        assert_eq!(st.retained_bytes, 4 * len);
        let by_time = |ms| TopicConfig { retention_ms: ms, ..Default::default() };
        assert_eq!(st.retention_point(&by_time(0), 10_000), 0, "0 keeps forever");
        assert_eq!(st.retention_point(&by_time(1500), 3600), 4, "appended before 2100: two batches");
        assert_eq!(st.retention_point(&by_time(1), 1_000_000), 8, "all of it");
        let by_size = |b| TopicConfig { retention_bytes: b, ..Default::default() };
        assert_eq!(st.retention_point(&by_size(2 * len), 0), 4, "keeps exactly two batches");
        assert_eq!(st.retention_point(&by_size(2 * len - 1), 0), 6, "a batch is never split");
        assert_eq!(st.retention_point(&by_size(100 * len), 0), 0);
    }

    #[test]
    fn trim_is_a_replicated_command_and_never_goes_back() {
        let (shared, mut logic, len) = partition();
        assert_eq!(logic.retained_from(), Some(10));
        logic.apply(20, &trim_command(4));
        {
            let st = shared.read();
            assert_eq!((st.log_start_offset, st.next_offset, st.retained_bytes), (4, 8, 2 * len));
            assert_eq!(st.index[0].base_offset, 4, "the batches below the start are gone");
            assert_eq!(st.find(5), Some(0));
        }
        assert_eq!(logic.retained_from(), Some(12), "the oldest retained batch's log entry");
        logic.apply(21, &trim_command(2));
        assert_eq!(shared.read().log_start_offset, 4, "an older trim changes nothing");
        logic.apply(22, &trim_command(100));
        let st = shared.read();
        assert_eq!((st.log_start_offset, st.next_offset, st.retained_bytes), (8, 8, 0), "clamped to the end");
        drop(st);
        assert_eq!(logic.retained_from(), None);
    }

    #[test]
    fn trim_survives_snapshot_and_restore() {
        let (_, mut logic, _) = partition();
        logic.apply(20, &trim_command(6));
        let other = PartitionShared::new();
        let mut restored = PartitionLogic(other.clone());
        restored.restore(&logic.snapshot()).unwrap();
        assert_eq!(other.read().log_start_offset, 6);
        assert_eq!(restored.retained_from(), Some(13));
    }
}
