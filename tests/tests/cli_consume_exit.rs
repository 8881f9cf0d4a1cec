//! How `tidemark consume` ends when the user ends it: Ctrl-C prints the summary and exits
//! 0, and a closed pipe (`consume --group G | head`) leaves the group at once instead of
//! leaving a ghost member that holds its partitions until its session expires.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ::tidemark_client::{Client, ClientConfig};
use tidemark_simulation::workload::produce;
use tidemark_tests::process::tidemark_binary;
use tidemark_tests::InProcessCluster;

fn spawn(bootstrap: &str, args: &[&str]) -> Child {
    Command::new(tidemark_binary())
        .args(args)
        .args(["--bootstrap", bootstrap])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tidemark")
}

/// Waits (off the runtime) for the child to exit; its status and stderr.
async fn finish(mut child: Child, within: Duration) -> (std::process::ExitStatus, String) {
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                let mut err = String::new();
                std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).ok();
                return (status, err);
            }
            assert!(Instant::now() < deadline, "tidemark consume did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_prints_the_summary_and_a_closed_pipe_leaves_the_group() {
    let c = InProcessCluster::start(1).await.unwrap();
    let b = c.bootstrap();
    let client = Client::new(ClientConfig::new(c.addrs.clone())).unwrap();
    client.admin().create_topic("exit", 1, 1, 0, 0).await.unwrap();
    let (acked, _) = produce(&client, "exit", 0..3).await;
    assert_eq!(acked.len(), 3);

    let mut plain = spawn(&b, &["consume", "exit", "--from-beginning", "--timeout-ms", "0"]);
    let lines = BufReader::new(plain.stdout.take().expect("stdout"));
    let read = tokio::task::spawn_blocking(move || lines.lines().take(3).count()).await.unwrap();
    assert_eq!(read, 3);
    Command::new("kill").args(["-INT", &plain.id().to_string()]).status().expect("kill -INT");
    let (status, err) = finish(plain, Duration::from_secs(20)).await;
    assert!(status.success(), "Ctrl-C is a normal way to stop: {status:?} {err}");
    assert!(err.contains("Consumed 3 record(s)."), "{err}");

    let mut member = spawn(&b, &["consume", "exit", "--group", "g", "--timeout-ms", "0"]);
    let mut lines = BufReader::new(member.stdout.take().expect("stdout"));
    tokio::task::spawn_blocking(move || {
        let mut first = String::new();
        lines.read_line(&mut first).expect("a record");
        // `head -1` exits here: the pipe closes.
    })
    .await
    .unwrap();
    // The next record the member prints hits the closed pipe.
    produce(&client, "exit", 3..6).await;
    // It ends quietly, as `yes | head` does; what matters is that it left the group.
    let (_, err) = finish(member, Duration::from_secs(20)).await;
    assert!(!err.contains("panicked"), "{err}");
    let d = client.admin().describe_group("g").await.unwrap();
    assert!(d.members.is_empty(), "the member left the group on its way out: {:?}", d.members);
}
