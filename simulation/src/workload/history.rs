//! What the workloads observed during a run: every send with its outcome, every record
//! a reader saw. Checkers judge the cluster against this record, so it must say exactly
//! what the SDK promised (acknowledged), what it could not vouch for (in flight: sent but
//! failed or unknown, so it may or may not be in the log) and what readers were shown.
//!
//! Each value names its producer and that producer's sequence number (`p3-s000123`), so
//! a record found in the log can be traced back to the one send that wrote it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// A producer as the checkers need to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerInfo {
    pub id: u32,
    /// Only idempotent producers promise "no duplicates"; a plain producer's retry may
    /// legitimately write a batch twice.
    pub idempotent: bool,
}

/// How one send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The cluster acknowledged the record at this offset.
    Acked { offset: u64 },
    /// The send failed or its result is unknown: the record may or may not be written.
    InFlight { error: String },
}

/// One record sent by a workload producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    pub producer: u32,
    pub seq: u64,
    pub topic: String,
    pub partition: u32,
    pub outcome: Outcome,
}

impl Send {
    pub fn value(&self) -> String {
        record_value(self.producer, self.seq)
    }

    pub fn acked_offset(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Acked { offset } => Some(offset),
            Outcome::InFlight { .. } => None,
        }
    }
}

/// One record a reader was shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// Which reader saw it: `final` for the read after heal, `consumer-N` during faults.
    pub reader: String,
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub value: String,
}

/// A consumer group a workload ran, as the checkers need to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: String,
    pub topic: String,
    pub shared: bool,
    /// Shared mode: where the group's dead letters go.
    pub dead_letter_topic: Option<String>,
}

/// One record a member of a partitioned group was handed by `poll`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDelivery {
    pub group: String,
    /// The workload's name for the member task's consumer (`g-part/m4`): a new one after
    /// each close or kill, while `member_id` also changes when the SDK rejoins.
    pub member: String,
    pub member_id: String,
    /// Virtual time the poll returned.
    pub at: Duration,
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub value: String,
    /// The generation the member believed it owned the partition under.
    pub generation: u64,
}

/// What a shared-group member did with a record it was handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Ack,
    Release,
    Reject,
    /// Handed out to a member that was then killed before settling it.
    Abandoned,
}

/// One record a member of a shared group was handed, and how it settled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedDelivery {
    pub group: String,
    pub member: String,
    pub at: Duration,
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub value: String,
    pub delivery_count: u32,
    pub settle: Settle,
}

/// The liveness probe's producer id: recorded like any producer so its records are not
/// phantoms; it writes after the workloads stopped, so group checkers leave it out.
pub const PROBE_PRODUCER: u32 = 0;

/// The value a producer writes for its `seq`-th record.
pub fn record_value(producer: u32, seq: u64) -> String {
    format!("p{producer}-s{seq:06}")
}

/// `(producer, seq)` of a value written by [`record_value`], or `None` for anything else.
pub fn parse_value(value: &str) -> Option<(u32, u64)> {
    let (p, s) = value.strip_prefix('p')?.split_once("-s")?;
    Some((p.parse().ok()?, s.parse().ok()?))
}

/// Everything observed in one run.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub producers: Vec<ProducerInfo>,
    pub sends: Vec<Send>,
    /// Reads made while faults were running.
    pub reads: Vec<Read>,
    /// The whole log of every partition, read after heal: (topic, partition) -> records
    /// in delivery order. `Err` if it could not be read to its end.
    pub final_log: BTreeMap<(String, u32), Vec<Read>>,
    pub final_read_error: Option<String>,
    /// Things the workloads worked around that are not invariant violations but should
    /// not happen either (an SDK call that hung past its own timeout).
    pub anomalies: Vec<String>,
    pub groups: Vec<GroupInfo>,
    pub group_deliveries: Vec<GroupDelivery>,
    pub shared_deliveries: Vec<SharedDelivery>,
    /// Every dead-letter topic read to its end after heal: topic -> records.
    pub dead_letters: BTreeMap<String, Vec<Read>>,
}

impl History {
    /// The sends of `producer`, in sequence order.
    pub fn sends_of(&self, producer: u32) -> impl Iterator<Item = &Send> {
        self.sends.iter().filter(move |s| s.producer == producer)
    }

    /// Values of `topic`'s acknowledged records whose producer is not `except` (the
    /// liveness probe, which writes after the group workloads stopped).
    pub fn acked_values(&self, topic: &str, except: u32) -> impl Iterator<Item = (&Send, String)> {
        let topic = topic.to_string();
        self.sends
            .iter()
            .filter(move |s| s.topic == topic && s.producer != except && s.acked_offset().is_some())
            .map(|s| (s, s.value()))
    }

    /// (producer, seq) -> the send, for looking up what a read record was.
    pub fn send_index(&self) -> BTreeMap<(u32, u64), &Send> {
        self.sends.iter().map(|s| ((s.producer, s.seq), s)).collect()
    }
}

/// The history shared by the workload tasks while they run.
#[derive(Clone, Default, Debug)]
pub struct Recorder(Arc<Mutex<History>>);

impl Recorder {
    pub fn lock(&self) -> MutexGuard<'_, History> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn take(&self) -> History {
        std::mem::take(&mut *self.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        assert_eq!(record_value(3, 123), "p3-s000123");
        assert_eq!(parse_value("p3-s000123"), Some((3, 123)));
        assert_eq!(parse_value("value-7"), None);
        assert_eq!(parse_value("p3-sx"), None);
    }
}
