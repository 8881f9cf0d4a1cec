//! The probe endpoints of a real `tidemark serve` process: /ready answers 200 once the
//! node serves, /health 200 while it runs, anything else 404; a bad address is refused.

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
    assert_eq!(get(&probes, "/metrics").map(|(s, _)| s), Some(404), "metrics are not served yet");
    let _ = node.kill();
    let _ = node.wait();

    let out = Command::new(tidemark_binary())
        .args(["serve", "--id", "1", "--listen", &listen, "--metrics-listen", "nowhere", "--print-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("metrics_listen"));
}
