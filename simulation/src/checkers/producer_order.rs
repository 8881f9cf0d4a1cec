//! Each producer's records stay in send order within a partition.
//!
//! Why it matters: per-partition order is what lets consumers treat a partition as a
//! sequence of facts (an account's debits, an order's state changes). Judged on the first
//! occurrence in the log of each *acknowledged* record: a plain producer's retry may write
//! a batch twice (the later copy is a duplicate, not a reordering) and a send that failed
//! may still land late, but a record acknowledged before the next was sent must come first.
//! The workload keeps one batch in flight for plain producers, which is what the SDK needs
//! to promise this; idempotent producers promise it with any window.

use std::collections::{BTreeMap, BTreeSet};

use super::{RunRecord, Violation};
use crate::workload::history::parse_value;

const NAME: &str = "producer-order";

pub fn check(run: &RunRecord) -> Result<(), Violation> {
    let acked: BTreeSet<(u32, u64)> =
        run.history.sends.iter().filter(|s| s.acked_offset().is_some()).map(|s| (s.producer, s.seq)).collect();
    for ((topic, partition), reads) in &run.history.final_log {
        let mut seen = BTreeSet::new();
        let mut last: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        for r in reads {
            let Some((producer, seq)) = parse_value(&r.value) else { continue };
            if !acked.contains(&(producer, seq)) || !seen.insert((producer, seq)) {
                continue;
            }
            if let Some((prev_seq, prev_offset)) = last.get(&producer) {
                if *prev_seq > seq {
                    return Err(Violation::new(
                        NAME,
                        format!(
                            "{topic}/{partition}: producer p{producer} s{seq} at offset {} comes after s{prev_seq} at offset {prev_offset}",
                            r.offset
                        ),
                    ));
                }
            }
            last.insert(producer, (seq, r.offset));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::{run, send};

    #[test]
    fn a_retried_duplicate_is_not_a_reordering() {
        // s1 written, ack lost, retried (duplicate at 1), then s2: order of firsts holds.
        let sends = vec![send(1, 1, 0, Some(1)), send(1, 2, 0, Some(2))];
        assert_eq!(check(&run(sends, &[(1, 1), (1, 1), (1, 2)], false)), Ok(()));
    }

    #[test]
    fn a_failed_send_landing_late_is_allowed() {
        let sends = vec![send(1, 1, 0, None), send(1, 2, 0, Some(0))];
        assert_eq!(check(&run(sends, &[(1, 2), (1, 1)], false)), Ok(()));
    }

    #[test]
    fn acknowledged_records_out_of_order_fail() {
        let sends = vec![send(1, 1, 0, Some(1)), send(1, 2, 0, Some(0)), send(2, 1, 0, Some(2))];
        let err = check(&run(sends, &[(1, 2), (1, 1), (2, 1)], false)).unwrap_err();
        assert!(err.message.contains("p1 s1"), "{err}");
    }
}
