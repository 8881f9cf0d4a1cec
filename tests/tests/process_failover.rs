//! Three real `tidemark serve` processes on 127.0.0.1. A partition leader is killed with
//! SIGKILL while an SDK producer is sending; then the whole cluster is killed and
//! restarted. Every acknowledged record must survive, at the offset it was acknowledged
//! with, and offsets must stay dense.

use std::time::Duration;

use tidemark_client::{Client, ClientConfig};
use tidemark_simulation::workload::{assert_no_acked_loss, produce, read_all};
use tidemark_tests::process::ProcessCluster;

const TOPIC: &str = "events";
const PARTITIONS: u32 = 2;
const READ_LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_leader_while_producing_then_whole_cluster_restart_loses_nothing() {
    let mut cluster = ProcessCluster::start(3).expect("start three processes");
    let client = Client::new(ClientConfig::new(cluster.addrs.clone())).expect("client");
    let created = client.admin().create_topic(TOPIC, PARTITIONS, 3, 0, 0).await;
    if let Err(e) = created {
        panic!("create topic: {e}\nnode logs:\n{}\n{}\n{}", cluster.log(0), cluster.log(1), cluster.log(2));
    }

    let (mut acked, failed_before) = produce(&client, TOPIC, 0..2000).await;
    assert_eq!(failed_before, 0);

    // Kill the leader of partition 0 with SIGKILL while the next wave is being sent.
    let leader = client.admin().describe_topic(TOPIC).await.expect("describe").partitions[0].leader;
    let leader = leader.expect("partition 0 has a leader");
    let sending = {
        let client = client.clone();
        tokio::spawn(async move { produce(&client, TOPIC, 2000..6000).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    cluster.kill9(leader as usize - 1);
    let (during, failed_during) = sending.await.expect("producer task");
    assert_eq!(failed_during, 0, "the producer carries on after the election");
    acked.extend(during);
    let (after, _) = produce(&client, TOPIC, 6000..7000).await;
    acked.extend(after);
    cluster.restart(leader as usize - 1).expect("restart the killed node");

    let seen = read_all(&client, TOPIC, PARTITIONS, READ_LIMIT).await;
    assert_no_acked_loss(&acked, &seen);
    assert_eq!(acked.len(), 7000, "every send was acknowledged");
    // The producer is idempotent (the default): retries across the failover wrote
    // nothing twice, so the log holds exactly what was acknowledged.
    assert_eq!(seen.len(), acked.len(), "no record was written twice");

    // Whole-cluster crash and restart on the same data dirs.
    for i in 0..3 {
        cluster.kill9(i);
    }
    for i in 0..3 {
        cluster.restart(i).expect("restart");
    }
    let client = Client::new(ClientConfig::new(cluster.addrs.clone())).expect("client");
    let seen_after_restart = read_all(&client, TOPIC, PARTITIONS, READ_LIMIT).await;
    assert_no_acked_loss(&acked, &seen_after_restart);
    assert_eq!(seen_after_restart, seen, "a whole-cluster restart changes nothing");
}
