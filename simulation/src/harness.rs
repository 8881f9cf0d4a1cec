//! A simulated cluster: one madsim host per node, each running the production entry
//! point on a memory engine the harness keeps across kills.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use madsim::runtime::{Handle, NodeHandle};
use tidemark_server::{Node, NodeConfig};
use tidemark_storage::MemoryEngine;

pub struct SimCluster {
    pub handle: Handle,
    pub nodes: Vec<NodeHandle>,
    pub engines: Vec<MemoryEngine>,
    pub addrs: Vec<String>,
}

fn node_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1))
}

impl SimCluster {
    /// Boots `n` nodes (ids 1..=n) that form one cluster.
    pub fn start(n: usize) -> SimCluster {
        let handle = Handle::current();
        let addrs: Vec<String> = (0..n).map(|i| format!("{}:9092", node_ip(i))).collect();
        let peers = addrs.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect::<Vec<_>>().join(",");
        let engines: Vec<MemoryEngine> = (0..n).map(|_| MemoryEngine::new()).collect();
        let nodes = (0..n)
            .map(|i| {
                let config = NodeConfig {
                    id: i as u64 + 1,
                    listen: addrs[i].clone(),
                    peers: peers.clone(),
                    ..Default::default()
                };
                let engine = engines[i].clone();
                handle
                    .create_node()
                    .name(format!("node-{}", i + 1))
                    .ip(node_ip(i))
                    .init(move || {
                        let config = config.clone();
                        let engine = engine.clone();
                        async move {
                            let node = Node::start(config, Arc::new(engine), std::future::pending())
                                .await
                                .expect("node starts");
                            let _ = node.wait().await;
                        }
                    })
                    .build()
            })
            .collect();
        SimCluster { handle, nodes, engines, addrs }
    }

    /// A host for clients, outside the cluster.
    pub fn client_host(&self, n: u8) -> NodeHandle {
        self.handle.create_node().name(format!("client-{n}")).ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, n))).build()
    }

    /// Kills node `i` (0-based) like a power cut: it loses every write it had not synced.
    pub fn kill(&self, i: usize) {
        self.handle.kill(self.nodes[i].id());
        self.engines[i].crash(0);
    }

    pub fn restart(&self, i: usize) {
        self.handle.restart(self.nodes[i].id());
    }

    pub fn bootstrap(&self) -> String {
        self.addrs.join(",")
    }
}
