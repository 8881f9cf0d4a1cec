//! TLS on three real `tidemark serve` processes, with certificates from `DevTls` (what
//! `tidemark dev --tls` makes): clients need a certificate from the cluster CA
//! (`--tls-client-auth required`), every mismatch fails at once with an error that says
//! what to change, the cluster listener admits only node certificates speaking for their
//! own node, and certificates rotate without a restart.

use std::path::Path;
use std::time::Duration;

use openraft::raft::VoteRequest;
use tidemark_client::{Client, ClientConfig, ClientError, ClientTls, ProducerConfig, ProducerRecord};
use tidemark_proto::v1::raft_transport_client::RaftTransportClient;
use tidemark_proto::v1::{HelloRequest, RaftRequest, RaftRpc};
use tidemark_raft::types::Vote;
use tidemark_raft::TypeConfig;
use tidemark_server::dev_certs::DevTls;
use tidemark_tests::process::ProcessCluster;

const TOPIC: &str = "secure";

/// Trusts the CA(s) in `ca`; presents `identity`'s client certificate, if given.
fn tls(ca: &Path, identity: Option<&DevTls>) -> ClientTls {
    let cert = identity.map(DevTls::client_cert);
    let key = identity.map(DevTls::client_key);
    ClientTls::from_files(Some(ca), cert.as_deref(), key.as_deref()).expect("read certificates")
}

fn client(cluster: &ProcessCluster, tls: Option<ClientTls>) -> Client {
    // The nodes may still be starting on a busy machine.
    let bootstrap_timeout = Duration::from_secs(30);
    Client::new(ClientConfig { tls, bootstrap_timeout, ..ClientConfig::new(cluster.addrs.clone()) }).expect("client")
}

async fn produce(client: &Client, n: u64) {
    let producer = client.producer(ProducerConfig::default()).expect("producer");
    for i in 0..n {
        producer.send(TOPIC, ProducerRecord::new(format!("r{i}")).key(format!("k{i}"))).await.expect("send");
    }
}

async fn stored(client: &Client) -> u64 {
    let d = client.admin().describe_topic(TOPIC).await.expect("describe");
    d.partitions.iter().map(|p| p.log_end_offset - p.log_start_offset).sum()
}

/// The error a client with these settings gets, which must come at once (no retries
/// until a timeout) and be a TLS error saying `hint`.
async fn refused(cluster: &ProcessCluster, tls: Option<ClientTls>, hint: &str) {
    let started = std::time::Instant::now();
    let err = client(cluster, tls).admin().list_topics().await.expect_err("refused");
    assert!(matches!(err, ClientError::Tls { .. }), "a TLS error: {err}");
    assert!(err.to_string().contains(hint), "says what to change ({hint}): {err}");
    assert!(started.elapsed() < Duration::from_secs(10), "not retried until a timeout: {err}");
}

/// A vote with a term far ahead of the cluster's, sent over mutual TLS as `identity`.
async fn forged_vote(addr: &str, identity: ClientTls, from: u64, cluster_id: &str) -> tonic::Status {
    let endpoint = ClientTls::endpoint(Some(&identity), addr).expect("endpoint");
    let mut transport = RaftTransportClient::new(endpoint.connect_lazy());
    let vote = VoteRequest::<TypeConfig>::new(Vote::new(1_000_000, from), None);
    let payload = bincode::serialize(&vote).expect("encode").into();
    let request = RaftRequest { group: 0, rpc: RaftRpc::Vote as i32, payload, cluster_id: cluster_id.into(), from };
    transport.call(request).await.expect_err("forged vote")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_what_the_cluster_ca_signed() {
    let certs = tempfile::tempdir().expect("tempdir");
    let ours = DevTls::ensure(&certs.path().join("ours"), 3).expect("certificates");
    let theirs = DevTls::ensure(&certs.path().join("theirs"), 3).expect("other certificates");
    let args = ["--tls-client-auth", "required", "--leader-balance", "false"];
    let cluster = ProcessCluster::start_tls(3, &args, Some(ours.dir.clone())).expect("start three processes");
    let good = client(&cluster, Some(tls(&ours.ca(), Some(&ours))));
    good.admin().create_topic(TOPIC, 3, 3, 0, 0).await.expect("create topic over mutual TLS");
    produce(&good, 30).await;
    assert_eq!(stored(&good).await, 30, "every record acknowledged over TLS is stored");

    refused(&cluster, None, "--tls-ca").await;
    refused(&cluster, Some(tls(&ours.ca(), None)), "--tls-cert").await;
    refused(&cluster, Some(tls(&theirs.ca(), Some(&theirs))), "--tls-ca").await;
    // Trusting the nodes, but with a client certificate from another CA.
    refused(&cluster, Some(tls(&ours.ca(), Some(&theirs))), "--tls-cert").await;

    // The cluster listener: a client certificate from the cluster CA is not a node's, and
    // a node's certificate speaks for that node only.
    let before = good.admin().describe_topic(TOPIC).await.expect("describe");
    let node_two = ClientTls::from_files(Some(&ours.ca()), Some(&ours.node_cert(2)), Some(&ours.node_key(2))).unwrap();
    let endpoint = ClientTls::endpoint(Some(&node_two), &cluster.cluster_addrs[0]).expect("endpoint");
    let hello = RaftTransportClient::new(endpoint.connect_lazy()).hello(HelloRequest::default()).await;
    let id = hello.expect("a node's certificate may ask who the cluster is").into_inner().cluster_id;
    for addr in &cluster.cluster_addrs {
        let status = forged_vote(addr, tls(&ours.ca(), Some(&ours)), 2, &id).await;
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains("\"admin\", not a node"), "{}", status.message());
        let status = forged_vote(addr, node_two.clone(), 3, &id).await;
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains("node 2's"), "{}", status.message());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = good.admin().describe_topic(TOPIC).await.expect("describe");
    let leaders = |d: &tidemark_client::TopicDescription| d.partitions.iter().map(|p| p.leader).collect::<Vec<_>>();
    assert_eq!(leaders(&after), leaders(&before), "no leader was deposed");
    assert_eq!(stored(&good).await, 30, "every record is still there");
}

/// Waits (the nodes re-read their files every 5 s) until a fresh client with `tls` is
/// let in.
async fn admitted_within(cluster: &ProcessCluster, tls: &ClientTls, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        match client(cluster, Some(tls.clone())).admin().list_topics().await {
            Ok(_) => return,
            Err(e) if std::time::Instant::now() > deadline => panic!("still refused after {within:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_without_a_restart() {
    let certs = tempfile::tempdir().expect("tempdir");
    let old = DevTls::ensure(&certs.path().join("old"), 3).expect("certificates");
    let new = DevTls::ensure(&certs.path().join("new"), 3).expect("new certificates");
    let cluster = ProcessCluster::start_tls(3, &["--tls-client-auth", "required"], Some(old.dir.clone()))
        .expect("start three processes");
    let before = client(&cluster, Some(tls(&old.ca(), Some(&old))));
    before.admin().create_topic(TOPIC, 3, 3, 0, 0).await.expect("create topic");
    produce(&before, 10).await;

    // Step 1: every node trusts both CAs (the files the nodes read are rewritten in place).
    let bundle = [std::fs::read(old.ca()).unwrap(), std::fs::read(new.ca()).unwrap()].concat();
    let bundle_file = certs.path().join("bundle.pem");
    std::fs::write(&bundle_file, &bundle).unwrap();
    let new_client = tls(&bundle_file, Some(&new));
    refused(&cluster, Some(new_client.clone()), "--tls-cert").await;
    std::fs::write(old.ca(), &bundle).unwrap();
    admitted_within(&cluster, &new_client, Duration::from_secs(30)).await;

    // Step 2: the nodes get certificates from the new CA; a client that trusts only the
    // new CA now gets in, and the nodes still reach each other.
    let only_new = tls(&new.ca(), Some(&new));
    refused(&cluster, Some(only_new.clone()), "--tls-ca").await;
    for id in 1..=3 {
        std::fs::copy(new.node_key(id), old.node_key(id)).unwrap();
        std::fs::copy(new.node_cert(id), old.node_cert(id)).unwrap();
    }
    admitted_within(&cluster, &only_new, Duration::from_secs(30)).await;
    let after = client(&cluster, Some(only_new));
    produce(&after, 10).await;
    assert_eq!(stored(&after).await, 20, "records written before and after the rotation are all there");
    let status = after.admin().cluster_status().await.expect("status");
    assert!(status.nodes.iter().all(|n| n.alive), "every node is alive after the rotation: {status:?}");
}
