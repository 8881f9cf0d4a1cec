//! Retention on three real `tidemark serve` processes: the disk stays bounded by what
//! retention keeps, and a follower that was down (`kill -9`) while the leader trimmed and
//! purged its log comes back with every retained batch: it then leads the partition and
//! serves the whole retained range, dense, with the acknowledged values.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use tidemark_client::{
    Client, ClientConfig, ConsumerConfig, ProducerConfig, ProducerRecord, StartPosition, TopicSettings,
};
use tidemark_tests::process::ProcessCluster;

const TOPIC: &str = "kept";
const RETENTION: u64 = 256 * 1024;
const SEGMENT: u64 = 1 << 20;
const WAVES: usize = 24;
const PER_WAVE: usize = 1000;
const VALUE: usize = 1000;

async fn produce(client: &Client) -> BTreeMap<u64, Bytes> {
    let producer = client.producer(ProducerConfig::default()).expect("producer");
    let mut acked = BTreeMap::new();
    for wave in 0..WAVES {
        let sends: Vec<_> = (0..PER_WAVE)
            .map(|i| {
                let mut v = format!("{wave}-{i}-").into_bytes();
                v.resize(VALUE, b'x');
                let v = Bytes::from(v);
                let f = producer.send(TOPIC, ProducerRecord::new(v.clone()));
                async move { (v, f.await) }
            })
            .collect();
        for (v, r) in futures::future::join_all(sends).await {
            let md = r.expect("two of three nodes accept every write");
            acked.insert(md.offset, v);
        }
    }
    producer.close().await;
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_bounds_the_disk_and_a_follower_back_from_the_dead_has_every_retained_batch() {
    // Leader balance off: the test moves leadership to a chosen replica itself.
    let flags = [
        "--retention-check-ms",
        "300",
        "--checkpoint-entries",
        "64",
        "--segment-bytes",
        "1048576",
        "--leader-balance",
        "false",
    ];
    let mut cluster = ProcessCluster::start_with(3, &flags).expect("start three processes");
    let client = Client::new(ClientConfig::new(cluster.addrs.clone())).expect("client");
    let settings = TopicSettings { retention_bytes: RETENTION, ..Default::default() };
    let created = client.admin().create_topic_with(TOPIC, 1, 3, settings).await.expect("create topic");
    let leader = created.partitions[0].leader.expect("a leader");
    let follower = (1..=3).find(|n| *n != leader).expect("a follower");
    cluster.kill9(follower as usize - 1);

    let acked = produce(&client).await;
    assert_eq!(acked.len(), WAVES * PER_WAVE);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let d = client.admin().describe_topic(TOPIC).await.expect("describe");
    let p = &d.partitions[0];
    assert!(p.log_start_offset > 0, "retention moved the log start");
    assert!(p.retained_bytes <= RETENTION, "{} bytes kept for a limit of {RETENTION}", p.retained_bytes);
    // About 24 MB went through the leader; what stays is the retained range, the segment
    // being written, a segment or two not yet compacted, and the small state.
    let disk = cluster.disk_bytes(leader as usize - 1);
    assert!(disk < 6 * SEGMENT, "{disk} bytes on the leader's disk after ~24 MB written");

    cluster.restart(follower as usize - 1).expect("restart the follower");
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.make_leader(&client, TOPIC, follower).await;

    // The follower that was down through every trim now serves the retained range.
    let d = client.admin().describe_topic(TOPIC).await.expect("describe");
    let (start, end) = (d.partitions[0].log_start_offset, d.partitions[0].log_end_offset);
    assert_eq!(end, acked.len() as u64);
    let mut consumer = client
        .consumer(TOPIC, Some(vec![0]), StartPosition::Earliest, ConsumerConfig::default())
        .await
        .expect("consumer");
    let mut next = start;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while next < end {
        assert!(tokio::time::Instant::now() < deadline, "read stalled at offset {next} of {start}..{end}");
        for r in consumer.poll(Duration::from_millis(500)).await.expect("poll") {
            assert_eq!(r.offset, next, "dense from the log start");
            assert_eq!(Some(&r.value), acked.get(&r.offset), "offset {} holds what was acknowledged", r.offset);
            next += 1;
        }
    }
}
