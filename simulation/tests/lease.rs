//! Reads on a leader that lost its majority: once it has not heard from a majority for a
//! lease (the shortest election timeout), it must stop serving reads, because the
//! majority may already have elected another leader and moved on. Clients can still
//! reach it here; only its links to the other nodes are cut.
#![cfg(madsim)]

use std::time::Duration;

use madsim::net::NetSim;
use openraft::async_runtime::watch::WatchReceiver;
use tidemark_client::{Client, ClientConfig};
use tidemark_simulation::harness::SimCluster;
use tidemark_simulation::workload::produce;

const TOPIC: &str = "fenced";

#[madsim::test]
async fn a_leader_cut_off_from_its_majority_stops_serving_reads() {
    let cluster = SimCluster::start_with(3, |_| {});
    let host = cluster.client_host(1);
    let b = cluster.addrs.clone();
    let leader = host
        .spawn(async move {
            let client = Client::new(ClientConfig::new(b)).expect("client");
            let d = client.admin().create_topic(TOPIC, 1, 3, 0, 0).await.expect("create topic");
            let (acked, failed) = produce(&client, TOPIC, 0..50).await;
            assert_eq!((acked.len(), failed), (50, 0));
            d.partitions[0].leader.expect("a leader")
        })
        .await
        .expect("create and produce");
    let l = leader as usize - 1;
    let old = cluster.broker(l).expect("the leader runs");
    assert!(old.read_replica(TOPIC, 0).await.is_ok(), "the leader serves reads");
    // Reads keep going through on the lease while the majority acknowledges it.
    madsim::time::sleep(Duration::from_secs(2)).await;
    assert!(old.read_replica(TOPIC, 0).await.is_ok(), "still the leader, still serving");

    let net = NetSim::current();
    for o in (0..3).filter(|&o| o != l) {
        net.clog_link(cluster.sim_id(l), cluster.sim_id(o));
        net.clog_link(cluster.sim_id(o), cluster.sim_id(l));
    }
    madsim::time::sleep(Duration::from_secs(3)).await;
    let others: Vec<_> = (0..3).filter(|&o| o != l).map(|o| cluster.broker(o).expect("running")).collect();
    let group = others[0].topic(TOPIC).expect("topic").group(0);
    let new_leader = others.iter().find_map(|b| {
        let m = b.local_replica(group)?.raft.metrics().borrow_watched().clone();
        (m.state == openraft::ServerState::Leader).then_some(m.id)
    });
    assert!(new_leader.is_some(), "the majority elected a new leader");
    let err = old.read_replica(TOPIC, 0).await.err().expect("the cut-off leader must not serve reads");
    assert!(err.to_string().contains(&format!("{TOPIC}/0")), "{err}");
}
