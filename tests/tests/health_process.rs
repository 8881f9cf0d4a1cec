//! The HTTP endpoints of a real `tidemark serve` process: /ready answers 200 once the
//! node serves, /health 200 while it runs, /metrics the Prometheus metrics (requests,
//! records, bytes, and each replica's state), anything else 404; a bad address is refused.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidemark_tests::free_ports;
use tidemark_tests::process::tidemark_binary;

/// `GET path` over plain HTTP/1.1: (status code, body).
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()))
}

#[test]
fn health_and_ready_answer_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(2);
    let (listen, probes) = (format!("127.0.0.1:{}", ports[0]), format!("127.0.0.1:{}", ports[1]));
    let mut node = Command::new(tidemark_binary())
        .args(["serve", "--id", "1", "--listen", &listen, "--metrics-listen", &probes])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a node");
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        match get(&probes, "/ready") {
            Some((200, body)) => break body,
            other => assert!(Instant::now() < deadline, "never ready: last answer {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(ready, "ready\n");
    assert_eq!(get(&probes, "/health"), Some((200, "ok\n".to_string())));
    assert_eq!(get(&probes, "/nothing").map(|(s, _)| s), Some(404));
    let _ = node.kill();
    let _ = node.wait();

    let out = Command::new(tidemark_binary())
        .args(["serve", "--id", "1", "--listen", &listen, "--metrics-listen", "nowhere", "--print-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("metrics_listen"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_was_served_and_show_each_replica() {
    use tidemark_client::{Client, ClientConfig, ConsumerConfig, ProducerConfig, ProducerRecord, StartPosition};
    let metrics = format!("127.0.0.1:{}", free_ports(1)[0]);
    let cluster = tidemark_tests::process::ProcessCluster::start_with(1, &["--metrics-listen", &metrics]).unwrap();
    let client = Client::new(ClientConfig::new(cluster.addrs.clone())).expect("client");
    client.admin().create_topic("m", 1, 1, 0, 0).await.expect("create");
    let producer = client.producer(ProducerConfig::default()).expect("producer");
    for i in 0..3 {
        producer.send("m", ProducerRecord::new(format!("v{i}"))).await.expect("send");
    }
    let mut consumer =
        client.consumer("m", None, StartPosition::Earliest, ConsumerConfig::default()).await.expect("consumer");
    let mut read = 0;
    while read < 3 {
        read += consumer.poll(Duration::from_millis(500)).await.expect("poll").len();
    }
    let (status, body) = tokio::task::spawn_blocking(move || get(&metrics, "/metrics")).await.unwrap().unwrap();
    assert_eq!(status, 200);
    for line in [
        "tidemark_records_total{api=\"produce\"} 3",
        "tidemark_node_ready 1",
        "tidemark_metadata_leader 1",
        "tidemark_partition_leader{topic=\"m\",partition=\"0\"} 1",
        "tidemark_partition_log_end_offset{topic=\"m\",partition=\"0\"} 3",
    ] {
        assert!(body.lines().any(|l| l == line), "{line:?} is not in:\n{body}");
    }
    let produced = body.lines().find(|l| l.starts_with("tidemark_requests_total{api=\"produce\",outcome=\"ok\"}"));
    assert!(produced.is_some(), "produce requests are counted:\n{body}");
    let read_records = |api: &str| {
        let prefix = format!("tidemark_records_total{{api=\"{api}\"}} ");
        body.lines().find_map(|l| l.strip_prefix(&prefix)?.parse::<u64>().ok()).unwrap_or(0)
    };
    assert_eq!(read_records("fetch") + read_records("subscribe"), 3, "every record read is counted:\n{body}");
}
