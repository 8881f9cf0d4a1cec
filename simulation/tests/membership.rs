//! Partition moves under faults, deterministically: on four nodes, a partition moves from
//! three of them to another three while a producer writes, and a replica that stays is
//! killed and restarted in the middle of the move. The move completes, the replica that
//! left stops hosting the group, and the new replicas hold the same batches, every
//! acknowledged record among them.
#![cfg(madsim)]

use std::time::Duration;

use tidemark_client::{Client, ClientConfig};
use tidemark_simulation::harness::SimCluster;
use tidemark_simulation::replicas::read_replicas;
use tidemark_simulation::workload::{produce, read_all, TopicSpec};

const TOPIC: &str = "moving";

#[madsim::test]
async fn a_partition_moves_under_a_kill_and_keeps_every_acknowledged_record() {
    let cluster = SimCluster::start_with(4, |c| c.checkpoint_entries = 64);
    let host = cluster.client_host(1);
    let b = cluster.addrs.clone();
    let (old, first) = host
        .spawn(async move {
            let client = Client::new(ClientConfig::new(b)).expect("client");
            let d = client.admin().create_topic(TOPIC, 1, 3, 0, 0).await.expect("create topic");
            let (acked, _) = produce(&client, TOPIC, 0..300).await;
            (d.partitions[0].replicas.clone(), acked)
        })
        .await
        .expect("create and produce");
    let spare = (1..=4).find(|n| !old.contains(n)).expect("a fourth node");
    let target = vec![old[1], old[2], spare];

    let b = cluster.addrs.clone();
    let producing = host.spawn(async move {
        let client = Client::new(ClientConfig::new(b)).expect("client");
        produce(&client, TOPIC, 300..900).await.0
    });
    let (b, t) = (cluster.addrs.clone(), target.clone());
    host.spawn(async move {
        let client = Client::new(ClientConfig::new(b)).expect("client");
        client.admin().reassign_partition(TOPIC, 0, &t).await.expect("reassign")
    })
    .await
    .expect("reassign");
    madsim::time::sleep(Duration::from_millis(700)).await;
    let stays = old[1] as usize - 1;
    cluster.kill(stays);
    madsim::time::sleep(Duration::from_secs(3)).await;
    cluster.restart(stays);
    let second = producing.await.expect("producer");

    let deadline = madsim::time::Instant::now() + Duration::from_secs(60);
    loop {
        let meta = (0..4).find_map(|i| cluster.broker(i)).and_then(|b| b.topic(TOPIC).ok());
        if meta.as_ref().is_some_and(|t| t.replicas[0] == target && t.moves.is_empty()) {
            break;
        }
        assert!(madsim::time::Instant::now() < deadline, "the move did not complete: {meta:?}");
        madsim::time::sleep(Duration::from_millis(500)).await;
    }
    madsim::time::sleep(Duration::from_secs(2)).await;
    let left = cluster.broker(old[0] as usize - 1).expect("the node that left runs");
    let group = left.topic(TOPIC).expect("topic").group(0);
    assert!(left.local_replica(group).is_none(), "node {} no longer hosts the partition", old[0]);

    let topics = [TopicSpec { name: TOPIC.into(), partitions: 1 }];
    let parts = read_replicas(&cluster, &topics, Duration::from_secs(30)).await;
    let replicas = &parts[0].replicas;
    let nodes: Vec<u64> = replicas.iter().map(|r| r.node).collect();
    assert_eq!(nodes, target);
    for r in replicas {
        assert_eq!(r.error, None, "node {} is readable", r.node);
        assert_eq!(r.batches, replicas[0].batches, "node {} holds what node {} holds", r.node, replicas[0].node);
    }
    let b = cluster.addrs.clone();
    let read = host
        .spawn(async move {
            let client = Client::new(ClientConfig::new(b)).expect("client");
            read_all(&client, TOPIC, 1, Duration::from_secs(60)).await
        })
        .await
        .expect("read");
    for (at, value) in first.iter().chain(second.iter()) {
        assert_eq!(read.get(at), Some(value), "acknowledged record {at:?} is there");
    }
}
