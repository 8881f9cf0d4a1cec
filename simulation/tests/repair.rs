//! Repair after disk damage, deterministically: a replica whose synced log was damaged
//! (it lost entries it had acknowledged, and knows it) must not vote until its peers have
//! given everything back, so it can never help elect a leader that lacks an acknowledged
//! entry. Once repaired it holds the same batches as the others and votes again.
#![cfg(madsim)]

use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::ServerState;

use tidemark_client::{Client, ClientConfig};
use tidemark_simulation::harness::SimCluster;
use tidemark_simulation::replicas::read_replicas;
use tidemark_simulation::workload::{produce, TopicSpec};

const TOPIC: &str = "damaged";

#[madsim::test]
async fn a_damaged_replica_does_not_vote_until_it_has_repaired_from_its_peers() {
    let cluster = SimCluster::start_with(3, |c| c.checkpoint_entries = 64);
    let host = cluster.client_host(1);
    let bootstrap = cluster.addrs.clone();
    let b = bootstrap.clone();
    let (leader, acked) = host
        .spawn(async move {
            let client = Client::new(ClientConfig::new(b)).expect("client");
            let d = client.admin().create_topic(TOPIC, 1, 3, 0, 0).await.expect("create topic");
            let (acked, failed) = produce(&client, TOPIC, 0..400).await;
            assert_eq!(failed, 0, "a healthy cluster accepts every write");
            (d.partitions[0].leader.expect("a leader"), acked.len())
        })
        .await
        .expect("create and produce");
    assert_eq!(acked, 400);
    let l = leader as usize - 1;
    let d = (0..3).find(|&i| i != l).expect("a follower");
    let e = (0..3).find(|&i| i != l && i != d).expect("the other follower");

    cluster.kill_and_damage(d, 10);
    cluster.restart(d);
    madsim::time::sleep(Duration::from_secs(1)).await;
    let damaged = cluster.broker(d).expect("the damaged node runs");
    assert!(damaged.repairing() > 0, "every replica on the damaged node repairs");

    // Without its leader, the partition's other follower can only be elected with the
    // damaged replica's vote, which it must not get.
    cluster.kill(l);
    madsim::time::sleep(Duration::from_secs(6)).await;
    let other = cluster.broker(e).expect("the other follower runs");
    let group = other.topic(TOPIC).expect("topic").group(0);
    let state = other.local_replica(group).expect("replica").raft.metrics().borrow_watched().state;
    assert_ne!(state, ServerState::Leader, "node {} was elected with a damaged replica's vote", e + 1);
    assert!(damaged.repairing() > 0, "no leader, so no repair yet");

    cluster.restart(l);
    madsim::time::sleep(Duration::from_secs(10)).await;
    let damaged = cluster.broker(d).expect("the damaged node runs");
    assert_eq!(damaged.repairing(), 0, "every replica caught up and votes again");
    let topics = [TopicSpec { name: TOPIC.into(), partitions: 1 }];
    let parts = read_replicas(&cluster, &topics, Duration::from_secs(30)).await;
    let replicas = &parts[0].replicas;
    for r in replicas {
        assert_eq!(r.error, None, "node {} is readable", r.node);
        assert!(r.next_offset >= 400, "node {} holds every acknowledged record: next offset {}", r.node, r.next_offset);
        assert_eq!(
            r.batches, replicas[0].batches,
            "node {} holds the same batches as node {}",
            r.node, replicas[0].node
        );
    }

    // Repaired, it counts again: with the other follower down, it and the leader carry on.
    cluster.kill(e);
    let b = bootstrap.clone();
    let (more, failed) = host
        .spawn(async move {
            let client = Client::new(ClientConfig::new(b)).expect("client");
            let (acked, failed) = produce(&client, TOPIC, 400..500).await;
            (acked.len(), failed)
        })
        .await
        .expect("produce after repair");
    assert_eq!((more, failed), (100, 0), "the repaired replica forms a majority with the leader");
}
