//! Quotas on a real `tidemark serve` process: a client over its produce quota is slowed
//! to it (its answers are held back) without a single failed send, every record lands,
//! and quotas can be listed and removed.

use std::time::{Duration, Instant};

use tidemark_client::{Client, ClientConfig, ProducerConfig, ProducerRecord, Quota};
use tidemark_tests::process::ProcessCluster;

const RECORDS: u64 = 50;
const RECORD_BYTES: usize = 16 << 10;
const RATE: u64 = 200_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_quota_is_slowed_not_failed() {
    let cluster = ProcessCluster::start(1).expect("start a node");
    let config =
        ClientConfig { bootstrap_timeout: Duration::from_secs(30), ..ClientConfig::new(cluster.addrs.clone()) };
    let client = Client::new(config).expect("client");
    let admin = client.admin();
    admin.create_topic("q", 1, 1, 0, 0).await.expect("create topic");
    // Without --require-auth and without a certificate, every client is User:ANONYMOUS.
    let quota = Quota { principal: "User:ANONYMOUS".into(), produce_bytes_per_sec: RATE, ..Default::default() };
    admin.set_quota(&quota).await.expect("set quota");
    assert_eq!(admin.list_quotas().await.expect("list"), vec![quota.clone()]);

    let producer = client.producer(ProducerConfig::default()).expect("producer");
    let started = Instant::now();
    let sends: Vec<_> =
        (0..RECORDS).map(|i| producer.send("q", ProducerRecord::new(vec![i as u8; RECORD_BYTES]))).collect();
    for sent in futures::future::join_all(sends).await {
        sent.expect("a throttled send still succeeds");
    }
    let elapsed = started.elapsed();
    // 800 KiB at 200 KB/s, one second of it as burst: about 3 s. 2 s is a generous lower
    // bound (an upper bound would measure the machine, not the quota).
    assert!(elapsed >= Duration::from_secs(2), "sent in {elapsed:?}: not throttled");
    let d = admin.describe_topic("q").await.expect("describe");
    assert_eq!(d.partitions[0].log_end_offset, RECORDS, "every record landed");

    assert!(admin.remove_quota("User:ANONYMOUS").await.expect("remove"), "it had one");
    assert!(!admin.remove_quota("User:ANONYMOUS").await.expect("remove again"), "and now none");
    assert!(admin.list_quotas().await.expect("list").is_empty());
}
