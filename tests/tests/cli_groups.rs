//! The `tidemark` binary's consumer-group commands against an in-process cluster, with
//! exactly the names and flags users (and the acceptance tests) type.

use std::collections::BTreeSet;
use std::process::Output;

use ::tidemark_client::{Client, ClientConfig};
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

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure, got: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// (partition, offset) of every JSON record line.
fn records(stdout: &str) -> Vec<(u64, u64)> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            (v["partition"].as_u64().unwrap(), v["offset"].as_u64().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commands_work_as_documented() {
    let c = InProcessCluster::start(3).await.unwrap();
    let b = c.bootstrap();
    let client = Client::new(ClientConfig::new(c.addrs.clone())).unwrap();
    client.admin().create_topic("cli", 3, 3, 0, 0).await.unwrap();
    let (acked, _) = produce(&client, "cli", 0..60).await;
    let all: BTreeSet<(u64, u64)> = acked.keys().map(|(p, o)| (*p as u64, *o)).collect();

    // Two runs of one group: the second continues where the first committed.
    let consume = ["consume", "cli", "--group", "g", "--format", "json", "--timeout-ms", "1500"];
    let first = records(&ok(&tidemark(&b, &[&consume[..], &["--max-messages", "25"]].concat()).await));
    assert_eq!(first.len(), 25);
    let second = records(&ok(&tidemark(&b, &consume).await));
    assert_eq!(first.len() + second.len(), 60, "nothing redelivered, nothing skipped");
    let seen: BTreeSet<(u64, u64)> = first.iter().chain(&second).copied().collect();
    assert_eq!(seen, all);
    // Another group sees every record too (fan-out).
    let other =
        records(&ok(
            &tidemark(&b, &["consume", "cli", "--group", "h", "--format", "json", "--timeout-ms", "1500"]).await
        ));
    assert_eq!(other.len(), 60);

    let d: serde_json::Value =
        serde_json::from_str(&ok(&tidemark(&b, &["group", "describe", "g", "--format", "json"]).await)).unwrap();
    assert_eq!(d["name"], "g");
    assert_eq!(d["mode"], "partitioned");
    assert_eq!(d["members"].as_array().unwrap().len(), 0, "the CLI left the group on exit");
    let parts = d["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    assert!(parts.iter().all(|p| p["lag"] == 0 && p["committed"] == p["log_end_offset"]), "{parts:?}");
    let list = ok(&tidemark(&b, &["group", "list", "--format", "json"]).await);
    assert!(list.contains("\"name\":\"g\"") && list.contains("\"name\":\"h\""), "{list}");

    // Replay after a reset; --ack none commits nothing, so it can read them again.
    ok(&tidemark(&b, &["group", "reset-offsets", "g", "--to-earliest"]).await);
    let none = ["consume", "cli", "--group", "g", "--ack", "none", "--format", "json", "--timeout-ms", "1500"];
    assert_eq!(records(&ok(&tidemark(&b, &none).await)).len(), 60);
    assert_eq!(records(&ok(&tidemark(&b, &none).await)).len(), 60, "--ack none committed nothing");
    ok(&tidemark(&b, &["group", "reset-offsets", "g", "--to-offset", "1000000"]).await);
    assert!(records(&ok(&tidemark(&b, &consume).await)).is_empty(), "an offset past the end is clamped to it");
    // A dry run of one partition says what it would do, notes the clamping, changes nothing.
    let dry = ["group", "reset-offsets", "g", "--to-offset", "1000000", "--topic", "cli", "--partition", "0"];
    let out = tidemark(&b, &[&dry[..], &["--dry-run", "--format", "json"]].concat()).await;
    let rows: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "one partition: {rows}");
    assert_eq!((rows[0]["partition"].as_u64(), rows[0]["clamped_from"].as_u64()), (Some(0), Some(1_000_000)));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("outside the retained log") && err.contains("Dry run"), "{err}");
    ok(&tidemark(&b, &["group", "reset-offsets", "g", "--to-earliest", "--topic", "cli", "--dry-run"]).await);
    assert!(records(&ok(&tidemark(&b, &consume).await)).is_empty(), "the dry run committed nothing");
    let err = failed(&tidemark(&b, &["group", "reset-offsets", "g", "--to-earliest", "--topic", "nope"]).await);
    assert!(err.contains("does not read topic"), "{err}");

    ok(&tidemark(
        &b,
        &["group", "create", "k", "--topic", "cli", "--mode", "partitioned", "--session-timeout-ms", "6000"],
    )
    .await);
    let k: serde_json::Value =
        serde_json::from_str(&ok(&tidemark(&b, &["group", "describe", "k", "--format", "json"]).await)).unwrap();
    assert_eq!(k["session_timeout_ms"], 6000);
    // Shared groups: a queue over the same topic; a partitioned member cannot join it.
    let create =
        ["group", "create", "s", "--topic", "cli", "--mode", "shared", "--lock-ms", "5000", "--max-attempts", "3"];
    ok(&tidemark(&b, &create).await);
    let shared = ["consume", "cli", "--group", "s", "--shared", "--format", "json", "--timeout-ms", "1500"];
    let part = records(&ok(&tidemark(&b, &[&shared[..], &["--max-messages", "20"]].concat()).await));
    assert_eq!(part.len(), 20);
    let rest = records(&ok(&tidemark(&b, &shared).await));
    let got: BTreeSet<(u64, u64)> = part.iter().chain(&rest).copied().collect();
    assert_eq!((part.len() + rest.len(), got), (60, all.clone()), "each record acknowledged once");
    let err = failed(&tidemark(&b, &["consume", "cli", "--group", "s", "--timeout-ms", "100"]).await);
    assert!(err.contains("consume with --shared"), "{err}");
    let err = failed(&tidemark(&b, &["consume", "cli", "--group", "k", "--shared", "--timeout-ms", "100"]).await);
    assert!(err.contains("consume without --shared"), "{err}");
    let err = failed(&tidemark(&b, &["group", "create", "x", "--topic", "nope"]).await);
    assert!(err.contains("does not exist"), "{err}");
    ok(&tidemark(&b, &["group", "delete", "g"]).await);
    let err = failed(&tidemark(&b, &["group", "describe", "g"]).await);
    assert!(err.contains("does not exist"), "{err}");
    // cluster status counts the partitions and who leads them.
    let status: serde_json::Value =
        serde_json::from_str(&ok(&tidemark(&b, &["cluster", "status", "--format", "json"]).await)).unwrap();
    let total = status["partitions"]["total"].as_u64().unwrap();
    let led: u64 = status["nodes"].as_array().unwrap().iter().map(|n| n["leaders"].as_u64().unwrap()).sum();
    assert!(total >= 3 && led == total, "every partition has a leader: {status}");
    assert_eq!(status["partitions"]["leaderless"], 0, "{status}");
    // Scripts get JSON from create (the new group, as describe shows it) and delete.
    let created: serde_json::Value =
        serde_json::from_str(&ok(&tidemark(&b, &["group", "create", "j", "--topic", "cli", "--format", "json"]).await))
            .unwrap();
    assert_eq!((created["name"].as_str(), created["mode"].as_str()), (Some("j"), Some("partitioned")), "{created}");
    let deleted = ok(&tidemark(&b, &["group", "delete", "j", "--format", "json"]).await);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&deleted).unwrap(), serde_json::json!({"deleted": "j"}));
}

/// A shared group without a configured dead-letter topic sends records past
/// `--max-attempts` to `<topic>.<group>.dlq`, with headers that say why and from where.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_past_max_attempts_go_to_the_default_dead_letter_topic() {
    use ::tidemark_client::{ConsumerConfig, StartPosition, DLQ_ATTEMPTS, DLQ_OFFSET, DLQ_REASON, DLQ_TOPIC};
    use std::time::Duration;

    let c = InProcessCluster::start(3).await.unwrap();
    let b = c.bootstrap();
    let client = Client::new(ClientConfig::new(c.addrs.clone())).unwrap();
    client.admin().create_topic("dl", 1, 3, 0, 0).await.unwrap();
    let (acked, _) = produce(&client, "dl", 0..5).await;
    assert_eq!(acked.len(), 5);
    ok(&tidemark(&b, &["group", "create", "d", "--topic", "dl", "--mode", "shared", "--max-attempts", "1"]).await);
    // Delivered once and not acknowledged: the one allowed attempt is used up.
    let none =
        ["consume", "dl", "--group", "d", "--shared", "--ack", "none", "--format", "json", "--timeout-ms", "1500"];
    let first = ok(&tidemark(&b, &none).await);
    assert_eq!(records(&first).len(), 5);
    for line in first.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["delivery_count"], 1, "shared JSON lines carry the delivery count: {line}");
    }
    // The next member gets them as dead letters: written to the DLQ, not handed out.
    let again = ["consume", "dl", "--group", "d", "--shared", "--format", "json", "--timeout-ms", "2000"];
    assert_eq!(records(&ok(&tidemark(&b, &again).await)).len(), 0, "nothing is delivered a second time");

    let mut dlq = client.consumer("dl.d.dlq", None, StartPosition::Earliest, ConsumerConfig::default()).await.unwrap();
    let mut letters = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while letters.len() < 5 && tokio::time::Instant::now() < deadline {
        letters.extend(dlq.poll(Duration::from_millis(300)).await.unwrap());
    }
    assert_eq!(letters.len(), 5, "every record reached dl.d.dlq: {letters:?}");
    let header = |r: &::tidemark_client::ConsumerRecord, key: &str| {
        r.headers.iter().find(|h| h.key == key).map(|h| String::from_utf8_lossy(&h.value).into_owned())
    };
    let offsets: BTreeSet<String> = letters.iter().filter_map(|r| header(r, DLQ_OFFSET)).collect();
    assert_eq!(offsets, (0..5).map(|o| o.to_string()).collect(), "each original offset once");
    for r in &letters {
        assert_eq!(header(r, DLQ_REASON).as_deref(), Some("max-attempts"));
        assert_eq!(header(r, DLQ_ATTEMPTS).as_deref(), Some("1"));
        assert_eq!(header(r, DLQ_TOPIC).as_deref(), Some("dl"));
    }
}
