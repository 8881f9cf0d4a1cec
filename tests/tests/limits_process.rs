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
