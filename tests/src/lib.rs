//! Shared helpers for the integration tests: free ports, in-process clusters over real
//! gRPC on 127.0.0.1, and raw wire clients.

pub mod process;
pub mod scale;

use std::sync::Arc;
use std::time::Duration;

use tidemark_proto::v1::admin_client::AdminClient;
use tidemark_proto::v1::tidemark_client::TidemarkClient;
use tidemark_server::{Node, NodeConfig};
use tidemark_storage::MemoryEngine;
use tonic::transport::Channel;

/// Ports the OS says are free right now (bound, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    // Tests in one binary run in parallel, and the kernel may hand a port one of them just
    // let go of to another: never give out the same port twice in a process (seen in CI:
    // one test's node answered on a port another test had picked for its own node).
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        if !given.contains(&port) {
            given.push(port);
            ports.push(port);
        }
        held.push(l);
    }
    ports
}

/// Free client and cluster addresses on 127.0.0.1 for `n` nodes, and the `--peers` value
/// naming the cluster ones.
pub fn local_addresses(n: usize) -> (Vec<String>, Vec<String>, String) {
    let ports = free_ports(2 * n);
    let addr = |p: &u16| format!("127.0.0.1:{p}");
    let (client, cluster) = ports.split_at(n);
    let cluster: Vec<String> = cluster.iter().map(addr).collect();
    let peers = cluster.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect::<Vec<_>>().join(",");
    (client.iter().map(addr).collect(), cluster, peers)
}

/// A cluster of in-process nodes on memory engines.
pub struct InProcessCluster {
    /// Where each node serves clients.
    pub addrs: Vec<String>,
    /// Where each node serves the other nodes (its cluster listener).
    pub cluster_addrs: Vec<String>,
    /// Each node with the sender that stops it (dropping it stops the node too).
    pub nodes: Vec<(Node, tokio::sync::oneshot::Sender<()>)>,
    peers: String,
}

/// Logs of the test process itself (SDK, in-process nodes) when RUST_LOG is set.
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    }
}

impl InProcessCluster {
    pub async fn start(n: usize) -> anyhow::Result<InProcessCluster> {
        init_logging();
        let (addrs, cluster_addrs, peers) = local_addresses(n);
        let mut c = InProcessCluster { addrs, cluster_addrs, nodes: Vec::new(), peers };
        // Together: a new cluster forms once every node answers on its cluster address.
        c.nodes = futures::future::try_join_all((0..n).map(|i| c.start_node(i))).await?;
        Ok(c)
    }

    async fn start_node(&self, i: usize) -> anyhow::Result<(Node, tokio::sync::oneshot::Sender<()>)> {
        let config = NodeConfig {
            id: i as u64 + 1,
            listen: self.addrs[i].clone(),
            cluster_listen: self.cluster_addrs[i].clone(),
            peers: self.peers.clone(),
            ..NodeConfig::default()
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let node = Node::start(config, Arc::new(MemoryEngine::new()), async move {
            let _ = rx.await;
        })
        .await?;
        Ok((node, tx))
    }

    pub fn bootstrap(&self) -> String {
        self.addrs.join(",")
    }

    pub fn channel(&self, i: usize) -> Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.addrs[i])).expect("uri").connect_lazy()
    }

    pub fn admin(&self, i: usize) -> AdminClient<Channel> {
        AdminClient::new(self.channel(i))
    }

    pub fn data(&self, i: usize) -> TidemarkClient<Channel> {
        TidemarkClient::new(self.channel(i))
    }

    /// Waits (bounded) until some node reports a metadata leader; returns its index.
    pub async fn metadata_leader(&self) -> anyhow::Result<usize> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            for i in 0..self.addrs.len() {
                if let Ok(r) = self.admin(i).cluster_status(tidemark_proto::v1::ClusterStatusRequest {}).await {
                    let leader = r.into_inner().metadata_leader;
                    if leader != 0 {
                        return Ok(leader as usize - 1);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("no metadata leader within 20 s")
    }
}
