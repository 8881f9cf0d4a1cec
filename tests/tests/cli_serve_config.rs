//! `tidemark serve` configuration as an operator meets it: every node setting can come
//! from a file, a `TIDEMARK_*` variable or a flag (in that order of precedence), a bad
//! value is an error that names the setting, and `--print-config` shows the result. A
//! wrong `--bootstrap` fails fast.

use std::process::Command;

use tidemark_tests::process::tidemark_binary;

fn serve(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(tidemark_binary());
    cmd.arg("serve").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run tidemark serve");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn file_then_environment_then_flags_and_print_config_shows_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(&file, "id = 2\nheartbeat_ms = 80\nelection_timeout_min_ms = 400\nmax_batch_bytes = 2097152\n")
        .unwrap();
    let (ok, out, err) = serve(
        &["--config", file.to_str().unwrap(), "--election-timeout-max-ms", "900", "--print-config"],
        &[("TIDEMARK_HEARTBEAT_MS", "50"), ("TIDEMARK_ELECTION_TIMEOUT_MAX_MS", "2000")],
    );
    assert!(ok, "{err}");
    for line in ["id = 2", "heartbeat_ms = 50", "election_timeout_min_ms = 400", "election_timeout_max_ms = 900"] {
        assert!(out.lines().any(|l| l == line), "missing `{line}` in:\n{out}");
    }
    assert!(out.contains("max_batch_bytes = 2097152"), "{out}");
}

#[test]
fn a_bad_value_is_an_error_that_names_the_setting() {
    let (ok, _, err) = serve(&["--id", "1", "--print-config"], &[("TIDEMARK_HEARTBEAT_MS", "abc")]);
    assert!(!ok, "a heartbeat of `abc` must not start a node");
    assert!(err.contains("heartbeat-ms") && err.contains("abc"), "{err}");
    let (ok, _, err) = serve(&["--id", "1", "--max-record-bytes", "0", "--print-config"], &[]);
    assert!(!ok);
    assert!(err.contains("max_record_bytes"), "{err}");
}

/// A mistyped `--bootstrap` must fail fast with a hint, not after a long wait (it took
/// 10.7 s before the default `bootstrap_timeout` became 2 s; the bound here is generous).
#[test]
fn a_wrong_bootstrap_fails_fast_and_says_what_to_check() {
    let started = std::time::Instant::now();
    let out = Command::new(tidemark_binary())
        .args(["topic", "list", "--bootstrap", "127.0.0.1:1"])
        .output()
        .expect("run tidemark topic list");
    let elapsed = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--bootstrap"), "{err}");
    assert!(elapsed < std::time::Duration::from_secs(6), "took {elapsed:?}");
}

/// `--log-format json`: every log line a node writes is one JSON object with a level, a
/// message and a timestamp, for log collectors.
#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_, addrs, _) = tidemark_tests::local_addresses(1);
    let mut child = Command::new(tidemark_binary())
        .args(["--log-format", "json", "serve", "--id", "1", "--listen", &addrs[0], "--data-dir"])
        .arg(dir.path().join("data"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start a node");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let _ = child.kill();
    let out = child.wait_with_output().expect("its output");
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with('{')).collect();
    assert!(lines.len() >= 2, "the node logged: {text}");
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
    assert!(text.contains("running OPEN"), "an open node says so: {text}");
}
