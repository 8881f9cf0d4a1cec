use super::*;
use crate::partition::{append_command, PartitionLogic, PartitionShared};
use tidemark_raft::StateMachineLogic;
use tidemark_types::{Header, Record, RecordBatchBuilder, TTL_HEADER};

const LIMITS: ShareLimits = ShareLimits {
    lock_ms: 1_000,
    max_attempts: 2,
    ttl_ms: 0,
    backoff_ms: 100,
    expired: ExpiredAction::DeadLetter,
    max_in_flight: 100,
};

struct P {
    shared: std::sync::Arc<PartitionShared>,
    logic: PartitionLogic,
    index: u64,
}

impl P {
    fn new(records: usize, ts: i64) -> P {
        P::with_batch((0..records).map(|i| Record {
            value: Bytes::from(format!("v{i}")),
            timestamp_ms: ts,
            ..Default::default()
        }))
    }

    fn with_batch(records: impl IntoIterator<Item = Record>) -> P {
        let shared = PartitionShared::new();
        let mut p = P { logic: PartitionLogic(shared.clone()), shared, index: 0 };
        let mut b = RecordBatchBuilder::new();
        for r in records {
            b.push(r);
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
    assert!(!has_available(&st, 1, "a", 100, 10));
}

#[test]
fn an_expired_lease_is_delivered_again_and_the_old_holder_loses_it() {
    let mut p = P::new(1, 0);
    p.acquire("a", 1, LIMITS, 0);
    let again = p.acquire("b", 1, LIMITS, 1_000);
    assert_eq!(again, vec![Leased { offset: 0, attempts: 2, dead_letter: None }]);
    assert_eq!(p.settle("a", &[(0, Settle::Ack)], 1_001), 0, "a's lease is gone");
    // Max attempts (2) reached: the next delivery is as a dead letter.
    let dead = p.acquire("c", 1, LIMITS, 2_000);
    assert_eq!(dead, vec![Leased { offset: 0, attempts: 2, dead_letter: Some(DeadReason::MaxAttempts) }]);
    assert_eq!(p.settle("c", &[(0, Settle::Ack)], 2_001), 1);
    assert!(!has_available(&p.shared.read(), 1, "c", 100, 5_000));
    assert_eq!(p.shared.read().shared[&1].dead_lettered, 1);
}

#[test]
fn release_waits_for_the_backoff_and_reject_dead_letters() {
    let mut p = P::new(2, 0);
    p.acquire("a", 2, LIMITS, 0);
    assert_eq!(p.settle("a", &[(0, Settle::Release), (1, Settle::Reject)], 10), 2);
    let rejected = Leased { offset: 1, attempts: 1, dead_letter: Some(DeadReason::Rejected) };
    assert_eq!(p.acquire("a", 5, LIMITS, 50), vec![rejected], "the dead letter reports the real attempts");
    assert!(!has_available(&p.shared.read(), 1, "a", 100, 50), "offset 0 is backing off");
    assert_eq!(p.acquire("a", 5, LIMITS, 110), vec![Leased { offset: 0, attempts: 2, dead_letter: None }]);
}

#[test]
fn a_rejected_dead_letter_keeps_its_count_across_a_lapsed_lease() {
    let mut p = P::new(1, 0);
    p.acquire("a", 1, LIMITS, 0);
    p.settle("a", &[(0, Settle::Reject)], 10);
    p.acquire("b", 1, LIMITS, 20);
    // b died without moving it: the dead letter is offered again, still as rejected.
    let again = p.acquire("c", 1, LIMITS, 1_100);
    assert_eq!(again, vec![Leased { offset: 0, attempts: 1, dead_letter: Some(DeadReason::Rejected) }]);
}

#[test]
fn records_past_the_group_or_topic_ttl_are_dropped_when_the_group_says_drop() {
    let drop = ShareLimits { ttl_ms: 500, expired: ExpiredAction::Drop, ..LIMITS };
    let mut p = P::new(3, 1_000);
    assert!(p.acquire("a", 10, drop, 2_000).is_empty());
    let st = p.shared.read();
    assert_eq!((st.shared[&1].start, st.shared[&1].expired), (3, 3), "expired records are settled and counted");
    let mut q = P::new(3, 1_000);
    assert_eq!(q.acquire("a", 10, drop, 1_400).len(), 3, "young enough");
    // The topic's TTL and the group's combine: the shorter wins, 0 is none.
    assert_eq!(
        (shortest_ttl(500, 0), shortest_ttl(0, 300), shortest_ttl(500, 300), shortest_ttl(0, 0)),
        (500, 300, 300, 0)
    );
}

#[test]
fn records_past_their_ttl_are_dead_lettered_by_default() {
    let ttl = ShareLimits { ttl_ms: 500, ..LIMITS };
    let mut p = P::new(2, 1_000);
    let expired = Leased { offset: 0, attempts: 0, dead_letter: Some(DeadReason::Expired) };
    assert_eq!(p.acquire("a", 1, ttl, 2_000), vec![expired], "never delivered: 0 attempts");
    assert_eq!(p.settle("a", &[(0, Settle::Ack)], 2_001), 1);
    let st = p.shared.read();
    assert_eq!((st.shared[&1].expired, st.shared[&1].dead_lettered), (1, 1));
    drop(st);
    // A record delivered in time is not expired under its member; once free again it is.
    let mut q = P::new(1, 1_000);
    assert_eq!(q.acquire("a", 1, ttl, 1_100)[0].dead_letter, None);
    q.settle("a", &[(0, Settle::Release)], 1_200);
    let late = q.acquire("b", 1, ttl, 1_600);
    assert_eq!(late, vec![Leased { offset: 0, attempts: 1, dead_letter: Some(DeadReason::Expired) }]);
}

#[test]
fn a_ttl_header_expires_only_its_record_and_the_shortest_ttl_wins() {
    let rec = |ts: i64, ttl: Option<&str>| Record {
        timestamp_ms: ts,
        headers: ttl
            .map(|t| Header { key: TTL_HEADER.into(), value: Bytes::from(t.to_string()) })
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let batch = [rec(1_000, Some("100")), rec(1_000, None), rec(1_000, Some("5000"))];
    let mut p = P::with_batch(batch.clone());
    assert_eq!(p.shared.read().record_deadlines, [(0, 1_100), (2, 6_000)].into());
    let drop = ShareLimits { expired: ExpiredAction::Drop, ..LIMITS };
    assert_eq!(offsets(&p.acquire("a", 10, drop, 1_200)), vec![1, 2], "only offset 0 expired");
    // A group TTL shorter than the header's wins for offset 2 too.
    let mut q = P::with_batch(batch);
    let short = ShareLimits { ttl_ms: 1_000, ..drop };
    assert!(q.acquire("a", 10, short, 2_100).is_empty());
    assert_eq!(q.shared.read().shared[&1].expired, 3);
}

#[test]
fn a_member_at_its_in_flight_limit_gets_nothing_until_it_settles() {
    let mut p = P::new(5, 0);
    let two = ShareLimits { max_in_flight: 2, ..LIMITS };
    assert_eq!(offsets(&p.acquire("a", 10, two, 0)), vec![0, 1]);
    assert!(!has_available(&p.shared.read(), 1, "a", 2, 10), "a is at its limit");
    assert!(p.acquire("a", 10, two, 10).is_empty());
    assert!(has_available(&p.shared.read(), 1, "b", 2, 10), "the limit is per member");
    assert_eq!(offsets(&p.acquire("b", 10, two, 10)), vec![2, 3]);
    p.settle("a", &[(0, Settle::Ack)], 20);
    assert_eq!(offsets(&p.acquire("a", 10, two, 20)), vec![4], "one settled, one more leased");
    // Expired leases no longer count against the member.
    assert_eq!(offsets(&p.acquire("a", 10, two, 1_030)), vec![1, 2], "its own lapsed lease and b's");
}

#[test]
fn shared_state_is_in_the_snapshot() {
    let mut p = P::new(3, 0);
    p.acquire("a", 1, LIMITS, 0);
    let other = PartitionShared::new();
    PartitionLogic(other.clone()).restore(&p.logic.snapshot()).unwrap();
    assert_eq!(other.read().shared, p.shared.read().shared);
}
