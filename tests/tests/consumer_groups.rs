//! A partitioned consumer group on three in-process nodes over real gRPC: the group
//! scales from 1 to 4 members while records flow, then one member is killed (no commit,
//! no leave). Every acknowledged record must be processed; a record may be processed
//! twice only if the killed member processed it first, in a partition it owned when it
//! died. Clean handovers (joins, graceful leaves) must redeliver nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidemark_client::{Client, ClientConfig, GroupConsumerConfig, GroupSettings};
use tidemark_simulation::workload::produce;
use tidemark_tests::InProcessCluster;
use tokio::task::JoinHandle;

const TOPIC: &str = "flow";
const GROUP: &str = "workers";
const PARTITIONS: u32 = 4;

/// (member index, partition, offset) of every record handed to a member.
type Log = Arc<Mutex<Vec<(usize, u32, u64)>>>;

const RUN: u8 = 0;
const CLOSE: u8 = 1;
const KILL: u8 = 2;

struct Member {
    control: Arc<AtomicU8>,
    task: JoinHandle<Vec<(String, u32)>>,
}

/// A member that processes (logs) everything it polls until told to close or die.
/// Returns its assignment at the moment it stopped.
fn member(client: &Client, index: usize, log: Log, commit_every: Duration) -> Member {
    let control = Arc::new(AtomicU8::new(RUN));
    let (client, c) = (client.clone(), control.clone());
    let task = tokio::spawn(async move {
        let mut config = GroupConsumerConfig::new(GROUP, [TOPIC]);
        config.client_id = format!("m{index}");
        config.auto_commit_interval = commit_every;
        let mut consumer = client.group_consumer(config).await.expect("join the group");
        loop {
            let records = consumer.poll(Duration::from_millis(100)).await.expect("poll");
            log.lock().unwrap().extend(records.iter().map(|r| (index, r.partition, r.offset)));
            match c.load(Ordering::SeqCst) {
                RUN => continue,
                KILL => {
                    let owned = consumer.assignment();
                    consumer.kill();
                    return owned;
                }
                _ => {
                    let owned = consumer.assignment();
                    consumer.close().await.expect("leave the group");
                    return owned;
                }
            }
        }
    });
    Member { control, task }
}

/// Waits until the group has `n` members sharing every partition, balanced, with no
/// handover under way.
async fn wait_for_members(client: &Client, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let d = client.admin().describe_group(GROUP).await.expect("describe");
        let mut owned: BTreeMap<&str, usize> = d.members.iter().map(|m| (m.member_id.as_str(), 0)).collect();
        for p in &d.partitions {
            if let (Some(o), None) = (&p.owner, &p.moving_to) {
                *owned.entry(o.as_str()).or_default() += 1;
            }
        }
        let (lo, hi) = (owned.values().min().copied(), owned.values().max().copied());
        let settled =
            owned.values().sum::<usize>() == PARTITIONS as usize && hi.zip(lo).is_some_and(|(h, l)| h - l <= 1);
        if owned.len() == n && settled {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "group did not settle at {n} members: {owned:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_scales_out_and_survives_a_killed_member() {
    let cluster = InProcessCluster::start(3).await.expect("cluster");
    let client = Client::new(ClientConfig::new(cluster.addrs.clone())).expect("client");
    client.admin().create_topic(TOPIC, PARTITIONS, 3, 0, 0).await.expect("topic");
    let settings = GroupSettings {
        session_timeout: Some(Duration::from_millis(2_000)),
        heartbeat_interval: Some(Duration::from_millis(200)),
        ..Default::default()
    };
    client.admin().create_group(GROUP, &[TOPIC.to_string()], &settings).await.expect("group");

    let log: Log = Arc::default();
    let producing = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut acked = BTreeMap::new();
            for wave in 0..16u32 {
                let (a, failed) = produce(&client, TOPIC, wave * 200..(wave + 1) * 200).await;
                assert_eq!(failed, 0);
                acked.extend(a);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            acked
        })
    };
    // Member 1 (the one killed) never auto-commits on its timer: whatever it processed in
    // its last partition is uncommitted when it dies, so that partition must redeliver.
    let killed = 1;
    let every = |i: usize| Duration::from_millis(if i == killed { 600_000 } else { 500 });
    let mut members = vec![member(&client, 0, log.clone(), every(0))];
    wait_for_members(&client, 1).await;
    for i in 1..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        members.push(member(&client, i, log.clone(), every(i)));
    }
    wait_for_members(&client, 4).await;

    // Kill member 1 mid-flow: its partition moves after the session timeout.
    members[killed].control.store(KILL, Ordering::SeqCst);
    let killed_parts: BTreeSet<u32> =
        (&mut members[killed].task).await.expect("member task").into_iter().map(|(_, p)| p).collect();
    assert_eq!(killed_parts.len(), 1);
    wait_for_members(&client, 3).await;

    let acked = producing.await.expect("producer");
    assert_eq!(acked.len(), 3200);
    let wanted: BTreeSet<(u32, u64)> = acked.keys().copied().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen: BTreeSet<(u32, u64)> = log.lock().unwrap().iter().map(|(_, p, o)| (*p, *o)).collect();
        let missing = wanted.difference(&seen).count();
        if missing == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{missing} acknowledged records were never processed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (i, m) in members.iter_mut().enumerate().filter(|(i, _)| *i != killed) {
        m.control.store(CLOSE, Ordering::SeqCst);
        (&mut m.task).await.unwrap_or_else(|e| panic!("member {i}: {e}"));
    }

    let mut deliveries: BTreeMap<(u32, u64), Vec<usize>> = BTreeMap::new();
    for (member, p, o) in log.lock().unwrap().iter() {
        deliveries.entry((*p, *o)).or_default().push(*member);
    }
    let redelivered: Vec<_> = deliveries.iter().filter(|(_, by)| by.len() > 1).collect();
    for ((p, o), by) in &redelivered {
        assert!(
            killed_parts.contains(p) && by[0] == killed && !by[1..].contains(&killed) && by.len() == 2,
            "{p}/{o} was delivered to members {by:?}: only records the killed member processed in its \
             partition {killed_parts:?} may be delivered again, once"
        );
    }
    assert!(!redelivered.is_empty(), "the killed member's uncommitted records were redelivered");
    eprintln!("{} records, {} redelivered after the kill", deliveries.len(), redelivered.len());

    // Everything is committed once the survivors closed cleanly.
    let d = client.admin().describe_group(GROUP).await.expect("describe");
    assert!(d.members.is_empty(), "every member left: {:?}", d.members);
    assert!(d.partitions.iter().all(|p| p.lag == Some(0)), "committed to the end: {:?}", d.partitions);
}
