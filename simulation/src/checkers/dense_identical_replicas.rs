//! Offsets are dense, and every replica holds byte-identical batches at each offset.
//!
//! Why it matters: an offset is a name a consumer stores and comes back to. A gap, a
//! repeat, or two replicas that disagree about what offset N holds means the answer
//! depends on which node leads when you ask: after the next failover a consumer silently
//! skips records or reads different ones. Replicas are compared byte for byte, batch by
//! batch, as read from each node's own storage engine after the cluster went quiet.

use super::{PartitionReplicas, ReplicaLog, RunRecord, Violation};

const NAME: &str = "dense-identical-replicas";

pub fn check(run: &RunRecord) -> Result<(), Violation> {
    for ((topic, partition), reads) in &run.history.final_log {
        for (expected, r) in reads.iter().enumerate() {
            if r.offset != expected as u64 {
                return Err(Violation::new(
                    NAME,
                    format!(
                        "{topic}/{partition}: the read from the start got offset {} where {expected} was due",
                        r.offset
                    ),
                ));
            }
        }
    }
    for part in &run.replicas {
        check_partition(run, part)
            .map_err(|m| Violation::new(NAME, format!("{}/{}: {m}", part.topic, part.partition)))?;
    }
    Ok(())
}

fn check_partition(run: &RunRecord, part: &PartitionReplicas) -> Result<(), String> {
    for r in &part.replicas {
        if let Some(e) = &r.error {
            return Err(format!("replica on node {} unreadable: {e}", r.node));
        }
        check_dense(r)?;
    }
    let Some(first) = part.replicas.first() else { return Ok(()) };
    for other in &part.replicas[1..] {
        if other.next_offset != first.next_offset || other.log_start != first.log_start {
            return Err(format!(
                "replicas did not converge: node {} has offsets {}..{}, node {} has {}..{}",
                first.node, first.log_start, first.next_offset, other.node, other.log_start, other.next_offset
            ));
        }
        for (a, b) in first.batches.iter().zip(&other.batches) {
            if (a.base_offset, a.record_count, &a.bytes) != (b.base_offset, b.record_count, &b.bytes) {
                return Err(format!(
                    "offset {}: node {} holds a {}-record batch of {} bytes (log index {}), node {} a {}-record batch of {} bytes at offset {} (log index {})",
                    a.base_offset, first.node, a.record_count, a.bytes.len(), a.log_index,
                    other.node, b.record_count, b.bytes.len(), b.base_offset, b.log_index
                ));
            }
        }
    }
    if run.history.final_read_error.is_none() && !run.retention_topics.contains(&part.topic) {
        let read = run.history.final_log.get(&(part.topic.clone(), part.partition)).map_or(0, Vec::len) as u64;
        if read != first.next_offset - first.log_start {
            return Err(format!(
                "the final read got {read} records, the replicas hold {}",
                first.next_offset - first.log_start
            ));
        }
    }
    Ok(())
}

/// Batches follow each other without gap or overlap from the log start to the log end.
fn check_dense(r: &ReplicaLog) -> Result<(), String> {
    let mut next = r.log_start;
    for b in &r.batches {
        if b.base_offset != next {
            return Err(format!(
                "node {}: batch at log index {} starts at offset {} where {next} was due",
                r.node, b.log_index, b.base_offset
            ));
        }
        next += b.record_count as u64;
    }
    if next != r.next_offset {
        return Err(format!("node {}: batches end at offset {next} but the log end is {}", r.node, r.next_offset));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::checkers::StoredBatch;

    fn replica(node: u64, batches: &[(u64, u32, &'static str)]) -> ReplicaLog {
        let batches: Vec<StoredBatch> = batches
            .iter()
            .enumerate()
            .map(|(i, (base, n, b))| StoredBatch {
                base_offset: *base,
                record_count: *n,
                log_index: i as u64 + 3,
                bytes: Bytes::from_static(b.as_bytes()),
            })
            .collect();
        let next = batches.last().map_or(0, |b| b.base_offset + b.record_count as u64);
        ReplicaLog { node, log_start: 0, next_offset: next, batches, error: None }
    }

    fn with(replicas: Vec<ReplicaLog>) -> RunRecord {
        let mut r = RunRecord::default();
        r.history.final_read_error = Some("not judged here".into());
        r.replicas.push(PartitionReplicas { topic: "t".into(), partition: 0, replicas });
        r
    }

    #[test]
    fn identical_dense_replicas_pass() {
        let a = replica(1, &[(0, 2, "ab"), (2, 1, "c")]);
        assert_eq!(check(&with(vec![a.clone(), ReplicaLog { node: 2, ..a }])), Ok(()));
    }

    #[test]
    fn diverging_bytes_gaps_and_lengths_fail() {
        let a = replica(1, &[(0, 2, "ab"), (2, 1, "c")]);
        let err = check(&with(vec![a.clone(), replica(2, &[(0, 2, "ab"), (2, 1, "x")])])).unwrap_err();
        assert!(err.message.contains("offset 2"), "{err}");
        let err = check(&with(vec![a.clone(), replica(2, &[(0, 2, "ab")])])).unwrap_err();
        assert!(err.message.contains("did not converge"), "{err}");
        let err = check(&with(vec![replica(1, &[(0, 2, "ab"), (3, 1, "c")])])).unwrap_err();
        assert!(err.message.contains("where 2 was due"), "{err}");
    }

    #[test]
    fn a_gap_in_the_final_read_fails() {
        let mut r = crate::checkers::test_support::run(vec![], &[(1, 1), (1, 2)], false);
        r.history.final_log.values_mut().next().unwrap().remove(0);
        assert!(check(&r).unwrap_err().message.contains("got offset 1 where 0"));
    }
}
