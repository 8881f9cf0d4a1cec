//! In a shared group every acknowledged record of its topic ends settled: after heal and
//! a drain period, some member acknowledged it, or it is in the group's dead-letter topic.
//! That covers records past the group's TTL: the simulated shared groups keep the default
//! expired action (dead-letter), so an expired record is settled only once it is in the
//! dead-letter topic; a record silently dropped would be reported as lost.
//!
//! Why it matters: a shared group leases records to members that may die, release or
//! reject them; lease expiry, redelivery and dead-lettering are what keep a record from
//! falling between members. Redeliveries (two members handed one record, a record acked
//! after a release) are allowed; a record nobody settled and nobody dead-lettered is lost.

use std::collections::BTreeSet;

use super::{RunRecord, Violation};
use crate::workload::history::{Settle, PROBE_PRODUCER};

const NAME: &str = "shared-all-settled";

pub fn check(run: &RunRecord) -> Result<(), Violation> {
    let h = &run.history;
    for g in h.groups.iter().filter(|g| g.shared) {
        let mut settled: BTreeSet<&str> = h
            .shared_deliveries
            .iter()
            .filter(|d| d.group == g.name && d.settle == Settle::Ack)
            .map(|d| d.value.as_str())
            .collect();
        let dead = g.dead_letter_topic.as_ref().and_then(|t| h.dead_letters.get(t));
        settled.extend(dead.into_iter().flatten().map(|r| r.value.as_str()));
        let missing: Vec<String> = h
            .acked_values(&g.topic, PROBE_PRODUCER)
            .filter(|(_, v)| !settled.contains(v.as_str()))
            .map(|(s, v)| {
                let mut seen = h.shared_deliveries.iter().filter(|d| d.group == g.name && d.value == v);
                let last = seen.next_back().map_or("never delivered".into(), |d| {
                    format!("last delivered to {} at {:?} (count {}, {:?})", d.member, d.at, d.delivery_count, d.settle)
                });
                format!("{v} ({}/{}@{}, {last})", s.topic, s.partition, s.acked_offset().unwrap_or_default())
            })
            .collect();
        if let Some(first) = missing.first() {
            return Err(Violation::new(
                NAME,
                format!(
                    "group {}: {} acknowledged records neither acked nor dead-lettered, first {first}",
                    g.name,
                    missing.len()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::checkers::test_support::{read, send};
    use crate::workload::history::{record_value, GroupInfo, SharedDelivery};
    use crate::workload::History;

    fn delivery(seq: u64, settle: Settle) -> SharedDelivery {
        SharedDelivery {
            group: "g".into(),
            member: "g/m1".into(),
            at: Duration::from_secs(1),
            topic: "t".into(),
            partition: 0,
            offset: seq,
            value: record_value(1, seq),
            delivery_count: 1,
            settle,
        }
    }

    fn run(acked: &[u64], deliveries: Vec<SharedDelivery>, dead: &[u64]) -> RunRecord {
        let dlq = "t.g.dlq".to_string();
        let history = History {
            groups: vec![GroupInfo {
                name: "g".into(),
                topic: "t".into(),
                shared: true,
                dead_letter_topic: Some(dlq.clone()),
            }],
            sends: acked.iter().map(|s| send(1, *s, 0, Some(*s))).chain([send(0, 1, 0, Some(99))]).collect(),
            shared_deliveries: deliveries,
            dead_letters: [(dlq, dead.iter().map(|s| read(0, *s, 1, *s)).collect())].into(),
            ..Default::default()
        };
        RunRecord { history, ..Default::default() }
    }

    #[test]
    fn a_released_record_never_settled_fails() {
        let deliveries = vec![delivery(1, Settle::Ack), delivery(2, Settle::Release), delivery(3, Settle::Abandoned)];
        let err = check(&run(&[1, 2, 3], deliveries, &[3])).unwrap_err();
        assert!(
            err.message.contains("1 acknowledged records neither acked nor dead-lettered, first p1-s000002"),
            "{err}"
        );
        assert!(err.message.contains("Release"), "{err}");
    }

    #[test]
    fn acked_or_dead_lettered_passes() {
        let deliveries = vec![delivery(1, Settle::Release), delivery(1, Settle::Ack), delivery(2, Settle::Reject)];
        assert_eq!(check(&run(&[1, 2], deliveries, &[2])), Ok(()));
    }
}
