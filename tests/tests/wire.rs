//! The wire API against an in-process three-node cluster: topics, produce, fetch,
//! NotLeader hints and clear errors for bad input.

use std::time::Duration;

use bytes::Bytes;
use tidemark_proto::error::{code_of, leader_of};
use tidemark_proto::v1::*;
use tidemark_tests::InProcessCluster;
use tidemark_types::{decode_records, ErrorCode, Record, RecordBatchBuilder};

fn batch(values: &[&str]) -> Bytes {
    let mut b = RecordBatchBuilder::new();
    for v in values {
        b.push(Record {
            value: Bytes::copy_from_slice(v.as_bytes()),
            timestamp_ms: 1_700_000_000_000,
            ..Default::default()
        });
    }
    b.build(None)
}

/// Creates a topic on the metadata leader, retrying while leadership settles.
async fn create(c: &InProcessCluster, name: &str, partitions: u32, rf: u32) -> TopicDescription {
    for _ in 0..50 {
        let leader = c.metadata_leader().await.unwrap();
        let req = CreateTopicRequest { name: name.into(), partitions, replication_factor: rf, config: None };
        match c.admin(leader).create_topic(req).await {
            Ok(r) => return r.into_inner().topic.unwrap(),
            Err(s) if code_of(&s) == Some(ErrorCode::NotLeader) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(s) => panic!("create {name}: {s:?}"),
        }
    }
    panic!("could not create {name}");
}

/// Produces to whichever node leads the partition, following NotLeader hints.
async fn produce(c: &InProcessCluster, topic: &str, partition: u32, b: Bytes) -> ProduceResponse {
    let mut target = 0usize;
    for _ in 0..100 {
        let req = ProduceRequest { topic: topic.into(), partition, batch: b.clone() };
        match c.data(target).produce(req).await {
            Ok(r) => return r.into_inner(),
            Err(s) => {
                match leader_of(&s) {
                    Some((id, _)) => target = id as usize - 1,
                    None => target = (target + 1) % c.addrs.len(),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!("could not produce to {topic}/{partition}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_fetch_dense_offsets() {
    let c = InProcessCluster::start(3).await.unwrap();
    let t = create(&c, "orders", 2, 3).await;
    assert_eq!(t.partitions.len(), 2);
    assert_eq!(t.partitions[0].replicas.len(), 3);
    let r1 = produce(&c, "orders", 0, batch(&["a", "b", "c"])).await;
    let r2 = produce(&c, "orders", 0, batch(&["d"])).await;
    assert_eq!((r1.base_offset, r1.last_offset, r2.base_offset, r2.last_offset), (0, 2, 3, 3));

    let mut values = Vec::new();
    for i in 0..3 {
        let req = FetchRequest { topic: "orders".into(), partition: 0, offset: 1, max_bytes: 0, max_wait_ms: 0 };
        if let Ok(r) = c.data(i).fetch(req).await {
            let r = r.into_inner();
            assert_eq!(r.log_end_offset, 4);
            for fb in r.batches {
                for (k, rec) in decode_records(&fb.batch).unwrap().into_iter().enumerate() {
                    values.push((fb.base_offset + k as u64, String::from_utf8(rec.value.to_vec()).unwrap()));
                }
            }
        }
    }
    assert_eq!(values, vec![(0, "a".into()), (1, "b".into()), (2, "c".into()), (3, "d".into())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let c = InProcessCluster::start(3).await.unwrap();
    let leader = c.metadata_leader().await.unwrap();
    let mut admin = c.admin(leader);
    let bad = CreateTopicRequest { name: "a/b".into(), partitions: 1, replication_factor: 1, config: None };
    let s = admin.create_topic(bad).await.unwrap_err();
    assert_eq!(code_of(&s), Some(ErrorCode::InvalidTopicName));
    assert!(s.message().contains("'/'"), "{}", s.message());
    let rf = CreateTopicRequest { name: "big".into(), partitions: 1, replication_factor: 5, config: None };
    let s = admin.create_topic(rf).await.unwrap_err();
    assert_eq!(code_of(&s), Some(ErrorCode::InvalidReplicationFactor));
    create(&c, "t", 1, 3).await;
    let s = admin
        .create_topic(CreateTopicRequest { name: "t".into(), partitions: 1, replication_factor: 1, config: None })
        .await;
    assert_eq!(code_of(&s.unwrap_err()), Some(ErrorCode::TopicExists));

    let mut data = c.data(0);
    let s =
        data.produce(ProduceRequest { topic: "nope".into(), partition: 0, batch: batch(&["x"]) }).await.unwrap_err();
    assert_eq!(code_of(&s), Some(ErrorCode::UnknownTopic));
    let s = data.produce(ProduceRequest { topic: "t".into(), partition: 7, batch: batch(&["x"]) }).await.unwrap_err();
    assert_eq!(code_of(&s), Some(ErrorCode::UnknownPartition));
    // Garbage, and a batch with a broken CRC, are refused by whoever answers (the leader
    // checks; a follower redirects).
    for garbage in [Bytes::from_static(b"not a batch"), {
        let mut v = batch(&["x"]).to_vec();
        let n = v.len() - 1;
        v[n] ^= 1;
        Bytes::from(v)
    }] {
        let mut seen_corrupt = false;
        for i in 0..3 {
            let req = ProduceRequest { topic: "t".into(), partition: 0, batch: garbage.clone() };
            if let Err(s) = c.data(i).produce(req).await {
                seen_corrupt |= code_of(&s) == Some(ErrorCode::CorruptBatch);
            }
        }
        assert!(seen_corrupt);
    }
    // A request far above the batch limit (4 MiB by default) is refused before its body
    // is decoded, so no client can make a node hold 256 MiB messages.
    let huge = ProduceRequest { topic: "t".into(), partition: 0, batch: Bytes::from(vec![0u8; 16 << 20]) };
    let s = c.data(0).produce(huge).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::OutOfRange, "{s:?}");
    assert!(s.message().contains("too large"), "{}", s.message());
    let r = produce(&c, "t", 0, batch(&["ok"])).await;
    assert_eq!(r.base_offset, 0, "rejected batches took no offsets");
}

/// Like `produce`, but returns a Tidemark error other than NotLeader / Unavailable.
async fn try_produce(c: &InProcessCluster, topic: &str, b: Bytes) -> Result<ProduceResponse, tonic::Status> {
    let mut target = 0usize;
    for _ in 0..100 {
        let req = ProduceRequest { topic: topic.into(), partition: 0, batch: b.clone() };
        match c.data(target).produce(req).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if matches!(code_of(&s), Some(ErrorCode::NotLeader | ErrorCode::Unavailable) | None) => {
                target = leader_of(&s).map_or((target + 1) % c.addrs.len(), |(id, _)| id as usize - 1);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => return Err(s),
        }
    }
    panic!("could not produce to {topic}/0");
}

async fn init_producer(c: &InProcessCluster, name: &str) -> (i64, i16) {
    for _ in 0..50 {
        let leader = c.metadata_leader().await.unwrap();
        match c.admin(leader).init_producer(InitProducerRequest { name: name.into() }).await {
            Ok(r) => return (r.get_ref().producer_id, r.get_ref().epoch as i16),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("could not register producer {name:?}");
}

fn stamped(values: &[&str], producer: (i64, i16), seq: i32) -> Bytes {
    let mut b = RecordBatchBuilder::new();
    for v in values {
        b.push(Record { value: Bytes::copy_from_slice(v.as_bytes()), ..Default::default() });
    }
    b.build(Some((producer.0, producer.1, seq)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_produce_dedups_and_names_each_sequence_error() {
    let c = InProcessCluster::start(3).await.unwrap();
    create(&c, "once", 1, 3).await;
    let (a, b) = (init_producer(&c, "").await, init_producer(&c, "").await);
    assert_ne!(a.0, b.0, "anonymous producers get distinct ids");

    let first = stamped(&["a", "b"], a, 0);
    let r = try_produce(&c, "once", first.clone()).await.unwrap();
    assert_eq!((r.base_offset, r.last_offset), (0, 1));
    let again = try_produce(&c, "once", first).await.unwrap();
    assert_eq!((again.base_offset, again.last_offset), (0, 1), "a duplicate gets the original offsets");

    let gap = try_produce(&c, "once", stamped(&["c"], a, 5)).await.unwrap_err();
    assert_eq!(code_of(&gap), Some(ErrorCode::OutOfOrderSequence), "{gap:?}");
    assert_eq!(tidemark_proto::error::expected_sequence_of(&gap), Some(2));
    assert!(gap.message().contains("expected"), "{}", gap.message());

    let unknown = try_produce(&c, "once", stamped(&["x"], b, 3)).await.unwrap_err();
    assert_eq!(code_of(&unknown), Some(ErrorCode::UnknownProducer), "{unknown:?}");

    let old = init_producer(&c, "billing").await;
    try_produce(&c, "once", stamped(&["old"], old, 0)).await.unwrap();
    let new = init_producer(&c, "billing").await;
    assert_eq!((new.0, new.1), (old.0, old.1 + 1), "same name: same id, next epoch");
    let fenced = try_produce(&c, "once", stamped(&["zombie"], old, 1)).await.unwrap_err();
    assert_eq!(code_of(&fenced), Some(ErrorCode::ProducerFenced), "{fenced:?}");
    try_produce(&c, "once", stamped(&["new"], new, 0)).await.unwrap();

    let bad = try_produce(&c, "once", stamped(&["?"], (a.0, -1), 0)).await.unwrap_err();
    assert_eq!(code_of(&bad), Some(ErrorCode::InvalidRequest), "{bad:?}");

    let values: Vec<Bytes> = fetch_all(&c, "once").await;
    assert_eq!(values, ["a", "b", "old", "new"].map(Bytes::from).to_vec(), "refused batches took no offsets");
}

async fn fetch_all(c: &InProcessCluster, topic: &str) -> Vec<Bytes> {
    let leader = c.metadata_leader().await.unwrap();
    let d = c.admin(leader).describe_topic(DescribeTopicRequest { name: topic.into() }).await.unwrap().into_inner();
    let target = d.partitions[0].leader as usize - 1;
    let req = FetchRequest { topic: topic.into(), partition: 0, offset: 0, max_bytes: 0, max_wait_ms: 0 };
    let resp = c.data(target).fetch(req).await.unwrap().into_inner();
    resp.batches.iter().flat_map(|b| decode_records(&b.batch).unwrap()).map(|r| r.value).collect()
}
