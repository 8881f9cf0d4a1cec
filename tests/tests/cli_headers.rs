//! Record headers through the `tidemark` binary: `produce --header` sets them on every
//! record, `consume` shows them in JSON and, with `--print-headers`, in text (so, for
//! example, the reason a dead-letter record carries can be read from the command line).

use std::io::Write;
use std::process::{Command, Stdio};

use ::tidemark_client::{Client, ClientConfig};
use tidemark_tests::process::tidemark_binary;
use tidemark_tests::InProcessCluster;

fn run(bootstrap: &str, args: &[&str], stdin: &[u8]) -> (bool, String, String) {
    let mut child = Command::new(tidemark_binary())
        .args(args)
        .args(["--bootstrap", bootstrap])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tidemark");
    child.stdin.take().expect("stdin").write_all(stdin).expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_sets_headers_and_consume_shows_them() {
    let c = InProcessCluster::start(1).await.unwrap();
    let b = c.bootstrap();
    let client = Client::new(ClientConfig::new(c.addrs.clone())).unwrap();
    client.admin().create_topic("hdr", 1, 1, 0, 0).await.unwrap();
    let b2 = b.clone();
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        run(&b2, &["produce", "hdr", "--header", "source=import", "--header", "note=a=b"], b"one\ntwo\n")
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let (ok, _, err) = run(&b, &["produce", "hdr", "--header", "novalue"], b"");
    assert!(!ok && err.contains("KEY=VALUE"), "{err}");
    let (ok, _, _) = tokio::task::spawn_blocking({
        let b = b.clone();
        move || run(&b, &["produce", "hdr"], b"three\n")
    })
    .await
    .unwrap();
    assert!(ok);

    let consume = |extra: &'static [&'static str]| {
        let b = b.clone();
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["consume", "hdr", "--from-beginning", "--max-messages", "3"];
            args.extend_from_slice(extra);
            run(&b, &args, b"")
        })
    };
    let (ok, out, err) = consume(&["--print-headers"]).await.unwrap();
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["source=import,note=a=b\tone", "source=import,note=a=b\ttwo", "NO_HEADERS\tthree"]);
    let (ok, out, err) = consume(&["--format", "json"]).await.unwrap();
    assert!(ok, "{err}");
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(
        first["headers"],
        serde_json::json!([{"key": "source", "value": "import"}, {"key": "note", "value": "a=b"}])
    );
    let last: serde_json::Value = serde_json::from_str(out.lines().nth(2).unwrap()).unwrap();
    assert!(last.get("headers").is_none(), "no headers, no field: {last}");
}
