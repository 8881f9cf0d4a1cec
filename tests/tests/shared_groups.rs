//! A shared (queue-style) group on three in-process nodes: more members than partitions
//! share the records; a member killed while holding leases has its records delivered
//! again after the lock expires; a record every member rejects ends in the dead-letter
//! topic. Every other record is acknowledged by exactly one live member.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::tidemark_client::{
    Client, ClientConfig, ConsumerConfig, GroupConsumerConfig, GroupMode, GroupSettings, ProducerConfig,
    ProducerRecord, StartPosition,
};
use tidemark_simulation::workload::produce;
use tidemark_tests::InProcessCluster;

const TOPIC: &str = "q";
const DLQ: &str = "q-dlq";

fn config() -> GroupConsumerConfig {
    let mut c = GroupConsumerConfig::new("s", [TOPIC]);
    c.auto_commit = false;
    c.max_poll_records = 20;
    c
}

/// (member, partition, offset, delivery count) of every record a live member acknowledged.
type Log = Arc<Mutex<Vec<(usize, u32, u64, u32)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_members_split_records_redeliver_a_dead_members_leases_and_dead_letter_poison() {
    let c = InProcessCluster::start(3).await.unwrap();
    let client = Client::new(ClientConfig::new(c.addrs.clone())).unwrap();
    client.admin().create_topic(TOPIC, 2, 3, 0, 0).await.unwrap();
    client.admin().create_topic(DLQ, 1, 3, 0, 0).await.unwrap();
    let settings = GroupSettings {
        mode: GroupMode::Shared,
        session_timeout: Some(Duration::from_millis(2_000)),
        heartbeat_interval: Some(Duration::from_millis(200)),
        lock_duration: Some(Duration::from_millis(1_500)),
        max_delivery_attempts: Some(3),
        dead_letter_topic: Some(DLQ.into()),
        ..Default::default()
    };
    client.admin().create_group("s", &[TOPIC.to_string()], &settings).await.unwrap();
    let (acked, _) = produce(&client, TOPIC, 0..400).await;
    let producer = client.producer(ProducerConfig::default()).unwrap();
    let poison = producer.send(TOPIC, ProducerRecord::new("poison")).await.unwrap();
    producer.close().await;

    // A member takes a batch of leases and dies without settling them.
    let mut doomed = client.shared_consumer(config()).await.unwrap();
    let mut held = Vec::new();
    while held.is_empty() {
        held = doomed.poll(Duration::from_millis(300)).await.unwrap();
    }
    let held: BTreeSet<(u32, u64)> = held.iter().map(|r| (r.record.partition, r.record.offset)).collect();
    doomed.kill();

    let log: Log = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for m in 0..3 {
        let (client, log, stop) = (client.clone(), log.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut consumer = client.shared_consumer(config()).await.expect("join");
            while !stop.load(Ordering::SeqCst) {
                for r in consumer.poll(Duration::from_millis(200)).await.expect("poll") {
                    if &r.record.value[..] == b"poison" {
                        consumer.reject(&r.record);
                    } else {
                        log.lock().unwrap().push((m, r.record.partition, r.record.offset, r.delivery_count));
                        consumer.ack(&r.record);
                    }
                }
            }
            consumer.close().await.expect("close");
        }));
    }
    let wanted: BTreeSet<(u32, u64)> = acked.keys().copied().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen: BTreeSet<(u32, u64)> = log.lock().unwrap().iter().map(|(_, p, o, _)| (*p, *o)).collect();
        if seen == wanted {
            break;
        }
        let missing = wanted.difference(&seen).count();
        assert!(tokio::time::Instant::now() < deadline, "{missing} records never acknowledged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }

    let log = log.lock().unwrap().clone();
    let mut per_record: BTreeMap<(u32, u64), Vec<(usize, u32)>> = BTreeMap::new();
    for (m, p, o, count) in &log {
        per_record.entry((*p, *o)).or_default().push((*m, *count));
    }
    assert!(per_record.values().all(|v| v.len() == 1), "a record acknowledged by one member is never redelivered");
    for key in &held {
        if *key != (poison.partition, poison.offset) {
            assert!(per_record[key][0].1 >= 2, "{key:?} was held by the dead member: a second delivery");
        }
    }
    let members: BTreeSet<usize> = log.iter().map(|(m, ..)| *m).collect();
    assert!(members.len() >= 2, "more members than partitions share the work: {members:?}");

    // The poison record was rejected, so it went to the dead-letter topic.
    let mut dlq = client.consumer(DLQ, None, StartPosition::Earliest, ConsumerConfig::default()).await.unwrap();
    let mut letters = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while letters.is_empty() && tokio::time::Instant::now() < deadline {
        letters.extend(dlq.poll(Duration::from_millis(300)).await.unwrap());
    }
    assert!(!letters.is_empty(), "the poison record reached the dead-letter topic");
    assert!(letters.iter().all(|r| &r.value[..] == b"poison"), "{letters:?}");
    let header = |r: &tidemark_client::ConsumerRecord, key: &str| {
        r.headers.iter().find(|h| h.key == key).map(|h| String::from_utf8_lossy(&h.value).into_owned())
    };
    let letter = &letters[0];
    assert_eq!(header(letter, tidemark_client::DLQ_REASON).as_deref(), Some("rejected"));
    assert_eq!(header(letter, tidemark_client::DLQ_TOPIC).as_deref(), Some(TOPIC), "the origin is named");
    assert_eq!(header(letter, tidemark_client::DLQ_PARTITION), Some(poison.partition.to_string()));
    assert_eq!(header(letter, tidemark_client::DLQ_OFFSET), Some(poison.offset.to_string()));
}
