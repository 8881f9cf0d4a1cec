//! The internal transport is closed to clients, on three real `tidemark serve` processes:
//! the client listener does not serve it at all, and the cluster listener refuses, with
//! `PERMISSION_DENIED`, a vote, an append or a snapshot that does not carry the cluster's
//! id or that comes from a node that is not a member, leaving the replicas untouched.
//! `cluster status` shows where each node serves clients and where it serves the others.

use std::time::Duration;

use openraft::raft::VoteRequest;
use tidemark_client::{Client, ClientConfig, ProducerConfig, ProducerRecord};
use tidemark_proto::v1::raft_transport_client::RaftTransportClient;
use tidemark_proto::v1::{HelloRequest, RaftRequest, RaftRpc};
use tidemark_raft::types::Vote;
use tidemark_raft::TypeConfig;
use tidemark_tests::process::ProcessCluster;
use tonic::transport::Channel;

const TOPIC: &str = "guarded";
const RECORDS: u64 = 50;

fn transport(addr: &str) -> RaftTransportClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("uri").connect_lazy();
    RaftTransportClient::new(channel)
}

/// A vote with a term far ahead of the cluster's: accepted, it would depose every leader.
fn forged_vote(cluster_id: &str, from: u64, group: u64) -> RaftRequest {
    let vote = VoteRequest::<TypeConfig>::new(Vote::new(1_000_000, from), None);
    RaftRequest {
        group,
        rpc: RaftRpc::Vote as i32,
        payload: bincode::serialize(&vote).expect("encode").into(),
        cluster_id: cluster_id.into(),
        from,
    }
}

async fn read_all(client: &Client) -> u64 {
    let d = client.admin().describe_topic(TOPIC).await.expect("describe");
    d.partitions.iter().map(|p| p.log_end_offset - p.log_start_offset).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_members_of_the_cluster_reach_its_replicas() {
    let cluster = ProcessCluster::start_with(3, &["--leader-balance", "false"]).expect("start three processes");
    let client = Client::new(ClientConfig::new(cluster.addrs.clone())).expect("client");
    client.admin().create_topic(TOPIC, 3, 3, 0, 0).await.expect("create topic");
    let producer = client.producer(ProducerConfig::default()).expect("producer");
    for i in 0..RECORDS {
        producer.send(TOPIC, ProducerRecord::new(format!("r{i}")).key(format!("k{i}"))).await.expect("send");
    }
    let before = client.admin().describe_topic(TOPIC).await.expect("describe");
    let status = client.admin().cluster_status().await.expect("status");
    for (i, n) in status.nodes.iter().enumerate() {
        assert_eq!(n.address, cluster.addrs[i], "node {} publishes its client address", n.id);
        assert_eq!(n.cluster_address, cluster.cluster_addrs[i], "and shows its cluster address");
    }

    // The client listener does not serve the internal transport at all.
    let refused = transport(&cluster.addrs[0]).call(forged_vote("", 2, 0)).await.expect_err("client port");
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused:?}");

    // The cluster listener names its cluster to anyone, but takes requests only for it.
    let hello = transport(&cluster.cluster_addrs[0]).hello(HelloRequest::default()).await.expect("hello");
    let id = hello.into_inner().cluster_id;
    assert_eq!(id.len(), 32, "a drawn cluster id: {id:?}");
    let mut groups: Vec<u64> = vec![0];
    groups.extend((0..3).map(|p| tidemark_types::partition_group(0, p)));
    for addr in &cluster.cluster_addrs {
        for &group in &groups {
            let wrong = transport(addr).call(forged_vote("another-cluster", 2, group)).await.expect_err("wrong id");
            assert_eq!(wrong.code(), tonic::Code::PermissionDenied, "{wrong:?}");
            assert!(wrong.message().contains("another-cluster"), "says why: {}", wrong.message());
            let stranger = transport(addr).call(forged_vote(&id, 9, group)).await.expect_err("not a member");
            assert_eq!(stranger.code(), tonic::Code::PermissionDenied, "{stranger:?}");
            assert!(stranger.message().contains("node 9 is not a member"), "{}", stranger.message());
            let mut snapshot = forged_vote("", 2, group);
            snapshot.rpc = RaftRpc::Snapshot as i32;
            let refused = transport(addr).call(snapshot).await.expect_err("no cluster id");
            assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
        }
        // An append stream is refused on its first message.
        let mut append = forged_vote("another-cluster", 2, groups[1]);
        append.rpc = RaftRpc::Append as i32;
        let stream = transport(addr).append_stream(futures::stream::iter([append])).await;
        let refused = stream.expect_err("append stream from another cluster");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    }

    // Nothing moved: the same leaders (a vote with that term would have deposed them all)
    // and every record still there.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = client.admin().describe_topic(TOPIC).await.expect("describe");
    let leaders = |d: &tidemark_client::TopicDescription| d.partitions.iter().map(|p| p.leader).collect::<Vec<_>>();
    assert_eq!(leaders(&after), leaders(&before), "no leader was deposed");
    assert_eq!(read_all(&client).await, RECORDS, "every record is still there");
    let status_after = client.admin().cluster_status().await.expect("status");
    assert_eq!(status_after.metadata_leader, status.metadata_leader, "the metadata leader stayed");
}
