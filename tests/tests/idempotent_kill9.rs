//! Exactly-once under crashes: one idempotent producer writes 100,000 records to a
//! three-process cluster while the partition leader is killed with SIGKILL three times
//! (each victim restarted before the next kill, so a majority is always up). Afterwards
//! every record must exist exactly once, in the order it was sent.

use std::time::Duration;

use tidemark_client::{Client, ClientConfig, ConsumerConfig, ProducerConfig, ProducerRecord, StartPosition};
use tidemark_tests::process::ProcessCluster;

const TOPIC: &str = "exactly-once";
const RECORDS: u64 = 100_000;
const KILLS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_writes_each_record_once_across_leader_kills() {
    let mut cluster = ProcessCluster::start(3).expect("start three processes");
    let client = Client::new(ClientConfig::new(cluster.addrs.clone())).expect("client");
    if let Err(e) = client.admin().create_topic(TOPIC, 1, 3, 0, 0).await {
        panic!("create topic: {e}\nnode logs:\n{}\n{}\n{}", cluster.log(0), cluster.log(1), cluster.log(2));
    }

    let producing = {
        let client = client.clone();
        tokio::spawn(async move { produce_all(&client).await })
    };
    let mut victims = Vec::new();
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let Some(leader) = current_leader(&client).await else { continue };
        cluster.kill9(leader - 1);
        if !producing.is_finished() {
            victims.push(leader);
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        cluster.restart(leader - 1).expect("restart the killed node");
    }
    let (acked, errors) = producing.await.expect("producer task");
    assert!(victims.len() >= 2, "a leader was killed at least twice mid-stream (killed: {victims:?})");
    assert!(errors.is_empty(), "every send is acknowledged; failures: {errors:?}");
    assert_eq!(acked, RECORDS);

    let values = read_partition(&client, RECORDS).await;
    let mut seen = vec![0u32; RECORDS as usize];
    let mut last = None;
    for (offset, v) in values.iter().enumerate() {
        let i: u64 = v.parse().unwrap_or_else(|_| panic!("unexpected value {v:?} at offset {offset}"));
        seen[i as usize] += 1;
        assert!(last.is_none_or(|l| l < i), "record {i} at offset {offset} comes after record {last:?}");
        last = Some(i);
    }
    let missing: Vec<usize> = (0..seen.len()).filter(|&i| seen[i] == 0).take(10).collect();
    let doubled: Vec<usize> = (0..seen.len()).filter(|&i| seen[i] > 1).take(10).collect();
    assert!(missing.is_empty() && doubled.is_empty(), "missing: {missing:?}, written twice: {doubled:?}");
    assert_eq!(values.len() as u64, RECORDS, "exactly once, in order (killed leaders: {victims:?})");
}

/// Sends 0..RECORDS in order; returns (acknowledged, distinct errors).
async fn produce_all(client: &Client) -> (u64, Vec<String>) {
    let producer = client.producer(ProducerConfig::default()).expect("producer");
    let mut sends = Vec::new();
    for i in 0..RECORDS {
        producer.wait_for_buffer_space().await;
        sends.push(producer.send(TOPIC, ProducerRecord::new(format!("{i:06}")).partition(0)));
        if i % 1000 == 999 {
            // Pace the stream so it spans the kills.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut errors: Vec<String> = Vec::new();
    let mut acked = 0;
    for r in futures::future::join_all(sends).await {
        match r {
            Ok(_) => acked += 1,
            Err(e) if !errors.contains(&e.to_string()) => errors.push(e.to_string()),
            Err(_) => {}
        }
    }
    producer.close().await;
    (acked, errors)
}

async fn current_leader(client: &Client) -> Option<usize> {
    let d = client.admin().describe_topic(TOPIC).await.ok()?;
    d.partitions[0].leader.map(|l| l as usize)
}

/// Every value of partition 0, in offset order.
async fn read_partition(client: &Client, at_least: u64) -> Vec<String> {
    let mut consumer = client
        .consumer(TOPIC, Some(vec![0]), StartPosition::Earliest, ConsumerConfig::default())
        .await
        .expect("consumer");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut values = Vec::new();
    loop {
        for r in consumer.poll(Duration::from_millis(500)).await.expect("poll") {
            assert_eq!(r.offset, values.len() as u64, "offsets are dense");
            values.push(String::from_utf8_lossy(&r.value).into_owned());
        }
        let end = consumer.log_end_offset(0).unwrap_or(u64::MAX);
        if values.len() as u64 >= at_least && consumer.position(0).is_some_and(|p| p >= end) {
            return values;
        }
        assert!(tokio::time::Instant::now() < deadline, "read {} of {at_least} records in 120 s", values.len());
    }
}
