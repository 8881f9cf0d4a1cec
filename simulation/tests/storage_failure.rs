//! A node whose fsync fails cannot know what reached its disk: its Raft groups stop, and
//! the node must stop too (with an error saying why) so that its supervisor restarts it,
//! rather than run on with dead groups. The other two carry on.
#![cfg(madsim)]

use std::time::Duration;

use tidemark_client::{Client, ClientConfig};
use tidemark_simulation::harness::SimCluster;
use tidemark_simulation::workload::produce;

const TOPIC: &str = "fsync";

#[madsim::test]
async fn a_node_whose_fsync_fails_stops_and_says_why() {
    let cluster = SimCluster::start_with(3, |_| {});
    let host = cluster.client_host(1);
    let b = cluster.addrs.clone();
    host.spawn(async move {
        let client = Client::new(ClientConfig::new(b)).expect("client");
        client.admin().create_topic(TOPIC, 1, 3, 0, 0).await.expect("create topic");
    })
    .await
    .expect("create");
    let failing = 2;
    cluster.engines[failing].set_fsync_error(true);

    let b = cluster.addrs.clone();
    let (acked, failed) = host
        .spawn(async move {
            let client = Client::new(ClientConfig::new(b)).expect("client");
            let (acked, failed) = produce(&client, TOPIC, 0..200).await;
            (acked.len(), failed)
        })
        .await
        .expect("produce");
    assert_eq!((acked, failed), (200, 0), "two healthy nodes accept every write");
    madsim::time::sleep(Duration::from_secs(2)).await;
    let broker = cluster.broker(failing).expect("the node started");
    let reason = broker.failure().expect("the node with the failing disk stops");
    assert!(reason.contains("fsync failed") && reason.contains("restarted"), "{reason}");
    for healthy in (0..3).filter(|&i| i != failing) {
        assert_eq!(cluster.broker(healthy).expect("running").failure(), None, "node {} runs on", healthy + 1);
    }
}
