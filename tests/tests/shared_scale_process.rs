//! A shared (queue-style) group on three real `tidemark serve` processes scales from 1
//! member to 3 to 6 (more members than partitions) while a producer keeps producing; a
//! member is killed holding leases (no ack, no leave), and the leader of a partition is
//! killed with SIGKILL and restarted.
//!
//! ```text
//! producer ───────────────────────────────────────────────────▶ stop ─ drain ─ close
//! members  1 ─▶ 3 ─▶ kill -9 leader of p0, restart ─▶ 6 ─▶ kill 1 member ─▶ 5
//! ```
//!
//! Asserted: every acknowledged record was delivered with its value, and at the end the
//! group has settled every record of every partition (nothing lost between members,
//! leases and the failover). Redeliveries are allowed: leases expire and fail over.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidemark_client::{Client, ClientConfig, GroupConsumerConfig, GroupMode, GroupSettings};
use tidemark_simulation::workload::Acked;
use tidemark_tests::process::ProcessCluster;
use tidemark_tests::scale::{wave_producer, Member, CLOSE, KILL, RUN};
use tokio::time::Instant;

const TOPIC: &str = "work";
const GROUP: &str = "workers";
const PARTITIONS: u32 = 4;
/// Generous: the machine running this may be a loaded 2-core box.
const SETTLE: Duration = Duration::from_secs(45);

/// (partition, offset) → value of every record a member acknowledged.
type Log = Arc<Mutex<BTreeMap<(u32, u64), String>>>;

/// A member that acknowledges everything it is handed (the ack goes with its next poll)
/// until told to close or die. Poll errors are tolerated for a while: a partition
/// leader is killed under it.
fn member(client: &Client, index: usize, log: Log) -> Member {
    let control = Arc::new(AtomicU8::new(RUN));
    let (client, c) = (client.clone(), control.clone());
    let task = tokio::spawn(async move {
        let mut config = GroupConsumerConfig::new(GROUP, [TOPIC]);
        config.client_id = format!("m{index}");
        config.auto_commit = false;
        config.max_poll_records = 50;
        let mut consumer = client.shared_consumer(config).await.expect("join the group");
        let mut errors = 0;
        loop {
            match consumer.poll(Duration::from_millis(200)).await {
                Ok(records) => {
                    errors = 0;
                    for r in records {
                        consumer.ack(&r.record);
                        let value = String::from_utf8_lossy(&r.record.value).into_owned();
                        log.lock().unwrap().insert((r.record.partition, r.record.offset), value);
                    }
                }
                Err(e) => {
                    errors += 1;
                    assert!(errors < 100, "member {index}: {errors} polls in a row failed, last: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            match c.load(Ordering::SeqCst) {
                RUN => continue,
                KILL => return consumer.kill(),
                _ => return consumer.close().await.expect("leave the group"),
            }
        }
    });
    Member { control, task }
}

/// Waits until `n` members are in the group.
async fn wait_for_members(client: &Client, n: usize) {
    let deadline = Instant::now() + SETTLE;
    loop {
        if client.admin().describe_group(GROUP).await.is_ok_and(|d| d.members.len() == n) {
            return;
        }
        assert!(Instant::now() < deadline, "the group never had {n} members");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the group has settled every record of every partition.
async fn wait_settled(client: &Client, acked: &Acked, log: &Log) {
    let deadline = Instant::now() + SETTLE;
    let mut last = String::new();
    loop {
        let delivered = acked.keys().all(|k| log.lock().unwrap().contains_key(k));
        if let Ok(d) = client.admin().describe_group(GROUP).await {
            if delivered && d.partitions.iter().all(|p| p.lag == Some(0)) {
                return;
            }
            last = format!("{:?}", d.partitions.iter().map(|p| (p.partition, p.lag)).collect::<Vec<_>>());
        }
        assert!(Instant::now() < deadline, "not settled (all delivered: {delivered}; lag per partition {last})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_group_scales_1_3_6_through_member_and_leader_kills() {
    let started = Instant::now();
    let mut cluster = ProcessCluster::start(3).expect("start three processes");
    let client = Client::new(ClientConfig::new(cluster.addrs.clone())).expect("client");
    client.admin().create_topic(TOPIC, PARTITIONS, 3, 0, 0).await.expect("topic");
    let settings = GroupSettings {
        mode: GroupMode::Shared,
        session_timeout: Some(Duration::from_secs(3)),
        heartbeat_interval: Some(Duration::from_millis(300)),
        lock_duration: Some(Duration::from_secs(2)),
        // High enough that the kills and the failover never dead-letter a record.
        max_delivery_attempts: Some(50),
        ..Default::default()
    };
    client.admin().create_group(GROUP, &[TOPIC.to_string()], &settings).await.expect("group");

    let log: Log = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producing = wave_producer(&client, TOPIC, stop.clone());
    let mut members = vec![member(&client, 0, log.clone())];
    for i in 1..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        members.push(member(&client, i, log.clone()));
    }
    wait_for_members(&client, 3).await;

    let leader = client.admin().describe_topic(TOPIC).await.expect("describe").partitions[0].leader;
    let leader = leader.expect("partition 0 has a leader") as usize - 1;
    cluster.kill9(leader);
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.restart(leader).expect("restart the killed node");

    for i in 3..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        members.push(member(&client, i, log.clone()));
    }
    wait_for_members(&client, 6).await;
    members[1].stop(KILL, SETTLE).await;
    wait_for_members(&client, 5).await;

    stop.store(true, Ordering::SeqCst);
    let acked = producing.await.expect("producer");
    assert!(acked.len() > 500, "the producer kept producing: {} acknowledged", acked.len());
    wait_settled(&client, &acked, &log).await;
    for (i, m) in members.iter_mut().enumerate().filter(|(i, _)| *i != 1) {
        eprintln!("closing member {i}");
        m.stop(CLOSE, SETTLE).await;
    }
    let log = log.lock().unwrap().clone();
    for (pos, value) in &acked {
        assert_eq!(log.get(pos), Some(value), "acknowledged record {pos:?} was delivered with its value");
    }
    let partitions: BTreeSet<u32> = log.keys().map(|(p, _)| *p).collect();
    assert_eq!(partitions.len(), PARTITIONS as usize, "every partition was consumed");
    eprintln!("{} records acknowledged and settled, took {:?}", acked.len(), started.elapsed());
}
