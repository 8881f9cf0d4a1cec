//! An idempotent producer never produces a duplicate: each of its records is in the log
//! exactly once, however often the SDK retried it.
//!
//! Why it matters: idempotence is the first half of exactly-once. A retried send that
//! writes twice makes every downstream count, sum or side effect wrong. Plain producers
//! make no such promise (a retry after a lost answer writes again), so only producers the
//! workload marks idempotent are judged; see `workload::producers::IDEMPOTENT_PRODUCERS`.

use std::collections::{BTreeMap, BTreeSet};

use super::{RunRecord, Violation};
use crate::workload::history::parse_value;

const NAME: &str = "no-duplicates";

pub fn check(run: &RunRecord) -> Result<(), Violation> {
    let idempotent: BTreeSet<u32> = run.history.producers.iter().filter(|p| p.idempotent).map(|p| p.id).collect();
    if idempotent.is_empty() {
        return Ok(());
    }
    let mut first: BTreeMap<(u32, u64), (String, u32, u64)> = BTreeMap::new();
    for ((topic, partition), reads) in &run.history.final_log {
        for r in reads {
            let Some(id) = parse_value(&r.value).filter(|(p, _)| idempotent.contains(p)) else { continue };
            if let Some((t, p, o)) = first.get(&id) {
                if (t, p, o) != (topic, partition, &r.offset) {
                    return Err(Violation::new(
                        NAME,
                        format!("{} written twice: {t}/{p}@{o} and {topic}/{partition}@{}", r.value, r.offset),
                    ));
                }
            } else {
                first.insert(id, (topic.clone(), *partition, r.offset));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::{run, send};

    #[test]
    fn duplicates_of_an_idempotent_producer_fail() {
        let sends = vec![send(1, 1, 0, Some(0))];
        let err = check(&run(sends, &[(1, 1), (1, 1)], true)).unwrap_err();
        assert!(err.message.contains("p1-s000001 written twice"), "{err}");
    }

    #[test]
    fn plain_producers_may_duplicate() {
        let sends = vec![send(1, 1, 0, Some(0))];
        assert_eq!(check(&run(sends, &[(1, 1), (1, 1)], false)), Ok(()));
    }

    #[test]
    fn distinct_records_pass() {
        let sends = vec![send(1, 1, 0, Some(0)), send(1, 2, 0, Some(1))];
        assert_eq!(check(&run(sends, &[(1, 1), (1, 2)], true)), Ok(()));
    }
}
