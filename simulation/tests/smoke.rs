//! Deterministic smoke test: form a three-node cluster, create a topic, produce, kill
//! the partition leader (losing its unsynced writes), produce again, restart it, and
//! verify every acknowledged record. Reproduce a failure with the printed
//! `MADSIM_TEST_SEED`.
#![cfg(madsim)]

use std::time::Duration;

use tidemark_client::{Client, ClientConfig};
use tidemark_simulation::harness::SimCluster;
use tidemark_simulation::workload::{assert_no_acked_loss, produce, read_all};

const TOPIC: &str = "smoke";

#[madsim::test]
async fn leader_kill_and_restart_lose_nothing_acknowledged() {
    let cluster = SimCluster::start(3);
    let client_host = cluster.client_host(1);
    let bootstrap = cluster.addrs.clone();

    let b = bootstrap.clone();
    let (mut acked, leader) = client_host
        .spawn(async move {
            let client = Client::new(ClientConfig::new(b)).expect("client");
            client.admin().create_topic(TOPIC, 2, 3, 0, 0).await.expect("create topic");
            let (acked, failed) = produce(&client, TOPIC, 0..300).await;
            assert_eq!(failed, 0);
            let leader = client.admin().describe_topic(TOPIC).await.expect("describe").partitions[0].leader;
            (acked, leader.expect("partition 0 has a leader"))
        })
        .await
        .expect("phase 1");

    cluster.kill(leader as usize - 1);
    let b = bootstrap.clone();
    let (more, failed) = client_host
        .spawn(async move { produce(&Client::new(ClientConfig::new(b)).expect("client"), TOPIC, 300..600).await })
        .await
        .expect("phase 2");
    assert_eq!(failed, 0, "producing carries on after the leader dies");
    acked.extend(more);

    cluster.restart(leader as usize - 1);
    madsim::time::sleep(Duration::from_secs(3)).await;
    let seen = client_host
        .spawn(async move {
            read_all(&Client::new(ClientConfig::new(bootstrap)).expect("client"), TOPIC, 2, Duration::from_secs(60))
                .await
        })
        .await
        .expect("read back");
    assert_eq!(acked.len(), 600);
    assert_no_acked_loss(&acked, &seen);
}
