//! Real `tidemark serve` processes on 127.0.0.1, each with its own sled data dir, that a
//! test can `kill -9` and restart. Every child is killed when the cluster is dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The `tidemark` binary cargo built next to this test executable.
pub fn tidemark_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("tidemark");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p tidemark-cli` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

pub struct ProcessCluster {
    pub dir: tempfile::TempDir,
    /// Where each node serves clients.
    pub addrs: Vec<String>,
    /// Where each node serves the other nodes.
    pub cluster_addrs: Vec<String>,
    children: Vec<Option<Child>>,
    peers: String,
    /// Extra `serve` flags every node gets.
    extra: Vec<String>,
    /// How many nodes formed the cluster; later ones joined it (`serve --join`).
    founders: usize,
    /// With TLS: the directory of the nodes' certificates (see `DevTls`).
    tls: Option<PathBuf>,
}

impl ProcessCluster {
    pub fn start(n: usize) -> anyhow::Result<ProcessCluster> {
        Self::start_with(n, &[])
    }

    /// Like [`Self::start`], with extra `serve` flags for every node.
    pub fn start_with(n: usize, extra: &[&str]) -> anyhow::Result<ProcessCluster> {
        Self::start_tls(n, extra, None)
    }

    /// Like [`Self::start_with`]; with `tls`, every node serves TLS with its certificate
    /// from that directory (`node-<id>.pem`, `node-<id>.key`, `ca.pem`: see `DevTls`).
    pub fn start_tls(n: usize, extra: &[&str], tls: Option<PathBuf>) -> anyhow::Result<ProcessCluster> {
        crate::init_logging();
        let (addrs, cluster_addrs, peers) = crate::local_addresses(n);
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let dir = tempfile::tempdir()?;
        let children = Vec::new();
        let mut c = ProcessCluster { dir, addrs, cluster_addrs, children, peers, extra, founders: n, tls };
        for i in 0..n {
            let child = c.spawn(i)?;
            c.children.push(Some(child));
        }
        Ok(c)
    }

    fn spawn(&self, i: usize) -> anyhow::Result<Child> {
        let log = std::fs::File::create(self.dir.path().join(format!("node-{}.log", i + 1)))?;
        let joins = ["--join", self.cluster_addrs[0].as_str()];
        let forms = ["--peers", self.peers.as_str()];
        let mut tls: Vec<std::ffi::OsString> = Vec::new();
        if let Some(dir) = &self.tls {
            let id = i + 1;
            let files = [("--tls-cert", format!("node-{id}.pem")), ("--tls-key", format!("node-{id}.key"))];
            for (flag, file) in files.into_iter().chain([("--tls-ca", "ca.pem".to_string())]) {
                tls.extend([flag.into(), dir.join(file).into_os_string()]);
            }
        }
        let child = Command::new(tidemark_binary())
            .args(["serve", "--id", &(i + 1).to_string(), "--listen", &self.addrs[i]])
            .args(tls)
            .args(["--cluster-listen", &self.cluster_addrs[i]])
            .args(if i < self.founders { forms } else { joins })
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .args(&self.extra)
            .env("RUST_LOG", std::env::var("TIDEMARK_TEST_NODE_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(child)
    }

    /// Starts one more node, joining the cluster through node 1 (`serve --join`); returns
    /// its index. It waits, serving nothing, until `add_node` adds it.
    pub fn spawn_joiner(&mut self) -> anyhow::Result<usize> {
        let i = self.children.len();
        let (client, cluster, _) = crate::local_addresses(1);
        self.addrs.push(client[0].clone());
        self.cluster_addrs.push(cluster[0].clone());
        let child = self.spawn(i)?;
        self.children.push(Some(child));
        Ok(i)
    }

    /// Node `i`'s data directory (0-based).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{}", i + 1))
    }

    /// Bytes of every file under node `i`'s data directory.
    pub fn disk_bytes(&self, i: usize) -> u64 {
        fn walk(p: &std::path::Path) -> u64 {
            std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.data_dir(i))
    }

    pub fn bootstrap(&self) -> String {
        self.addrs.join(",")
    }

    /// SIGKILL: no clean shutdown, no final flush.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill9(i);
        self.children[i] = Some(self.spawn(i)?);
        Ok(())
    }

    /// Kills other nodes (restarting the previous one) until node `want` leads partition 0
    /// of `topic`. Start the cluster with `--leader-balance false`, or leadership moves
    /// back to the preferred replica behind this helper's back.
    ///
    /// Each round the survivors elect one of themselves at random, so a round misses half
    /// the time when `want` is in sync. It failed a CI run with 8 rounds, and once with 20
    /// (after a repair): each round now first waits for `want` to be in sync, so that it
    /// can win, and there are 40.
    pub async fn make_leader(&mut self, client: &tidemark_client::Client, topic: &str, want: u64) {
        for _ in 0..40 {
            let described = client.admin().describe_topic(topic).await.ok();
            let partition = described.as_ref().map(|d| &d.partitions[0]);
            let leader = partition.and_then(|p| p.leader);
            match leader {
                Some(l) if l == want => return,
                Some(_) if !partition.is_some_and(|p| p.in_sync_replicas.contains(&want)) => {}
                Some(l) => {
                    let back: Vec<usize> = (0..3).filter(|i| *i as u64 + 1 != l).collect();
                    for i in back {
                        // Bring back any node killed in an earlier round before killing the leader.
                        if self.disk_bytes(i) > 0 && std::net::TcpStream::connect(&self.addrs[i]).is_err() {
                            self.restart(i).expect("restart");
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    self.kill9(l as usize - 1);
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        panic!("node {want} never became the leader of {topic}/0");
    }

    /// SIGTERM: asks node `i` to stop gracefully (see [`Self::wait_exit`]).
    pub fn terminate(&self, i: usize) {
        if let Some(child) = &self.children[i] {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        }
    }

    /// Waits up to `within` for node `i`'s process to exit by itself; its exit status.
    pub async fn wait_exit(&mut self, i: usize, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = self.children[i].as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.children[i] = None;
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// The node's log, for failure messages.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node-{}.log", i + 1))).unwrap_or_default()
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill9(i);
        }
        if std::thread::panicking() {
            for i in 0..self.children.len() {
                let log = self.log(i);
                for line in log.lines().filter(|l| l.contains("panicked")).take(5) {
                    eprintln!("node {}: {line}", i + 1);
                }
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                eprintln!("--- node {} log (last lines) ---", i + 1);
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}
