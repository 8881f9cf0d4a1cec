use super::*;
use crate::partition::{append_command, PartitionLogic, PartitionShared};
use tidemark_raft::StateMachineLogic;
use tidemark_types::{Record, RecordBatchBuilder};

const LIMITS: ShareLimits = ShareLimits { lock_ms: 1_000, max_attempts: 2, ttl_ms: 0, backoff_ms: 100 };

struct P {
    shared: std::sync::Arc<PartitionShared>,
    logic: PartitionLogic,
    index: u64,
}

impl P {
    fn new(records: usize, ts: i64) -> P {
        let shared = PartitionShared::new();
        let mut p = P { logic: PartitionLogic(shared.clone()), shared, index: 0 };
        let mut b = RecordBatchBuilder::new();
        for i in 0..records {
            b.push(Record { value: Bytes::from(format!("v{i}")), timestamp_ms: ts, ..Default::default() });
        }
        p.index += 1;
        p.logic.apply(p.index, &append_command(&b.build(None), 0, 0));
        p
    }

    fn run(&mut self, cmd: ShareCommand) -> ShareResult {
        self.index += 1;
        bincode::deserialize(&self.logic.apply(self.index, &cmd.encode()).0).unwrap()
    }

    fn acquire(&mut self, member: &str, max: u32, limits: ShareLimits, now_ms: i64) -> Vec<Leased> {
        let cmd = ShareCommand::Acquire { group_id: 1, member: member.into(), max_records: max, limits, now_ms };
        match self.run(cmd) {
            ShareResult::Acquired(v) => v,
            other => panic!("{other:?}"),
        }
    }

    fn settle(&mut self, member: &str, offsets: &[(Offset, Settle)], now_ms: i64) -> u32 {
        let cmd = ShareCommand::Settle {
            group_id: 1,
            member: member.into(),
            offsets: offsets.to_vec(),
            backoff_ms: 100,
            now_ms,
        };
        match self.run(cmd) {
            ShareResult::Settled(n) => n,
            other => panic!("{other:?}"),
        }
    }
}

fn offsets(v: &[Leased]) -> Vec<Offset> {
    v.iter().map(|l| l.offset).collect()
}

#[test]
fn members_get_disjoint_leases_and_acks_settle() {
    let mut p = P::new(5, 0);
    assert_eq!(offsets(&p.acquire("a", 2, LIMITS, 0)), vec![0, 1]);
    assert_eq!(offsets(&p.acquire("b", 10, LIMITS, 0)), vec![2, 3, 4], "b gets what a does not hold");
    assert!(p.acquire("c", 10, LIMITS, 10).is_empty(), "everything is leased");
    assert_eq!(p.settle("b", &[(0, Settle::Ack)], 10), 0, "b cannot settle a's lease");
    assert_eq!(p.settle("a", &[(0, Settle::Ack), (1, Settle::Ack)], 10), 2);
    let st = p.shared.read();
    assert_eq!(st.shared[&1].start, 2, "settled records leave the window");
    assert!(!has_available(&st, 1, 10));
}

#[test]
fn an_expired_lease_is_delivered_again_and_the_old_holder_loses_it() {
    let mut p = P::new(1, 0);
    p.acquire("a", 1, LIMITS, 0);
    let again = p.acquire("b", 1, LIMITS, 1_000);
    assert_eq!(again, vec![Leased { offset: 0, attempts: 2, dead_letter: false }]);
    assert_eq!(p.settle("a", &[(0, Settle::Ack)], 1_001), 0, "a's lease is gone");
    // Max attempts (2) reached: the next delivery is as a dead letter.
    let dead = p.acquire("c", 1, LIMITS, 2_000);
    assert_eq!(dead, vec![Leased { offset: 0, attempts: 2, dead_letter: true }]);
    assert_eq!(p.settle("c", &[(0, Settle::Ack)], 2_001), 1);
    assert!(!has_available(&p.shared.read(), 1, 5_000));
}

#[test]
fn release_waits_for_the_backoff_and_reject_dead_letters() {
    let mut p = P::new(2, 0);
    p.acquire("a", 2, LIMITS, 0);
    assert_eq!(p.settle("a", &[(0, Settle::Release), (1, Settle::Reject)], 10), 2);
    assert_eq!(p.acquire("a", 5, LIMITS, 50), vec![Leased { offset: 1, attempts: u32::MAX, dead_letter: true }]);
    assert!(!has_available(&p.shared.read(), 1, 50), "offset 0 is backing off");
    assert_eq!(p.acquire("a", 5, LIMITS, 110), vec![Leased { offset: 0, attempts: 2, dead_letter: false }]);
}

#[test]
fn records_past_their_ttl_are_not_delivered() {
    let mut p = P::new(3, 1_000);
    let ttl = ShareLimits { ttl_ms: 500, ..LIMITS };
    assert!(p.acquire("a", 10, ttl, 2_000).is_empty());
    assert_eq!(p.shared.read().shared[&1].start, 3, "expired records are settled");
    let mut q = P::new(3, 1_000);
    assert_eq!(q.acquire("a", 10, ttl, 1_400).len(), 3, "young enough");
}

#[test]
fn shared_state_is_in_the_snapshot() {
    let mut p = P::new(3, 0);
    p.acquire("a", 1, LIMITS, 0);
    let other = PartitionShared::new();
    PartitionLogic(other.clone()).restore(&p.logic.snapshot()).unwrap();
    assert_eq!(other.read().shared, p.shared.read().shared);
}
