//! The simple workload the smoke test and the real-process tests share: one producer,
//! one full read, and an acknowledged-loss assertion that panics. The chaos scenario uses
//! the recording producers and readers next to this file instead.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use tidemark_client::{Client, ConsumerConfig, ProducerConfig, ProducerRecord, StartPosition};

/// (partition, offset) -> value of every record the cluster acknowledged.
pub type Acked = BTreeMap<(u32, u64), String>;

/// Sends `value-{i}` for each `i` in `range` (keyed over 17 keys) through one producer.
/// Returns the acknowledged records and how many sends failed.
pub async fn produce(client: &Client, topic: &str, range: std::ops::Range<u32>) -> (Acked, usize) {
    let producer = client.producer(ProducerConfig::default()).expect("producer config is valid");
    let sends: Vec<_> = range
        .map(|i| {
            let value = format!("value-{i}");
            let fut = producer.send(topic, ProducerRecord::new(value.clone()).key(format!("key-{}", i % 17)));
            async move { (value, fut.await) }
        })
        .collect();
    let mut acked = Acked::new();
    let mut failed = 0;
    for (value, result) in join_all(sends).await {
        match result {
            Ok(md) => {
                let previous = acked.insert((md.partition, md.offset), value);
                assert!(previous.is_none(), "offset {}/{} acknowledged twice", md.partition, md.offset);
            }
            Err(e) => {
                tracing::warn!(error = %e, "send failed");
                failed += 1;
            }
        }
    }
    producer.close().await;
    (acked, failed)
}

/// Reads every partition of `topic` from the beginning to its end. Panics if a record
/// comes twice, if offsets are not dense from 0, or if the end is not reached in `limit`.
pub async fn read_all(client: &Client, topic: &str, partitions: u32, limit: Duration) -> Acked {
    let mut consumer = client
        .consumer(topic, None, StartPosition::Earliest, ConsumerConfig::default())
        .await
        .expect("consumer starts");
    let mut seen = Acked::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        for r in consumer.poll(Duration::from_millis(500)).await.expect("poll") {
            let value = String::from_utf8_lossy(&r.value).into_owned();
            assert!(
                seen.insert((r.partition, r.offset), value).is_none(),
                "record {}/{} delivered twice",
                r.partition,
                r.offset
            );
        }
        let done = (0..partitions).all(|p| {
            let end = consumer.log_end_offset(p).unwrap_or(u64::MAX);
            consumer.position(p).is_some_and(|pos| pos >= end)
        });
        if done {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "could not read {topic} to its end within {limit:?}");
    }
    for p in 0..partitions {
        let offsets: Vec<u64> = seen.keys().filter(|(q, _)| *q == p).map(|(_, o)| *o).collect();
        let dense: Vec<u64> = (0..offsets.len() as u64).collect();
        assert_eq!(offsets, dense, "partition {p}: offsets are not dense from 0");
    }
    seen
}

/// Checker: every acknowledged record is present, unchanged, at its acknowledged offset.
pub fn assert_no_acked_loss(acked: &Acked, seen: &Acked) {
    for (pos, value) in acked {
        let ends: Vec<_> = (0..4u32).map(|p| seen.keys().filter(|(q, _)| *q == p).count()).collect();
        assert_eq!(
            seen.get(pos),
            Some(value),
            "acknowledged record at {pos:?} was lost or changed (records read per partition: {ends:?})"
        );
    }
}
