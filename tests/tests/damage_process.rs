//! Disk damage on three real `tidemark serve` processes: a follower whose sealed segment
//! rots while it is down finds the damage (its background check reads every sealed
//! segment) and exits with an error, as a supervisor expects; restarted, it rebuilds
//! every replica from its peers without voting meanwhile, and then leads the partition
//! serving every acknowledged record, dense, with the acknowledged values.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tidemark_client::{Client, ClientConfig, ConsumerConfig, ProducerConfig, ProducerRecord, StartPosition};
use tidemark_tests::process::ProcessCluster;

const TOPIC: &str = "rot";

async fn produce(client: &Client, records: usize) -> BTreeMap<u64, Bytes> {
    let producer = client.producer(ProducerConfig::default()).expect("producer");
    let sends: Vec<_> = (0..records)
        .map(|i| {
            let mut v = format!("{i}-").into_bytes();
            v.resize(1000, b'x');
            let v = Bytes::from(v);
            let f = producer.send(TOPIC, ProducerRecord::new(v.clone()));
            async move { (v, f.await) }
        })
        .collect();
    let mut acked = BTreeMap::new();
    for (v, r) in futures::future::join_all(sends).await {
        acked.insert(r.expect("a healthy cluster accepts every write").offset, v);
    }
    producer.close().await;
    acked
}

/// Waits (up to 60 s) until the leader counts `node` in sync.
async fn wait_in_sync(client: &Client, node: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let d = client.admin().describe_topic(TOPIC).await;
        if d.as_ref().is_ok_and(|d| d.partitions.iter().all(|p| p.in_sync_replicas.contains(&node))) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "node {node} never caught up: {d:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn segments(cluster: &ProcessCluster, i: usize) -> Vec<PathBuf> {
    let dir = cluster.data_dir(i).join("log");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("log dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_synced_segment_rots_repairs_from_its_peers_and_loses_nothing() {
    // Leader balance off: the test moves leadership to a chosen replica itself.
    let flags = ["--segment-bytes", "1048576", "--retention-check-ms", "300", "--leader-balance", "false"];
    let mut cluster = ProcessCluster::start_with(3, &flags).expect("start three processes");
    let client = Client::new(ClientConfig::new(cluster.addrs.clone())).expect("client");
    let created = client.admin().create_topic(TOPIC, 1, 3, 0, 0).await.expect("create topic");
    let leader = created.partitions[0].leader.expect("a leader");
    let acked = produce(&client, 6000).await;
    let follower = (1..=3).find(|n| *n != leader).expect("a follower");
    let f = follower as usize - 1;
    // Acknowledged means on two of three: let the follower hold everything before it dies.
    wait_in_sync(&client, follower).await;
    cluster.kill9(f);

    // Rot in the middle of a segment that was synced whole when it was sealed.
    let files = segments(&cluster, f);
    assert!(files.len() >= 3, "6 MB in 1 MiB segments: {files:?}");
    let rotten = &files[1];
    let file = std::fs::OpenOptions::new().read(true).write(true).open(rotten).expect("open segment");
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, 500_000).expect("read");
    file.write_all_at(&[byte[0] ^ 0xff], 500_000).expect("write");
    drop(file);

    cluster.restart(f).expect("restart the damaged follower");
    let status = cluster.wait_exit(f, Duration::from_secs(30)).await;
    let log = cluster.log(f);
    assert!(status.is_some_and(|s| !s.success()), "the damaged node stops with an error ({status:?}):\n{log}");
    assert!(log.contains("background check") && log.contains(&rotten.display().to_string()), "{log}");

    // As its supervisor would, start it again: now it repairs.
    cluster.restart(f).expect("restart the damaged follower");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let log = cluster.log(f);
    assert!(log.contains("every replica here starts over from its peers"), "the repair starts:\n{log}");

    // Once repaired (back in sync) it can lead; then it serves every acknowledged record.
    wait_in_sync(&client, follower).await;
    cluster.make_leader(&client, TOPIC, follower).await;
    let d = client.admin().describe_topic(TOPIC).await.expect("describe");
    assert_eq!(d.partitions[0].log_end_offset, acked.len() as u64, "nothing acknowledged is lost");
    let mut consumer = client
        .consumer(TOPIC, Some(vec![0]), StartPosition::Earliest, ConsumerConfig::default())
        .await
        .expect("consumer");
    let mut next = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while next < acked.len() as u64 {
        assert!(tokio::time::Instant::now() < deadline, "read stalled at offset {next}");
        for r in consumer.poll(Duration::from_millis(500)).await.expect("poll") {
            assert_eq!(r.offset, next, "dense from offset 0");
            assert_eq!(Some(&r.value), acked.get(&r.offset), "offset {} holds what was acknowledged", r.offset);
            next += 1;
        }
    }
}
