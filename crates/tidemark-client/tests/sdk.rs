//! The SDK against a fake cluster over real gRPC: leader following, batching,
//! pipelining, retries, per-record failures, consumer positions.
#![cfg(not(madsim))]

mod fake_cluster;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use tidemark_client::*;
use tidemark_proto::error::status;

fn client_for(shared: &fake_cluster::Shared, node: usize) -> Client {
    let mut cfg = ClientConfig::new([shared.addrs[node - 1].1.clone()]);
    cfg.retry_backoff = Duration::from_millis(10);
    cfg.retry_backoff_max = Duration::from_millis(100);
    Client::new(cfg).unwrap()
}

async fn read_all(consumer: &mut Consumer, want: usize) -> Vec<ConsumerRecord> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.len() < want && tokio::time::Instant::now() < deadline {
        out.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
    out
}

#[tokio::test]
async fn admin_follows_the_metadata_leader_and_waits_for_leaders() {
    let shared = fake_cluster::start().await;
    let admin = client_for(&shared, 2).admin();
    let d = admin.create_topic("orders", 3, 3, 0, 0).await.unwrap();
    assert_eq!(d.partitions.len(), 3);
    assert!(d.partitions.iter().all(|p| p.leader.is_some()), "{d:?}");
    assert_eq!(admin.list_topics().await.unwrap(), vec!["orders".to_string()]);
    assert_eq!(admin.describe_topic("orders").await.unwrap().partitions[1].replicas, vec![1, 2, 3]);
    let err = admin.create_topic("orders", 1, 1, 0, 0).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TopicExists));
    let status = admin.cluster_status().await.unwrap();
    assert_eq!((status.nodes.len(), status.metadata_leader), (3, Some(1)));
    admin.delete_topic("orders").await.unwrap();
    let err = admin.describe_topic("orders").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownTopic));
    let err = admin.create_topic("bad/name", 1, 1, 0, 0).await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidArgument(_)), "{err}");
}

#[tokio::test]
async fn produces_in_batches_and_consumes_everything_in_order() {
    let shared = fake_cluster::start().await;
    shared.add_topic("t", 3);
    let client = client_for(&shared, 3);
    let producer = client.producer(ProducerConfig::default()).unwrap();
    let sends: Vec<_> = (0..2000)
        .map(|i| {
            let value = format!("v{i}");
            if i % 2 == 0 {
                producer.send("t", (format!("k{}", i % 10), value))
            } else {
                producer.send("t", ProducerRecord::new(value))
            }
        })
        .collect();
    let acks: Vec<RecordMetadata> = futures::future::join_all(sends).await.into_iter().map(Result::unwrap).collect();
    producer.close().await;
    let calls = shared.state.lock().unwrap().produce_calls;
    assert!(calls < 200, "batched: {calls} produce calls for 2000 records");
    for p in 0..3u32 {
        let mut offsets: Vec<u64> = acks.iter().filter(|a| a.partition == p).map(|a| a.offset).collect();
        offsets.sort();
        assert_eq!(offsets, (0..offsets.len() as u64).collect::<Vec<_>>(), "dense offsets in partition {p}");
    }
    let mut consumer = client.consumer("t", None, StartPosition::Earliest, ConsumerConfig::default()).await.unwrap();
    let records = read_all(&mut consumer, 2000).await;
    assert_eq!(records.len(), 2000);
    // Per key, values come back in send order.
    let mut by_key: BTreeMap<Bytes, Vec<u64>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.key.is_some()) {
        let n: u64 = std::str::from_utf8(&r.value).unwrap()[1..].parse().unwrap();
        by_key.entry(r.key.clone().unwrap()).or_default().push(n);
    }
    assert_eq!(by_key.len(), 5, "even i: keys k0, k2, k4, k6, k8");
    for (k, ns) in by_key {
        assert!(ns.windows(2).all(|w| w[0] < w[1]), "key {k:?} out of order: {ns:?}");
    }
    assert_eq!(consumer.positions().values().sum::<u64>(), 2000);
}

/// With the default linger of 0 a record goes at once when the window has room, and
/// records that arrive while it is full share one batch instead of queueing one by one.
#[tokio::test]
async fn records_arriving_while_the_window_is_full_share_a_batch() {
    let shared = fake_cluster::start().await;
    shared.add_topic("t", 1);
    shared.state.lock().unwrap().produce_delay = Duration::from_millis(40);
    let client = client_for(&shared, 1);
    let producer = client.producer(ProducerConfig { max_in_flight: 1, ..Default::default() }).unwrap();
    let started = tokio::time::Instant::now();
    let first = producer.send("t", ProducerRecord::new("alone").partition(0)).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(200), "a lone record waited: {:?}", started.elapsed());
    assert_eq!(first.offset, 0);
    let calls_before = shared.state.lock().unwrap().produce_calls;
    let mut sends = Vec::new();
    for i in 0..100 {
        sends.push(producer.send("t", ProducerRecord::new(format!("{i:05}")).partition(0)));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for s in futures::future::join_all(sends).await {
        s.unwrap();
    }
    let calls = shared.state.lock().unwrap().produce_calls - calls_before;
    // 100 records over >= 200 ms, one 40 ms request at a time: about 6 requests, far from 100.
    assert!(calls <= 20, "{calls} produce requests for 100 records trickling in");
    assert_eq!(shared.values("t", 0).len(), 101);
}

/// Sends `n` records to partition 0 of "t" while `disturb` runs after the first half.
async fn produce_through(
    shared: &fake_cluster::Shared,
    window: usize,
    n: usize,
    disturb: impl FnOnce(),
) -> Vec<(u64, Bytes)> {
    let client = client_for(shared, 1);
    let config = ProducerConfig { max_in_flight: window, linger: Duration::from_millis(1), ..Default::default() };
    let producer = client.producer(config).unwrap();
    let mut sends = Vec::new();
    let mut disturb = Some(disturb);
    for i in 0..n {
        if i == n / 2 {
            producer.flush().await;
            disturb.take().expect("once")();
        }
        sends.push(producer.send("t", ProducerRecord::new(format!("{i:05}")).partition(0)));
        if i % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for s in futures::future::join_all(sends).await {
        s.unwrap();
    }
    shared.values("t", 0)
}

fn assert_all_in_order(values: &[(u64, Bytes)], n: usize) {
    let got: Vec<String> = values.iter().map(|(_, v)| String::from_utf8(v.to_vec()).unwrap()).collect();
    let want: Vec<String> = (0..n).map(|i| format!("{i:05}")).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn producer_follows_a_leader_hint_keeping_order_with_a_full_window() {
    let shared = fake_cluster::start().await;
    shared.add_topic("t", 1);
    let values = produce_through(&shared, 5, 1000, || shared.set_leader("t", 0, 2)).await;
    assert_all_in_order(&values, 1000);
}

#[tokio::test]
async fn producer_finds_the_leader_without_hints() {
    let shared = fake_cluster::start().await;
    shared.add_topic("t", 1);
    shared.state.lock().unwrap().hints = false;
    let values = produce_through(&shared, 5, 1000, || shared.set_leader("t", 0, 3)).await;
    assert_all_in_order(&values, 1000);
}

#[tokio::test]
async fn producer_retries_unavailable_in_order_with_a_window_of_one() {
    let shared = fake_cluster::start().await;
    shared.add_topic("t", 1);
    let values = produce_through(&shared, 1, 500, || {
        let mut st = shared.state.lock().unwrap();
        for _ in 0..3 {
            st.produce_failures.push_back(status(ErrorCode::Unavailable, "no quorum", None));
        }
    })
    .await;
    assert_all_in_order(&values, 500);
}

#[tokio::test]
async fn an_oversized_record_fails_alone() {
    let shared = fake_cluster::start().await;
    shared.add_topic("t", 1);
    shared.state.lock().unwrap().limits.max_record_bytes = 1000;
    let producer = client_for(&shared, 1).producer(ProducerConfig::default()).unwrap();
    let small1 = producer.send("t", ProducerRecord::new("a"));
    let big = producer.send("t", ProducerRecord::new(vec![b'x'; 5000]));
    let small2 = producer.send("t", ProducerRecord::new("b"));
    let err = big.await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::RecordTooLarge), "{err}");
    assert!(!err.is_retriable());
    assert_eq!(small1.await.unwrap().offset, 0);
    assert_eq!(small2.await.unwrap().offset, 1);
}

#[tokio::test]
async fn unknown_topic_fails_after_the_grace_period_and_then_fast() {
    let shared = fake_cluster::start().await;
    let mut cfg = ClientConfig::new([shared.addrs[0].1.clone()]);
    cfg.unknown_topic_timeout = Duration::from_millis(300);
    let producer = Client::new(cfg).unwrap().producer(ProducerConfig::default()).unwrap();
    let err = producer.send("nope", ProducerRecord::new("x")).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownTopic));
    let start = tokio::time::Instant::now();
    let err = producer.send("nope", ProducerRecord::new("y")).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownTopic));
    assert!(start.elapsed() < Duration::from_millis(200), "second send fails fast");
    let err = producer.send("t", ProducerRecord::new("z").partition(7)).await.unwrap_err();
    assert!(err.code().is_some(), "{err}");
}

#[tokio::test]
async fn unreachable_bootstrap_names_the_address_quickly() {
    let mut cfg = ClientConfig::new(["127.0.0.1:1"]);
    cfg.bootstrap_timeout = Duration::from_millis(300);
    let err = Client::new(cfg).unwrap().admin().list_topics().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ClientError::Transport { .. }), "{text}");
    assert!(text.contains("127.0.0.1:1") && text.contains("--bootstrap"), "{text}");
}

#[tokio::test]
async fn close_flushes_and_refuses_later_sends() {
    let shared = fake_cluster::start().await;
    shared.add_topic("t", 2);
    let producer = client_for(&shared, 1)
        .producer(ProducerConfig { linger: Duration::from_secs(5), ..Default::default() })
        .unwrap();
    let a = producer.send("t", ProducerRecord::new("a").partition(1));
    producer.close().await; // Must not wait out the 5 s linger.
    assert_eq!(a.await.unwrap(), RecordMetadata { partition: 1, offset: 0 });
    assert!(matches!(producer.send("t", ProducerRecord::new("b")).await, Err(ClientError::Closed)));
    assert_eq!(producer.buffered_bytes(), 0);
}

#[tokio::test]
async fn consumer_follows_a_moving_leader_and_resets_out_of_range() {
    let shared = fake_cluster::start().await;
    shared.add_topic("t", 1);
    let client = client_for(&shared, 2);
    let producer = client.producer(ProducerConfig::default()).unwrap();
    for i in 0..10 {
        producer.send("t", ProducerRecord::new(format!("{i}"))).await.unwrap();
    }
    // Beyond the end: the fake says out of range, the consumer resets to earliest.
    let mut consumer =
        client.consumer("t", None, StartPosition::Offset(1000), ConsumerConfig::default()).await.unwrap();
    assert_eq!(read_all(&mut consumer, 10).await.len(), 10);
    shared.set_leader("t", 0, 3);
    for i in 10..20 {
        producer.send("t", ProducerRecord::new(format!("{i}"))).await.unwrap();
    }
    let rest = read_all(&mut consumer, 10).await;
    assert_eq!(rest.iter().map(|r| r.offset).collect::<Vec<_>>(), (10..20).collect::<Vec<_>>());
    assert_eq!(consumer.position(0), Some(20));
    assert_eq!(consumer.log_end_offset(0), Some(20));

    let mut latest =
        client.consumer("t", Some(vec![0]), StartPosition::Latest, ConsumerConfig::default()).await.unwrap();
    assert!(latest.poll(Duration::from_millis(100)).await.unwrap().is_empty());
    producer.send("t", ("k", "new")).await.unwrap();
    let r = latest.next().await.unwrap();
    assert_eq!((r.offset, r.key.as_deref(), &r.value[..]), (20, Some(&b"k"[..]), &b"new"[..]));
    latest.seek(0, 5).unwrap();
    assert_eq!(latest.next().await.unwrap().offset, 5);
}

#[tokio::test]
async fn idempotent_retries_after_lost_answers_write_nothing_twice() {
    let shared = fake_cluster::start().await;
    shared.add_topic("t", 1);
    let values = produce_through(&shared, 5, 1000, || shared.state.lock().unwrap().lost_acks = 1).await;
    assert_all_in_order(&values, 1000);
    assert_eq!(shared.state.lock().unwrap().lost_acks, 0, "the answers were lost");
}

#[tokio::test]
async fn every_lost_answer_is_retried_as_a_duplicate_with_the_original_offsets() {
    let shared = fake_cluster::start().await;
    shared.add_topic("t", 1);
    let producer = client_for(&shared, 1).producer(ProducerConfig::default()).unwrap();
    for round in 0..3u64 {
        shared.state.lock().unwrap().lost_acks = 1;
        let sends: Vec<_> =
            (0..10).map(|i| producer.send("t", ProducerRecord::new(format!("{round}-{i}")).partition(0))).collect();
        let offsets: Vec<u64> = futures::future::join_all(sends).await.into_iter().map(|r| r.unwrap().offset).collect();
        assert_eq!(offsets, (round * 10..round * 10 + 10).collect::<Vec<_>>());
    }
    assert_eq!(shared.values("t", 0).len(), 30, "nothing was written twice");
}

#[tokio::test]
async fn without_idempotence_a_lost_answer_duplicates() {
    let shared = fake_cluster::start().await;
    shared.add_topic("t", 1);
    shared.state.lock().unwrap().lost_acks = 1;
    let config = ProducerConfig { idempotent: false, ..Default::default() };
    let producer = client_for(&shared, 1).producer(config).unwrap();
    producer.send("t", ProducerRecord::new("once").partition(0)).await.unwrap();
    assert_eq!(shared.values("t", 0).len(), 2, "this is what idempotence prevents");
}

#[tokio::test]
async fn after_a_batch_fails_for_good_the_rest_are_renumbered_and_delivered_in_order() {
    let shared = fake_cluster::start().await;
    shared.add_topic("t", 1);
    let client = client_for(&shared, 1);
    let config = ProducerConfig { linger: Duration::from_millis(1), ..Default::default() };
    let producer = client.producer(config).unwrap();
    let first: Vec<_> =
        (0..100).map(|i| producer.send("t", ProducerRecord::new(format!("a{i}")).partition(0))).collect();
    producer.flush().await;
    shared.state.lock().unwrap().produce_failures.push_back(status(ErrorCode::CorruptBatch, "bad batch", None));
    let failed = producer.send("t", ProducerRecord::new("lost").partition(0));
    producer.flush().await; // "lost" goes alone in its batch.
    let rest: Vec<_> =
        (0..300).map(|i| producer.send("t", ProducerRecord::new(format!("b{i}")).partition(0))).collect();
    for r in futures::future::join_all(first).await {
        r.unwrap();
    }
    assert_eq!(failed.await.unwrap_err().code(), Some(ErrorCode::CorruptBatch));
    let offsets: Vec<u64> = futures::future::join_all(rest).await.into_iter().map(|r| r.unwrap().offset).collect();
    assert_eq!(offsets, (100..400).collect::<Vec<u64>>(), "dense, in order, after the gap");
    let values: Vec<_> = shared.values("t", 0).into_iter().map(|(_, v)| v).collect();
    assert_eq!(values.len(), 400);
    assert_eq!(values[100], Bytes::from("b0"));
}

#[tokio::test]
async fn an_idempotent_producer_refuses_a_window_above_five() {
    let shared = fake_cluster::start().await;
    let err = client_for(&shared, 1)
        .producer(ProducerConfig { max_in_flight: 8, ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most 5") && err.contains("idempotence"), "{err}");
}
