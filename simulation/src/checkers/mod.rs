//! Checkers: one invariant per file, each a pure function of what the run observed.
//!
//! ```text
//!   History (workloads) ─┐
//!   replica logs ────────┼─> RunRecord ─> every checker in CHECKERS ─> Vec<Violation>
//!   liveness probe ──────┘
//! ```
//!
//! A checker returns a [`Violation`] with a one-line message rather than panicking, so the
//! seed runner prints one line per failing seed and carries on. A later feature (consumer
//! groups, retention, transactions) adds what it observes to [`RunRecord`] and its checker
//! to [`CHECKERS`].

pub mod acked_durable;
pub mod dense_identical_replicas;
pub mod group_at_least_once;
pub mod group_exclusive_ownership;
pub mod liveness;
pub mod no_duplicates;
pub mod no_phantom_reads;
pub mod producer_order;
pub mod shared_all_settled;
pub mod stable_reads;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::workload::history::Read;
use crate::workload::History;

/// One stored batch of one replica, as found in that node's engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    pub base_offset: u64,
    pub record_count: u32,
    pub log_index: u64,
    pub bytes: Bytes,
}

/// One replica of a partition, read from the harness-owned engine of its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaLog {
    pub node: u64,
    pub log_start: u64,
    pub next_offset: u64,
    pub batches: Vec<StoredBatch>,
    /// Why this replica could not be read (not running, entry missing, ...).
    pub error: Option<String>,
}

/// Every replica of one partition, read after the cluster healed and went quiet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionReplicas {
    pub topic: String,
    pub partition: u32,
    pub replicas: Vec<ReplicaLog>,
}

/// The liveness probe's results: how long each partition took to serve one write after heal.
#[derive(Debug, Clone, Default)]
pub struct Liveness {
    pub bound: Duration,
    pub probes: Vec<(String, u32, Result<Duration, String>)>,
}

/// Everything one run observed.
#[derive(Debug, Clone, Default)]
pub struct RunRecord {
    pub history: History,
    pub replicas: Vec<PartitionReplicas>,
    pub liveness: Liveness,
    /// Topics whose retention removes old records: only the replica comparison applies.
    pub retention_topics: Vec<String>,
}

impl RunRecord {
    /// (topic, partition, offset) -> value, from the final read (first delivery wins).
    pub fn final_values(&self) -> BTreeMap<(&str, u32, u64), &str> {
        let mut map = BTreeMap::new();
        for ((topic, p), reads) in &self.history.final_log {
            for r in reads {
                map.entry((topic.as_str(), *p, r.offset)).or_insert(r.value.as_str());
            }
        }
        map
    }

    /// Every record any reader was shown: the reads during faults, then the final read.
    pub fn all_reads(&self) -> impl Iterator<Item = &Read> {
        self.history.reads.iter().chain(self.history.final_log.values().flatten())
    }
}

/// A broken invariant: which checker, and what it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub checker: &'static str,
    pub message: String,
}

impl Violation {
    pub fn new(checker: &'static str, message: impl Into<String>) -> Violation {
        Violation { checker, message: message.into() }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.checker, self.message)
    }
}

pub type Check = fn(&RunRecord) -> Result<(), Violation>;

/// Every checker, run in this order at the end of each run.
pub const CHECKERS: &[Check] = &[
    acked_durable::check,
    dense_identical_replicas::check,
    producer_order::check,
    no_duplicates::check,
    no_phantom_reads::check,
    stable_reads::check,
    liveness::check,
    group_exclusive_ownership::check,
    group_at_least_once::check,
    shared_all_settled::check,
];

/// Runs every checker; an empty result means the run upheld every invariant.
pub fn check_all(run: &RunRecord) -> Vec<Violation> {
    CHECKERS.iter().filter_map(|check| check(run).err()).collect()
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Small builders for checker unit tests.
    use super::*;
    use crate::workload::history::{record_value, Outcome, ProducerInfo, Send};

    pub fn send(producer: u32, seq: u64, partition: u32, acked: Option<u64>) -> Send {
        let outcome = match acked {
            Some(offset) => Outcome::Acked { offset },
            None => Outcome::InFlight { error: "timeout".into() },
        };
        Send { producer, seq, topic: "t".into(), partition, outcome }
    }

    pub fn read(partition: u32, offset: u64, producer: u32, seq: u64) -> Read {
        Read { reader: "final".into(), topic: "t".into(), partition, offset, value: record_value(producer, seq) }
    }

    /// A run whose final log of partition 0 holds `log` ((producer, seq) per offset).
    pub fn run(sends: Vec<Send>, log: &[(u32, u64)], idempotent: bool) -> RunRecord {
        let mut history = History::default();
        for p in [1, 2] {
            history.producers.push(ProducerInfo { id: p, idempotent });
        }
        history.sends = sends;
        let reads = log.iter().enumerate().map(|(o, (p, s))| read(0, o as u64, *p, *s)).collect();
        history.final_log.insert(("t".into(), 0), reads);
        RunRecord { history, ..Default::default() }
    }
}
