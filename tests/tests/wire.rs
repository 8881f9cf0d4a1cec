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
    let r = produce(&c, "t", 0, batch(&["ok"])).await;
    assert_eq!(r.base_offset, 0, "rejected batches took no offsets");
}
