//! `tidemark bench consume` and `tidemark bench e2e` as a user runs them: real processes
//! against three real `tidemark serve` processes. Each must stop by itself and print the
//! JSON summary contract with records read and no errors.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidemark_tests::process::{tidemark_binary, ProcessCluster};

/// Runs `tidemark bench ...` and returns its JSON summary; kills it past `limit`.
fn bench(cluster: &ProcessCluster, args: &[&str], limit: Duration) -> serde_json::Value {
    let mut child = Command::new(tidemark_binary())
        .arg("bench")
        .args(args)
        .args(["--format", "json", "--bootstrap", &cluster.bootstrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tidemark bench");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("bench {args:?} did not stop within {limit:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench {args:?} failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("bench {args:?} printed no JSON ({e}): {stdout}"))
}

fn assert_contract(summary: &serde_json::Value) {
    for field in ["records_per_sec", "mb_per_sec", "p50_ms", "p99_ms", "p999_ms", "max_ms", "max_ack_gap_ms", "errors"]
    {
        assert!(summary.get(field).is_some_and(|v| v.is_number()), "missing {field}: {summary}");
    }
    assert!(summary["records"].as_u64().unwrap() > 0, "read nothing: {summary}");
    assert_eq!(summary["errors"].as_u64(), Some(0), "{summary}");
}

#[test]
fn bench_consume_and_e2e_run_against_three_processes() {
    let cluster = ProcessCluster::start(3).expect("start three processes");
    let consume = bench(
        &cluster,
        &["consume", "--topic", "smoke-c", "--prefill", "2000", "--record-size", "100", "--duration", "5"],
        Duration::from_secs(30),
    );
    assert_contract(&consume);
    assert_eq!(consume["records"].as_u64(), Some(2000), "every prefilled record read once: {consume}");
    assert_eq!(consume["stopped"], "all_read", "{consume}");

    let e2e =
        bench(&cluster, &["e2e", "--topic", "smoke-e", "--rate", "200", "--duration", "2"], Duration::from_secs(30));
    assert_contract(&e2e);
    let records = e2e["records"].as_u64().unwrap();
    assert!((300..=400).contains(&records), "about 2 s × 200/s received: {e2e}");
}
