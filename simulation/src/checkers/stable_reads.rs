//! Reads are stable: a record a consumer was shown while faults ran is the record the
//! healed log holds at that offset.
//!
//! Why it matters: a fetch may only serve committed entries. If a reader is shown an entry
//! that a later leader truncates (a dirty read, say from a deposed leader serving its
//! uncommitted tail), the consumer has acted on a record that, as far as the log is
//! concerned, never existed, and offset N now means two different things.

use super::{RunRecord, Violation};

const NAME: &str = "stable-reads";

pub fn check(run: &RunRecord) -> Result<(), Violation> {
    if run.history.final_read_error.is_some() {
        return Ok(()); // acked-durable reports the unreadable log
    }
    let log = run.final_values();
    for r in &run.history.reads {
        let now = log.get(&(r.topic.as_str(), r.partition, r.offset)).copied();
        if now != Some(r.value.as_str()) {
            return Err(Violation::new(
                NAME,
                format!(
                    "{} read {} at {}/{}@{} but the healed log has {}",
                    r.reader,
                    r.value,
                    r.topic,
                    r.partition,
                    r.offset,
                    now.unwrap_or("nothing")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::{read, run, send};

    #[test]
    fn reads_matching_the_log_pass_and_others_fail() {
        let mut r = run(vec![send(1, 1, 0, Some(0)), send(1, 2, 0, None)], &[(1, 1)], false);
        r.history.reads.push(read(0, 0, 1, 1));
        assert_eq!(check(&r), Ok(()));
        r.history.reads.push(read(0, 1, 1, 2));
        assert!(check(&r).unwrap_err().message.contains("has nothing"));
    }
}
