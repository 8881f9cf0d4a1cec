//! Cluster-wide limits on a real `tidemark serve` process: a topic that would take the
//! cluster past `--max-partitions` or `--max-topics` is refused at once with a message
//! naming the limit, and the topics already there are untouched.

use tidemark_client::{Client, ClientConfig};
use tidemark_tests::process::ProcessCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_past_the_cluster_limits_are_refused_clearly() {
    let cluster = ProcessCluster::start_with(1, &["--max-partitions", "4", "--max-topics", "2"]).expect("start a node");
    let admin = Client::new(ClientConfig::new(cluster.addrs.clone())).expect("client").admin();
    admin.create_topic("a", 3, 1, 0, 0).await.expect("3 of 4 partitions");
    let e = admin.create_topic("b", 2, 1, 0, 0).await.expect_err("5 of 4 partitions");
    assert!(e.to_string().contains("max_partitions") && e.to_string().contains("3 of at most 4"), "{e}");
    assert!(!e.is_retriable(), "a limit is not something to retry: {e}");
    admin.create_topic("b", 1, 1, 0, 0).await.expect("4 of 4 partitions");
    let e = admin.create_topic("c", 1, 1, 0, 0).await.expect_err("a third topic");
    assert!(e.to_string().contains("max_topics"), "{e}");
    let mut names = admin.list_topics().await.expect("list");
    names.sort();
    assert_eq!(names, ["a", "b"], "the refused topics were not created");
}

/// `--max-connections`: a connection over the limit is closed at once (the client sees
/// the node as unreachable and says so), and the node serves again once some close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_closed_until_some_close() {
    let cluster = ProcessCluster::start_with(1, &["--max-connections", "2"]).expect("start a node");
    let config = || ClientConfig {
        bootstrap_timeout: std::time::Duration::from_secs(30),
        ..ClientConfig::new(cluster.addrs.clone())
    };
    let first = Client::new(config()).expect("client").admin();
    first.create_topic("t", 1, 1, 0, 0).await.expect("one connection is within the limit");
    let mut held = Vec::new();
    held.push(tokio::net::TcpStream::connect(&cluster.addrs[0]).await.expect("second connection"));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let quick = ClientConfig {
        bootstrap_timeout: std::time::Duration::from_secs(1),
        operation_timeout: std::time::Duration::from_secs(3),
        ..config()
    };
    let e = Client::new(quick).expect("client").admin().list_topics().await.expect_err("a third connection");
    assert!(e.is_retriable(), "a full node is worth trying again later: {e}");
    assert_eq!(first.list_topics().await.expect("open connections keep working"), ["t"]);
    held.clear();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let later = Client::new(config()).expect("client").admin();
    assert_eq!(later.list_topics().await.expect("served once a slot is free"), ["t"]);
    assert!(cluster.log(0).contains("too many connections"), "the node logs the refusal");
}
