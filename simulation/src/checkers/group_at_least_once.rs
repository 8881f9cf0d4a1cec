//! A partitioned group processes every acknowledged record of its topic at least once:
//! after heal and a drain period, each record the producers were acknowledged for was
//! handed to some member.
//!
//! Why it matters: a group commits positions and moves partitions between members while
//! the cluster fails; a commit past what was handed out, or a new owner starting after a
//! position nobody reached, silently skips records. Redelivery (the same record handed
//! to two members after an unclean move) is allowed; a skip is not.

use std::collections::BTreeSet;

use super::{RunRecord, Violation};
use crate::workload::history::PROBE_PRODUCER;

const NAME: &str = "group-at-least-once";

pub fn check(run: &RunRecord) -> Result<(), Violation> {
    let h = &run.history;
    for g in h.groups.iter().filter(|g| !g.shared) {
        let processed: BTreeSet<&str> =
            h.group_deliveries.iter().filter(|d| d.group == g.name).map(|d| d.value.as_str()).collect();
        let missing: Vec<String> = h
            .acked_values(&g.topic, PROBE_PRODUCER)
            .filter(|(_, v)| !processed.contains(v.as_str()))
            .map(|(s, v)| format!("{v} ({}/{}@{})", s.topic, s.partition, s.acked_offset().unwrap_or_default()))
            .collect();
        if let Some(first) = missing.first() {
            return Err(Violation::new(
                NAME,
                format!("group {}: {} acknowledged records never processed, first {first}", g.name, missing.len()),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::group_exclusive_ownership::tests::delivery;
    use crate::checkers::test_support::send;
    use crate::workload::history::GroupInfo;
    use crate::workload::History;

    fn run(acked: &[u64], processed: &[u64]) -> RunRecord {
        let history = History {
            groups: vec![GroupInfo { name: "g".into(), topic: "t".into(), shared: false, dead_letter_topic: None }],
            sends: acked.iter().map(|s| send(1, *s, 0, Some(*s))).chain([send(0, 1, 0, Some(99))]).collect(),
            group_deliveries: processed.iter().map(|s| delivery("a", 0, 0, *s, 1)).collect(),
            ..Default::default()
        };
        RunRecord { history, ..Default::default() }
    }

    #[test]
    fn a_skipped_record_fails() {
        let err = check(&run(&[1, 2, 3], &[1, 3])).unwrap_err();
        assert!(err.message.contains("1 acknowledged records never processed, first p1-s000002"), "{err}");
    }

    #[test]
    fn redelivery_passes_and_the_probe_is_left_out() {
        assert_eq!(check(&run(&[1, 2], &[1, 1, 2])), Ok(()));
    }
}
