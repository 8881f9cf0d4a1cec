//! A partitioned consumer group on three real `tidemark serve` processes scales from 1
//! member to 4 to 8 while a producer keeps producing; meanwhile the leader of a
//! partition is killed with SIGKILL (and restarted), and two members are killed (no
//! commit, no leave: the session timeout moves their partitions).
//!
//! ```text
//! producer ──────────────────────────────────────────────────────────────▶ stop ─ drain ─ close
//! members  1 ─▶ 4 ─▶ kill -9 leader of p0, restart ─▶ 8 ─▶ kill 2 members ─▶ 6
//! ```
//!
//! Asserted: every acknowledged record is processed with its value, each partition's
//! processed offsets are dense up to its log end, and a record is processed twice only
//! where at-least-once allows it — its first processor was killed, or the repeat came
//! during the leader failover. Joins and clean leaves (handovers) redeliver nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidemark_client::{Client, ClientConfig, GroupConsumerConfig, GroupSettings};
use tidemark_simulation::workload::Acked;
use tidemark_tests::process::ProcessCluster;
use tidemark_tests::scale::{wave_producer, Member, CLOSE, KILL, RUN};
use tokio::time::Instant;

const TOPIC: &str = "scale";
const GROUP: &str = "scalers";
const PARTITIONS: u32 = 8;
/// Generous: the machine running this may be a loaded 2-core box.
const SETTLE: Duration = Duration::from_secs(45);

/// One record handed to a member.
#[derive(Debug, Clone)]
struct Delivery {
    member: usize,
    partition: u32,
    offset: u64,
    value: String,
    at: Instant,
}

type Log = Arc<Mutex<Vec<Delivery>>>;

/// A member that processes (logs) everything it polls until told to close or die.
/// Poll errors are tolerated for a while: a partition leader is killed under it.
fn member(client: &Client, index: usize, log: Log) -> Member {
    let control = Arc::new(AtomicU8::new(RUN));
    let (client, c) = (client.clone(), control.clone());
    let task = tokio::spawn(async move {
        let mut config = GroupConsumerConfig::new(GROUP, [TOPIC]);
        config.client_id = format!("m{index}");
        config.auto_commit_interval = Duration::from_millis(500);
        let mut consumer = client.group_consumer(config).await.expect("join the group");
        let mut errors = 0;
        loop {
            match consumer.poll(Duration::from_millis(200)).await {
                Ok(records) => {
                    errors = 0;
                    let at = Instant::now();
                    log.lock().unwrap().extend(records.into_iter().map(|r| Delivery {
                        member: index,
                        partition: r.partition,
                        offset: r.offset,
                        value: String::from_utf8_lossy(&r.value).into_owned(),
                        at,
                    }));
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

/// Waits until the group has `n` members sharing every partition, balanced, with no
/// handover under way.
async fn wait_for_members(client: &Client, n: usize) {
    let deadline = Instant::now() + SETTLE;
    let mut last = String::new();
    loop {
        if let Ok(d) = client.admin().describe_group(GROUP).await {
            let mut owned: BTreeMap<&str, usize> = d.members.iter().map(|m| (m.member_id.as_str(), 0)).collect();
            for p in &d.partitions {
                if let (Some(o), None) = (&p.owner, &p.moving_to) {
                    *owned.entry(o.as_str()).or_default() += 1;
                }
            }
            let (lo, hi) = (owned.values().min().copied(), owned.values().max().copied());
            let balanced = hi.zip(lo).is_some_and(|(h, l)| h - l <= 1);
            if owned.len() == n && balanced && owned.values().sum::<usize>() == PARTITIONS as usize {
                return;
            }
            last = format!("{owned:?}");
        }
        assert!(Instant::now() < deadline, "group did not settle at {n} members: {last}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every acknowledged record was processed by some member.
async fn wait_processed(log: &Log, acked: &Acked) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let seen: BTreeSet<(u32, u64)> = log.lock().unwrap().iter().map(|d| (d.partition, d.offset)).collect();
        let missing = acked.keys().filter(|k| !seen.contains(k)).count();
        if missing == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{missing} acknowledged records were never processed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Kills the leader of partition 0 with SIGKILL, waits, restarts it. Returns when the
/// kill happened.
async fn kill9_partition_leader(cluster: &mut ProcessCluster, client: &Client) -> Instant {
    let leader = loop {
        if let Ok(d) = client.admin().describe_topic(TOPIC).await {
            if let Some(l) = d.partitions[0].leader {
                break l;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let at = Instant::now();
    cluster.kill9(leader as usize - 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.restart(leader as usize - 1).expect("restart the killed node");
    at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_group_scales_1_4_8_through_member_and_leader_kills() {
    let started = Instant::now();
    let mut cluster = ProcessCluster::start(3).expect("start three processes");
    let client = Client::new(ClientConfig::new(cluster.addrs.clone())).expect("client");
    client.admin().create_topic(TOPIC, PARTITIONS, 3, 0, 0).await.expect("topic");
    let settings = GroupSettings {
        session_timeout: Some(Duration::from_secs(3)),
        heartbeat_interval: Some(Duration::from_millis(300)),
        rebalance_timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    client.admin().create_group(GROUP, &[TOPIC.to_string()], &settings).await.expect("group");

    let log: Log = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producing = wave_producer(&client, TOPIC, stop.clone());
    let mut members = vec![member(&client, 0, log.clone())];
    wait_for_members(&client, 1).await;
    for i in 1..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        members.push(member(&client, i, log.clone()));
    }
    wait_for_members(&client, 4).await;

    let failover_from = kill9_partition_leader(&mut cluster, &client).await;
    wait_for_members(&client, 4).await;
    let failover_to = Instant::now() + Duration::from_secs(2);

    for i in 4..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        members.push(member(&client, i, log.clone()));
    }
    wait_for_members(&client, 8).await;
    let killed = [2usize, 5];
    for k in killed {
        members[k].stop(KILL, SETTLE).await;
    }
    wait_for_members(&client, 6).await;

    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let acked = producing.await.expect("producer");
    wait_processed(&log, &acked).await;
    for (i, m) in members.iter_mut().enumerate().filter(|(i, _)| !killed.contains(i)) {
        tokio::time::timeout(SETTLE, m.stop(CLOSE, SETTLE))
            .await
            .unwrap_or_else(|_| panic!("member {i} did not close"));
    }

    let log = log.lock().unwrap().clone();
    check_values_and_density(&client, &log, &acked).await;
    check_redeliveries(&log, &killed, failover_from..failover_to);
    eprintln!("{} records acknowledged, {} deliveries, took {:?}", acked.len(), log.len(), started.elapsed());
}

/// Every acknowledged record was processed with its value; each partition's processed
/// offsets are exactly 0..log end (dense, nothing skipped), and all of it is committed.
async fn check_values_and_density(client: &Client, log: &[Delivery], acked: &Acked) {
    assert!(acked.len() > 1000, "the producer kept producing: {} acknowledged", acked.len());
    let processed: BTreeMap<(u32, u64), &str> =
        log.iter().map(|d| ((d.partition, d.offset), d.value.as_str())).collect();
    for (pos, value) in acked {
        assert_eq!(processed.get(pos).copied(), Some(value.as_str()), "acknowledged record {pos:?}");
    }
    let d = client.admin().describe_group(GROUP).await.expect("describe");
    assert!(d.members.is_empty(), "every live member left: {:?}", d.members);
    for p in &d.partitions {
        let end = p.log_end_offset.expect("log end");
        let offsets: Vec<u64> = processed.keys().filter(|(q, _)| *q == p.partition).map(|(_, o)| *o).collect();
        assert_eq!(offsets, (0..end).collect::<Vec<_>>(), "partition {} processed densely to {end}", p.partition);
        assert_eq!(p.lag, Some(0), "committed to the end: {p:?}");
    }
}

/// A record processed more than once: allowed only if an earlier processor was killed
/// (it died past its last commit), or the repeat came while the partition leader failed
/// over. Anything else is a clean handover that redelivered.
fn check_redeliveries(log: &[Delivery], killed: &[usize], failover: std::ops::Range<Instant>) {
    let mut by_record: BTreeMap<(u32, u64), Vec<&Delivery>> = BTreeMap::new();
    for d in log {
        by_record.entry((d.partition, d.offset)).or_default().push(d);
    }
    let (mut after_kill, mut in_failover) = (0, 0);
    for ((p, o), ds) in by_record.iter().filter(|(_, ds)| ds.len() > 1) {
        for (j, again) in ds.iter().enumerate().skip(1) {
            if ds[..j].iter().any(|d| killed.contains(&d.member)) {
                after_kill += 1;
            } else if failover.contains(&again.at) {
                in_failover += 1;
            } else {
                let who: Vec<usize> = ds.iter().map(|d| d.member).collect();
                panic!("{p}/{o} was processed by members {who:?}: a redelivery no kill or failover explains");
            }
        }
    }
    eprintln!("redelivered: {after_kill} after member kills, {in_failover} during the leader failover");
}
