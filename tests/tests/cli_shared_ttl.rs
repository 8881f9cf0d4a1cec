//! Shared-group TTL through the `tidemark` binary against an in-process cluster: a topic's
//! `--record-ttl-ms` dead-letters (the default) or drops (`--expired drop`) records not
//! delivered in time, a record's `tidemark-ttl-ms` header expires only that record, and
//! `group describe` counts what expired.

use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

use ::tidemark_client::{
    Client, ClientConfig, ConsumerConfig, ConsumerRecord, ProducerConfig, ProducerRecord, StartPosition, DLQ_ATTEMPTS,
    DLQ_REASON,
};
use tidemark_simulation::workload::produce;
use tidemark_tests::process::tidemark_binary;
use tidemark_tests::InProcessCluster;

/// Runs `tidemark ARGS --bootstrap ...` off the runtime's worker threads.
async fn tidemark(bootstrap: &str, args: &[&str]) -> Output {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(["--bootstrap".to_string(), bootstrap.to_string()]);
    tokio::task::spawn_blocking(move || std::process::Command::new(tidemark_binary()).args(&all).output())
        .await
        .expect("join")
        .expect("run tidemark")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "tidemark failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).expect("json")
}

/// The values of the JSON record lines `consume --format json` printed.
fn values(stdout: &str) -> BTreeSet<String> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            v["value"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

async fn read_all(client: &Client, topic: &str, want: usize) -> Vec<ConsumerRecord> {
    let mut c = client.consumer(topic, None, StartPosition::Earliest, ConsumerConfig::default()).await.unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while out.len() < want && tokio::time::Instant::now() < deadline {
        out.extend(c.poll(Duration::from_millis(300)).await.unwrap());
    }
    out
}

fn header(r: &ConsumerRecord, key: &str) -> Option<String> {
    r.headers.iter().find(|h| h.key == key).map(|h| String::from_utf8_lossy(&h.value).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_ttl_dead_letters_or_drops_records_not_delivered_in_time() {
    let c = InProcessCluster::start(3).await.unwrap();
    let b = c.bootstrap();
    let client = Client::new(ClientConfig::new(c.addrs.clone())).unwrap();
    let create = ["topic", "create", "ttl", "--partitions", "2", "--replication-factor", "3", "--record-ttl-ms", "800"];
    ok(&tidemark(&b, &create).await);
    let d = json(&tidemark(&b, &["topic", "describe", "ttl", "--format", "json"]).await);
    assert_eq!(d["record_ttl_ms"], 800, "topic describe shows the record TTL: {d}");
    let (acked, _) = produce(&client, "ttl", 0..10).await;
    assert_eq!(acked.len(), 10);
    ok(&tidemark(&b, &["group", "create", "late", "--topic", "ttl", "--mode", "shared"]).await);
    let drop = ["group", "create", "gone", "--topic", "ttl", "--mode", "shared", "--expired", "drop"];
    ok(&tidemark(&b, &drop).await);
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // Nothing is delivered past the TTL, to either group.
    for g in ["late", "gone"] {
        let consume = ["consume", "ttl", "--group", g, "--shared", "--format", "json", "--timeout-ms", "2000"];
        assert!(values(&ok(&tidemark(&b, &consume).await)).is_empty(), "group {g} got expired records");
    }
    // The default is dead-letter: every record is in ttl.late.dlq, reason expired, 0 attempts.
    let letters = read_all(&client, "ttl.late.dlq", 10).await;
    let dead: BTreeSet<&[u8]> = letters.iter().map(|r| &r.value[..]).collect();
    assert_eq!(dead.len(), 10, "each expired record dead-lettered once: {letters:?}");
    for r in &letters {
        assert_eq!(header(r, DLQ_REASON).as_deref(), Some("expired"));
        assert_eq!(header(r, DLQ_ATTEMPTS).as_deref(), Some("0"));
    }
    let late = json(&tidemark(&b, &["group", "describe", "late", "--format", "json"]).await);
    let sum = |g: &serde_json::Value, k: &str| {
        g["partitions"].as_array().unwrap().iter().map(|p| p[k].as_u64().unwrap()).sum::<u64>()
    };
    assert_eq!((sum(&late, "expired"), sum(&late, "dead_lettered"), sum(&late, "lag")), (10, 10, 0), "{late}");
    // --expired drop: counted, settled, nothing written anywhere.
    let gone = json(&tidemark(&b, &["group", "describe", "gone", "--format", "json"]).await);
    assert_eq!((sum(&gone, "expired"), sum(&gone, "dead_lettered"), sum(&gone, "lag")), (10, 0, 0), "{gone}");
    assert!(client.admin().describe_topic("ttl.gone.dlq").await.is_err(), "a dropping group writes no dead letters");

    let bad =
        tidemark(&b, &["group", "create", "x", "--topic", "ttl", "--mode", "shared", "--max-in-flight", "0"]).await;
    assert!(String::from_utf8_lossy(&bad.stderr).contains("max in-flight"), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_header_expires_only_its_own_record() {
    let c = InProcessCluster::start(3).await.unwrap();
    let b = c.bootstrap();
    let client = Client::new(ClientConfig::new(c.addrs.clone())).unwrap();
    client.admin().create_topic("hdr", 1, 3, 0, 0).await.unwrap();
    let producer = client.producer(ProducerConfig::default()).unwrap();
    for i in 0..6 {
        let r = ProducerRecord::new(format!("v{i}"));
        let r = if i % 2 == 0 { r.ttl(Duration::from_millis(300)) } else { r };
        producer.send("hdr", r).await.unwrap();
    }
    producer.close().await;
    ok(&tidemark(&b, &["group", "create", "h", "--topic", "hdr", "--mode", "shared", "--expired", "drop"]).await);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let consume = ["consume", "hdr", "--group", "h", "--shared", "--format", "json", "--timeout-ms", "2000"];
    let got = values(&ok(&tidemark(&b, &consume).await));
    assert_eq!(got, ["v1", "v3", "v5"].map(String::from).into(), "records without the header are delivered");
    let d = json(&tidemark(&b, &["group", "describe", "h", "--format", "json"]).await);
    assert_eq!(d["partitions"][0]["expired"], 3, "{d}");
}
