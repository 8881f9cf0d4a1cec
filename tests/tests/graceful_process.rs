//! Graceful shutdown on three real `tidemark serve` processes: on SIGTERM a node hands
//! every leadership it holds to another voter before it exits, so by the time it is gone
//! every partition already has a leader elsewhere (without the hand-off they would wait
//! an election timeout), and a producer running throughout loses nothing. When a node
//! comes back, the partitions it prefers to lead return to it in the background, and
//! `topic describe` reports it out of sync while it is down and in sync once it is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tidemark_client::{Client, ClientConfig, ProducerConfig, ProducerRecord};
use tidemark_tests::process::ProcessCluster;

const TOPIC: &str = "handoff";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_every_leadership_over_before_the_node_exits() {
    let mut cluster = ProcessCluster::start(3).expect("start three processes");
    let client = Client::new(ClientConfig::new(cluster.addrs.clone())).expect("client");
    let created = client.admin().create_topic(TOPIC, 6, 3, 0, 0).await.expect("create topic");
    let leads = |n: u64| created.partitions.iter().filter(|p| p.leader == Some(n)).count();
    let node = (1..=3).max_by_key(|n| leads(*n)).expect("a node");
    assert!(leads(node) > 0, "node {node} leads some partitions: {created:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let producing = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            let producer = client.producer(ProducerConfig::default()).expect("producer");
            let (mut sent, mut failed) = (0u32, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                match producer.send(TOPIC, ProducerRecord::new(format!("r{sent}")).key(format!("k{sent}"))).await {
                    Ok(_) => {}
                    Err(e) => failed.push(e.to_string()),
                }
                sent += 1;
            }
            (sent, failed)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    cluster.terminate(node as usize - 1);
    let status = cluster.wait_exit(node as usize - 1, Duration::from_secs(15)).await;
    assert!(status.is_some_and(|s| s.success()), "node {node} stops cleanly on SIGTERM: {status:?}");
    // At once, not after an election timeout: the leaders moved before the node left.
    let d = client.admin().describe_topic(TOPIC).await.expect("describe");
    for p in &d.partitions {
        assert!(
            p.leader.is_some_and(|l| l != node),
            "partition {} has leader {:?} right after node {node} exited",
            p.partition,
            p.leader
        );
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let (sent, failed) = producing.await.expect("producer task");
    assert!(sent > 10, "the producer made progress ({sent} sends)");
    assert!(failed.is_empty(), "{} of {sent} sends failed across the shutdown: {:?}", failed.len(), &failed[..1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaderships_return_to_their_preferred_replica_after_a_restart() {
    let mut cluster = ProcessCluster::start(3).expect("start three processes");
    let client = Client::new(ClientConfig::new(cluster.addrs.clone())).expect("client");
    let created = client.admin().create_topic("balanced", 6, 3, 0, 0).await.expect("create topic");
    let preferred: Vec<u64> = created.partitions.iter().map(|p| p.replicas[0]).collect();
    assert!(preferred.contains(&1), "node 1 is the preferred leader of some partitions: {preferred:?}");

    // Followers start their replicas a moment after the topic is created; then every
    // replica is in sync.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let d = client.admin().describe_topic("balanced").await.expect("describe");
        if d.partitions.iter().all(|p| p.in_sync_replicas == [1, 2, 3]) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never all in sync: {d:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    cluster.kill9(0);
    // Others take over, and report node 1 out of sync (after three election timeouts).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let d = client.admin().describe_topic("balanced").await.expect("describe");
        let moved = d.partitions.iter().all(|p| p.leader.is_some_and(|l| l != 1));
        if moved && d.partitions.iter().all(|p| p.under_replicated() && !p.in_sync_replicas.contains(&1)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "node 1 still counted in sync: {d:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cluster.restart(0).expect("restart node 1");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let d = client.admin().describe_topic("balanced").await.expect("describe");
        let leaders: Vec<Option<u64>> = d.partitions.iter().map(|p| p.leader).collect();
        let in_sync = d.partitions.iter().all(|p| !p.under_replicated());
        if in_sync && leaders.iter().zip(&preferred).all(|(l, p)| *l == Some(*p)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "leaders {leaders:?} did not return to the preferred {preferred:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
