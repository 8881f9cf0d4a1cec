//! Membership on real `tidemark serve` processes: a fourth node started with `--join`
//! waits until `add_node` adds it (as a learner: three voters are enough), then a
//! partition moves onto it while a producer keeps writing, dropping the replica that led
//! it. Every acknowledged record is then read back from the new replica set, offsets
//! dense, even with one of the replicas that stayed killed. A voter is removed while a
//! producer writes: its partitions move first, then a learner takes its vote.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tidemark_client::{Client, ClientConfig, ConsumerConfig, ProducerConfig, ProducerRecord, StartPosition};
use tidemark_tests::process::ProcessCluster;

const TOPIC: &str = "moving";

async fn eventually<T>(what: &str, within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what} did not happen within {within:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// (partition, offset) -> value of every acknowledged record.
type Acked = BTreeMap<(u32, u64), Vec<u8>>;

/// Sends keyed records until `stop`; returns those acknowledged.
fn spawn_producer(client: &Client, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Acked> {
    let client = client.clone();
    tokio::spawn(async move {
        let producer = client.producer(ProducerConfig::default()).expect("producer");
        let mut acked = Acked::new();
        let mut i = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let value = format!("r{i}");
            if let Ok(a) = producer.send(TOPIC, ProducerRecord::new(value.clone()).key(value.clone())).await {
                acked.insert((a.partition, a.offset), value.into_bytes());
            }
            i += 1;
        }
        acked
    })
}

/// Reads each of `partitions` from the start: offsets dense, every acknowledged record
/// there with its value.
async fn assert_read_back(client: &Client, acked: &Acked, partitions: u32) {
    for p in 0..partitions {
        let want: BTreeMap<u64, &Vec<u8>> =
            acked.iter().filter(|((part, _), _)| *part == p).map(|((_, o), v)| (*o, v)).collect();
        let Some(&last) = want.keys().last() else { continue };
        let mut consumer = client
            .consumer(TOPIC, Some(vec![p]), StartPosition::Earliest, ConsumerConfig::default())
            .await
            .expect("consumer");
        let (mut next, deadline) = (0, tokio::time::Instant::now() + Duration::from_secs(60));
        while next <= last {
            assert!(tokio::time::Instant::now() < deadline, "partition {p}: read stalled at offset {next}");
            for r in consumer.poll(Duration::from_millis(500)).await.unwrap_or_default() {
                assert_eq!(r.offset, next, "partition {p}: dense from offset 0");
                if let Some(v) = want.get(&r.offset) {
                    assert_eq!(&r.value[..], &v[..], "partition {p} offset {} holds what was acknowledged", r.offset);
                }
                next += 1;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_node_takes_over_a_partition_while_it_is_written() {
    let mut cluster = ProcessCluster::start(3).expect("start three processes");
    let client = Client::new(ClientConfig::new(cluster.addrs.clone())).expect("client");
    let created = client.admin().create_topic(TOPIC, 1, 3, 0, 0).await.expect("create topic");
    let old = created.partitions[0].replicas.clone();

    let four = cluster.spawn_joiner().expect("start node 4");
    let address = cluster.cluster_addrs[four].clone();
    // Not a member yet: nothing in the cluster knows it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(client.admin().cluster_status().await.expect("status").nodes.len(), 3);
    let voter = client.admin().add_node(4, &address).await.expect("add node 4");
    assert!(!voter, "a fourth node is a learner: three voters are enough");
    assert!(client.admin().add_node(4, &address).await.is_ok(), "adding it again is a no-op");
    let wrong = client.admin().add_node(5, &address).await.expect_err("another id at its address");
    assert!(wrong.to_string().contains("node 4"), "{wrong}");
    let client_addr = cluster.addrs[four].clone();
    eventually("node 4 publishing its client address", Duration::from_secs(20), async || {
        let status = client.admin().cluster_status().await.ok()?;
        let n = status.nodes.iter().find(|n| n.id == 4)?;
        (n.address == client_addr && n.alive && !n.voter).then_some(())
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let producing = spawn_producer(&client, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Drop the preferred leader (the replica leading it), add node 4.
    let target = vec![old[1], old[2], 4];
    let bad = client.admin().reassign_partition(TOPIC, 0, &[old[1], old[2]]).await.expect_err("fewer replicas");
    assert!(bad.to_string().contains("replication factor"), "{bad}");
    let stranger = client.admin().reassign_partition(TOPIC, 0, &[old[1], old[2], 9]).await.expect_err("no node 9");
    assert!(stranger.to_string().contains("not a member"), "{stranger}");
    let d = client.admin().reassign_partition(TOPIC, 0, &target).await.expect("reassign");
    assert_eq!(d.partitions[0].moving_to, target, "the move is recorded at once");
    eventually("the move to complete", Duration::from_secs(60), async || {
        let d = client.admin().describe_topic(TOPIC).await.ok()?;
        let p = &d.partitions[0];
        (p.moving_to.is_empty() && p.replicas == target && p.leader.is_some()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let acked = producing.await.expect("producer task");
    assert!(acked.len() > 20, "the producer made progress across the move ({} acked)", acked.len());

    // Node 4 holds the data: with one of the replicas that stayed gone, the other and node
    // 4 are a majority and serve every acknowledged record.
    cluster.kill9(old[1] as usize - 1);
    assert_read_back(&client, &acked, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_is_removed_while_written_and_a_learner_takes_its_vote() {
    let mut cluster = ProcessCluster::start(3).expect("start three processes");
    let client = Client::new(ClientConfig::new(cluster.addrs.clone())).expect("client");
    let four = cluster.spawn_joiner().expect("start node 4");
    let address = cluster.cluster_addrs[four].clone();
    assert!(!client.admin().add_node(4, &address).await.expect("add node 4"), "a learner");
    let created = client.admin().create_topic(TOPIC, 3, 3, 0, 0).await.expect("create topic");
    let on_two = created.partitions.iter().filter(|p| p.replicas.contains(&2)).count() as u32;
    assert!(on_two > 0, "node 2 holds some partitions: {created:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let producing = spawn_producer(&client, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Node 2 is a voter; removing it moves every partition it holds first.
    let moving = client.admin().remove_node(2).await.expect("start removing node 2");
    assert_eq!(moving, Some(on_two), "every partition on node 2 starts moving off it");
    let created = client.admin().create_topic("after", 1, 3, 0, 0).await.expect("create while draining");
    assert!(!created.partitions[0].replicas.contains(&2), "nothing new is placed on a node being removed");
    eventually("node 2 to leave", Duration::from_secs(90), async || {
        client.admin().remove_node(2).await.ok()?.is_none().then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let acked = producing.await.expect("producer task");
    assert!(acked.len() > 20, "the producer made progress across the removal ({} acked)", acked.len());

    // The last membership change settles (its joint phase lists the old voters too).
    eventually("node 4 to take node 2's vote", Duration::from_secs(20), async || {
        let status = client.admin().cluster_status().await.ok()?;
        let ids: Vec<(u64, bool)> = status.nodes.iter().map(|n| (n.id, n.voter)).collect();
        (ids == [(1, true), (3, true), (4, true)]).then_some(())
    })
    .await;
    let d = client.admin().describe_topic(TOPIC).await.expect("describe");
    assert!(d.partitions.iter().all(|p| !p.replicas.contains(&2) && p.moving_to.is_empty()), "{d:?}");
    // Node 2's process can stop; with node 1 gone too, nodes 3 and 4 serve everything.
    cluster.kill9(1);
    cluster.kill9(0);

    assert_read_back(&client, &acked, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_dead_past_replace_dead_after_is_replaced() {
    let mut cluster = ProcessCluster::start_with(3, &["--replace-dead-after-ms", "10000"]).expect("start");
    let client = Client::new(ClientConfig::new(cluster.addrs.clone())).expect("client");
    let four = cluster.spawn_joiner().expect("start node 4");
    let address = cluster.cluster_addrs[four].clone();
    client.admin().add_node(4, &address).await.expect("add node 4");
    client.admin().create_topic(TOPIC, 2, 3, 0, 0).await.expect("create topic");
    let producer = client.producer(ProducerConfig::default()).expect("producer");
    let mut acked = Acked::new();
    for i in 0..100u32 {
        let value = format!("r{i}");
        let a = producer.send(TOPIC, ProducerRecord::new(value.clone()).key(value.clone())).await.expect("send");
        acked.insert((a.partition, a.offset), value.into_bytes());
    }

    cluster.kill9(2);
    eventually("node 3 to be replaced", Duration::from_secs(90), async || {
        let status = client.admin().cluster_status().await.ok()?;
        let ids: Vec<(u64, bool)> = status.nodes.iter().map(|n| (n.id, n.voter)).collect();
        let d = client.admin().describe_topic(TOPIC).await.ok()?;
        let moved = d.partitions.iter().all(|p| !p.replicas.contains(&3) && !p.under_replicated());
        (ids == [(1, true), (2, true), (4, true)] && moved).then_some(())
    })
    .await;
    assert_read_back(&client, &acked, 2).await;
}
