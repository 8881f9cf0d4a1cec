//! Every acknowledged record can be read, unchanged and at its acknowledged offset, once
//! the faults stop and the cluster heals.
//!
//! Why it matters: an acknowledgement is the only promise a producer gets. A record lost
//! after it was acknowledged (an fsync that did not happen, a leader elected without it, a
//! truncated committed entry) is silent data loss that no client can detect or repair.

use super::{RunRecord, Violation};

const NAME: &str = "acked-durable";

pub fn check(run: &RunRecord) -> Result<(), Violation> {
    if let Some(e) = &run.history.final_read_error {
        return Err(Violation::new(NAME, format!("cannot verify acknowledged records: final read failed: {e}")));
    }
    let log = run.final_values();
    let acked = run.history.sends.iter().filter_map(|s| Some((s, s.acked_offset()?)));
    let mut lost =
        acked.filter(|(s, offset)| log.get(&(s.topic.as_str(), s.partition, *offset)) != Some(&s.value().as_str()));
    match lost.next() {
        None => Ok(()),
        Some((s, offset)) => {
            let found = log.get(&(s.topic.as_str(), s.partition, offset)).copied().unwrap_or("nothing");
            let more = lost.count();
            Err(Violation::new(
                NAME,
                format!(
                    "acknowledged {} at {}/{}@{offset} lost: found {found} there ({more} more lost)",
                    s.value(),
                    s.topic,
                    s.partition
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::test_support::{run, send};

    #[test]
    fn passes_when_every_ack_is_in_the_log() {
        let r = run(vec![send(1, 1, 0, Some(0)), send(1, 2, 0, None)], &[(1, 1)], false);
        assert_eq!(check(&r), Ok(()));
    }

    #[test]
    fn fails_on_a_lost_or_moved_ack() {
        let r = run(vec![send(1, 1, 0, Some(0)), send(1, 2, 0, Some(1))], &[(1, 1)], false);
        assert!(check(&r).unwrap_err().message.contains("p1-s000002"));
        let moved = run(vec![send(1, 1, 0, Some(1))], &[(2, 1), (1, 1)], false);
        assert!(check(&moved).is_ok());
        let wrong = run(vec![send(1, 1, 0, Some(0))], &[(2, 1), (1, 1)], false);
        assert!(check(&wrong).unwrap_err().message.contains("found p2-s000001"));
    }

    #[test]
    fn fails_when_the_log_cannot_be_read() {
        let mut r = run(vec![], &[], false);
        r.history.final_read_error = Some("timeout".into());
        assert!(check(&r).is_err());
    }
}
