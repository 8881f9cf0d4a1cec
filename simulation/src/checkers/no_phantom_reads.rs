//! No reader ever sees a record that was neither acknowledged nor in flight: every value
//! read names a send the workload really made, to that topic and partition.
//!
//! Why it matters: a record nobody wrote (a corrupted batch, an entry read from the wrong
//! group or at the wrong index, bytes from another partition) is worse than a lost one:
//! consumers act on it. In-flight records count as written because a failed send may
//! still have been committed before its answer was lost.

use super::{RunRecord, Violation};
use crate::workload::history::parse_value;

const NAME: &str = "no-phantom-reads";

pub fn check(run: &RunRecord) -> Result<(), Violation> {
    let sends = run.history.send_index();
    for r in run.all_reads() {
        let sent = parse_value(&r.value).and_then(|id| sends.get(&id));
        let ok = sent.is_some_and(|s| s.topic == r.topic && s.partition == r.partition);
        if !ok {
            let what = match sent {
                Some(s) => format!("sent to {}/{}", s.topic, s.partition),
                None => "never sent".to_string(),
            };
            return Err(Violation::new(
                NAME,
                format!("{} read {:?} at {}/{}@{}: {what}", r.reader, r.value, r.topic, r.partition, r.offset),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::{run, send};

    #[test]
    fn in_flight_records_may_be_read() {
        let sends = vec![send(1, 1, 0, None), send(1, 2, 0, Some(1))];
        assert_eq!(check(&run(sends, &[(1, 1), (1, 2)], false)), Ok(()));
    }

    #[test]
    fn unsent_or_misplaced_records_fail() {
        let err = check(&run(vec![send(1, 1, 0, Some(0))], &[(1, 1), (2, 9)], false)).unwrap_err();
        assert!(err.message.contains("never sent"), "{err}");
        let err = check(&run(vec![send(1, 1, 3, Some(0))], &[(1, 1)], false)).unwrap_err();
        assert!(err.message.contains("sent to t/3"), "{err}");
    }
}
