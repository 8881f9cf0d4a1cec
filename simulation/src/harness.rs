//! A simulated cluster: one madsim host per node, each running the production entry
//! point on a memory engine the harness keeps across kills.
//!
//! ```text
//!   harness ── owns ──> MemoryEngine[i] ── clone ──> node i incarnation 1, 2, ...
//!      │                                             (Node::start, as the binary does)
//!      └── remembers each incarnation's Broker, so checkers can look at replica state
//! ```
//!
//! The harness, not the node, owns durability: `kill` is a power cut that throws away
//! what the engine had not synced (or keeps a prefix of it: a torn tail), so what survives
//! a restart is exactly what a real disk would have kept.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use madsim::runtime::{Handle, NodeHandle};
use madsim::task::NodeId as SimNodeId;
use openraft::async_runtime::watch::WatchReceiver;
use tidemark_broker::Broker;
use tidemark_raft::log_store::LOG_TREE;
use tidemark_server::{Node, NodeConfig};
use tidemark_storage::MemoryEngine;

/// The broker of a node's current incarnation, set once `Node::start` returns.
type BrokerSlot = Arc<Mutex<Option<Arc<Broker>>>>;

pub struct SimCluster {
    pub handle: Handle,
    pub nodes: Vec<NodeHandle>,
    pub engines: Vec<MemoryEngine>,
    pub addrs: Vec<String>,
    brokers: Vec<BrokerSlot>,
}

fn node_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1))
}

impl SimCluster {
    /// Boots `n` nodes (ids 1..=n) that form one cluster.
    pub fn start(n: usize) -> SimCluster {
        Self::start_with(n, |_| {})
    }

    /// Like [`Self::start`], with `tweak` applied to every node's configuration.
    pub fn start_with(n: usize, tweak: impl Fn(&mut NodeConfig)) -> SimCluster {
        let handle = Handle::current();
        let addrs: Vec<String> = (0..n).map(|i| format!("{}:9092", node_ip(i))).collect();
        let cluster_addr = |i: usize| format!("{}:9093", node_ip(i));
        let peers = (0..n).map(|i| format!("{}={}", i + 1, cluster_addr(i))).collect::<Vec<_>>().join(",");
        let engines: Vec<MemoryEngine> = (0..n).map(|_| MemoryEngine::new()).collect();
        let brokers: Vec<BrokerSlot> = (0..n).map(|_| BrokerSlot::default()).collect();
        let nodes = (0..n)
            .map(|i| {
                let mut config = NodeConfig {
                    id: i as u64 + 1,
                    listen: addrs[i].clone(),
                    cluster_listen: cluster_addr(i),
                    peers: peers.clone(),
                    ..Default::default()
                };
                tweak(&mut config);
                let engine = engines[i].clone();
                let slot = brokers[i].clone();
                handle
                    .create_node()
                    .name(format!("node-{}", i + 1))
                    .ip(node_ip(i))
                    .init(move || {
                        let config = config.clone();
                        let engine = engine.clone();
                        let slot = slot.clone();
                        async move {
                            let node = Node::start(config, Arc::new(engine), std::future::pending())
                                .await
                                .expect("node starts");
                            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(node.broker.clone());
                            let _ = node.wait().await;
                        }
                    })
                    .build()
            })
            .collect();
        SimCluster { handle, nodes, engines, addrs, brokers }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A host for clients, outside the cluster.
    pub fn client_host(&self, n: u8) -> NodeHandle {
        self.handle.create_node().name(format!("client-{n}")).ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, n))).build()
    }

    /// The madsim id of node `i` (0-based), for network faults.
    pub fn sim_id(&self, i: usize) -> SimNodeId {
        self.nodes[i].id()
    }

    /// Kills node `i` (0-based) like a power cut: it loses every write it had not synced.
    pub fn kill(&self, i: usize) {
        self.kill_torn(i, 0);
    }

    /// Kills node `i`, keeping the first `keep_unsynced` unsynced writes (a torn tail).
    pub fn kill_torn(&self, i: usize, keep_unsynced: usize) {
        self.handle.kill(self.nodes[i].id());
        self.brokers[i].lock().unwrap_or_else(|e| e.into_inner()).take();
        self.engines[i].crash(keep_unsynced);
    }

    /// Kills node `i` and wipes its disk: it restarts empty and must rebuild from peers.
    pub fn kill_and_wipe(&self, i: usize) {
        self.kill(i);
        self.engines[i].wipe();
    }

    /// Kills node `i` and damages its synced log as the segment log finds damage when it
    /// opens: each group loses its newest `lose` entries, acknowledged or not, and the
    /// engine reports the damage. The node must repair from its peers, and must not vote
    /// before it has (see `tidemark_raft::repair`).
    pub fn kill_and_damage(&self, i: usize, lose: u64) {
        self.kill(i);
        self.damage_log(i, lose);
    }

    /// The damage of [`Self::kill_and_damage`], to a node that is already down.
    pub fn damage_log(&self, i: usize, lose: u64) {
        let engine = &self.engines[i];
        let split = |k: &[u8]| -> Option<(u64, u64)> {
            let group = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
            Some((group, u64::from_be_bytes(k.get(8..16)?.try_into().ok()?)))
        };
        let rows = tidemark_storage::Engine::range(engine, LOG_TREE, &[], None, usize::MAX).unwrap_or_default();
        let mut last = std::collections::HashMap::new();
        for (group, index) in rows.iter().filter_map(|(k, _)| split(k)) {
            let l = last.entry(group).or_insert(index);
            *l = (*l).max(index);
        }
        let doomed = |k: &[u8]| split(k).is_some_and(|(g, i)| last.get(&g).is_some_and(|&l| i + lose > l));
        engine.damage(LOG_TREE, doomed, &format!("simulated damage: the newest {lose} entries of each group"));
    }

    pub fn restart(&self, i: usize) {
        self.handle.restart(self.nodes[i].id());
    }

    /// Freezes every task of node `i` (a GC pause, a stopped VM); its timers fire late.
    pub fn pause(&self, i: usize) {
        self.handle.pause(self.nodes[i].id());
    }

    pub fn resume(&self, i: usize) {
        self.handle.resume(self.nodes[i].id());
    }

    /// The broker of node `i`'s running incarnation, once it has started.
    pub fn broker(&self, i: usize) -> Option<Arc<Broker>> {
        self.brokers[i].lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether every node runs and, in every Raft group, every replica's log holds every
    /// entry its leader has committed: then losing any one node's disk loses no
    /// acknowledged entry (the others hold them all).
    pub fn groups_in_sync(&self) -> bool {
        // Per group: (highest committed index any replica knows, lowest last log index).
        let mut by_group: std::collections::BTreeMap<u64, (u64, u64)> = Default::default();
        for i in 0..self.len() {
            let Some(broker) = self.broker(i) else { return false };
            for (group, raft) in broker.registry().groups() {
                let m = raft.metrics().borrow_watched().clone();
                let e = by_group.entry(group).or_insert((0, u64::MAX));
                e.0 = e.0.max(m.cluster_committed.map_or(0, |id| id.index));
                e.1 = e.1.min(m.last_log_index.unwrap_or(0));
            }
        }
        by_group.values().all(|(committed, lowest)| lowest >= committed)
    }

    pub fn bootstrap(&self) -> String {
        self.addrs.join(",")
    }
}
