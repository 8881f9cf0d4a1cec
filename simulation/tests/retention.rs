//! Retention, snapshots and catch-up, deterministically: a replica that was down while
//! the leader purged its log past everything that replica held (or whose disk was wiped)
//! must come back with the snapshot *and* every retained batch, never with a hole between
//! the log start and the snapshot point. Each replica is read straight from its node's
//! engine, batch by batch, so a missing entry cannot hide behind a healthy replica.
#![cfg(madsim)]

use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;

use tidemark_client::{Client, ClientConfig, TopicSettings};
use tidemark_simulation::harness::SimCluster;
use tidemark_simulation::replicas::read_replicas;
use tidemark_simulation::workload::{produce, TopicSpec};

const TOPIC: &str = "kept";
/// Small enough that the 4000 records produced go through several trims.
const RETENTION_BYTES: u64 = 16 * 1024;

fn cluster() -> SimCluster {
    SimCluster::start_with(3, |c| {
        c.retention_check_ms = 300;
        c.checkpoint_entries = 64;
    })
}

/// Creates the topic, then takes down (or wipes) a follower of partition 0 that is not
/// node 1, produces past several trims, brings it back and checks every replica.
async fn lagging_follower_catches_up(wipe: bool) {
    let cluster = cluster();
    let host = cluster.client_host(1);
    let bootstrap = cluster.addrs.clone();
    let b = bootstrap.clone();
    let leader = host
        .spawn(async move {
            let client = Client::new(ClientConfig::new(b)).expect("client");
            let settings = TopicSettings { retention_bytes: RETENTION_BYTES, ..Default::default() };
            let d = client.admin().create_topic_with(TOPIC, 1, 3, settings).await.expect("create topic");
            d.partitions[0].leader.expect("a leader")
        })
        .await
        .expect("create");
    let follower = [2u64, 3].into_iter().find(|n| *n != leader).expect("a follower other than node 1");
    let f = follower as usize - 1;
    if wipe {
        cluster.kill_and_wipe(f);
    } else {
        cluster.kill(f);
    }

    // Forty waves, so the records land in many batches (Raft entries) to trim.
    let b = bootstrap.clone();
    let (acked, failed) = host
        .spawn(async move {
            let client = Client::new(ClientConfig::new(b)).expect("client");
            let (mut acked, mut failed) = (tidemark_simulation::workload::Acked::new(), 0);
            for wave in 0..40u32 {
                let (a, f) = produce(&client, TOPIC, wave * 100..(wave + 1) * 100).await;
                acked.extend(a);
                failed += f;
            }
            (acked, failed)
        })
        .await
        .expect("produce");
    assert_eq!((acked.len(), failed), (4000, 0), "two of three nodes accept every write");

    // Retention runs every 300 ms; give the leader time to trim, snapshot and purge.
    let lead = cluster.broker(leader as usize - 1).expect("the leader runs");
    let group = lead.topic(TOPIC).expect("topic").group(0);
    let replica = lead.local_replica(group).expect("leader replica");
    madsim::time::sleep(Duration::from_secs(3)).await;
    let purged = replica.raft.metrics().borrow_watched().purged.map(|id| id.index);
    let start = replica.shared.read().log_start_offset;
    assert!(start > 0, "retention moved the log start");
    assert!(purged.is_some_and(|p| p > 10), "the leader purged its Raft log (purged: {purged:?})");

    cluster.restart(f);
    madsim::time::sleep(Duration::from_secs(5)).await;
    let topics = [TopicSpec { name: TOPIC.into(), partitions: 1 }];
    let parts = read_replicas(&cluster, &topics, Duration::from_secs(30)).await;
    let replicas = &parts[0].replicas;
    for r in replicas {
        assert_eq!(r.error, None, "node {} is readable in full from its log start", r.node);
        assert!(!r.batches.is_empty(), "node {} holds retained batches", r.node);
        assert_eq!(r.batches[0].base_offset, r.log_start, "node {}: the first batch is at the log start", r.node);
        for w in r.batches.windows(2) {
            assert_eq!(w[0].base_offset + w[0].record_count as u64, w[1].base_offset, "node {}: dense", r.node);
        }
    }
    let back = replicas.iter().find(|r| r.node == follower).expect("the follower's replica");
    for other in replicas.iter().filter(|r| r.node != follower) {
        assert_eq!(
            (back.log_start, back.next_offset, &back.batches),
            (other.log_start, other.next_offset, &other.batches),
            "node {follower} (back) and node {} hold the same batches",
            other.node
        );
    }
    let engine_of = |n: u64| cluster.broker(n as usize - 1).expect("running");
    let snap = engine_of(follower).local_replica(group).expect("replica").raft.metrics().borrow_watched().snapshot;
    assert!(snap.is_some(), "the follower caught up through a snapshot");
}

#[madsim::test]
async fn a_follower_down_past_the_purge_gets_the_snapshot_and_every_retained_batch() {
    lagging_follower_catches_up(false).await;
}

#[madsim::test]
async fn a_wiped_follower_rebuilds_from_its_peers() {
    lagging_follower_catches_up(true).await;
}
