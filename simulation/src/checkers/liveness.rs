//! Liveness: once the faults stop and every node is back, each partition elects a leader
//! and serves a write within a bound of virtual time.
//!
//! Why it matters: the safety checkers pass trivially for a cluster that stops working.
//! A cluster that never recovers from a fault schedule (a node that cannot rejoin, an
//! election that never settles, a client that never finds the new leader) is an outage.

use super::{RunRecord, Violation};

const NAME: &str = "liveness";

pub fn check(run: &RunRecord) -> Result<(), Violation> {
    let bound = run.liveness.bound;
    for (topic, partition, result) in &run.liveness.probes {
        match result {
            Ok(took) if *took <= bound => {}
            Ok(took) => {
                return Err(Violation::new(
                    NAME,
                    format!("{topic}/{partition} took {took:?} to serve a write (bound {bound:?})"),
                ))
            }
            Err(e) => {
                return Err(Violation::new(
                    NAME,
                    format!("{topic}/{partition} served no write within {bound:?} after heal: {e}"),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::checkers::Liveness;

    #[test]
    fn slow_or_failed_probes_fail() {
        let liveness =
            Liveness { bound: Duration::from_secs(10), probes: vec![("t".into(), 0, Ok(Duration::from_secs(1)))] };
        let mut r = RunRecord { liveness, ..Default::default() };
        assert_eq!(check(&r), Ok(()));
        r.liveness.probes.push(("t".into(), 1, Ok(Duration::from_secs(11))));
        assert!(check(&r).is_err());
        r.liveness.probes[1].2 = Err("timeout".into());
        assert!(check(&r).unwrap_err().message.contains("served no write"));
    }
}
