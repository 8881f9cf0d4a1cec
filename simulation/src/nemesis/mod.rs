//! The nemesis: injects faults into a running cluster on a schedule drawn from the seed.
//!
//! ```text
//!   plan(seed) ──> kill/restart ─┐   one timeline per kind, overlapping freely
//!                  partitions  ──┤
//!                  lossy net   ──┼──> events sorted by virtual time ──> apply / undo
//!                  pauses      ──┤
//!                  fsync errors ─┘
//!   heal() ──> every link open, every node resumed, restarted, on a good disk
//! ```
//!
//! Overlapping faults are resolved by the node's current state: a paused node is resumed
//! before it is killed, a killed node is not paused, a node whose disk failed is crashed
//! and restarted on a good disk when its fault ends.

mod plan;

use std::collections::BTreeMap;
use std::time::Duration;

use madsim::net::NetSim;
pub use plan::{plan, Fault, NemesisConfig, Planned};

use crate::harness::SimCluster;
use crate::trace::Trace;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct NodeState {
    down: bool,
    paused: bool,
    fsync_failing: bool,
}

/// Applies faults to one cluster and remembers what it must undo.
pub struct Nemesis<'a> {
    cluster: &'a SimCluster,
    trace: Trace,
    nodes: Vec<NodeState>,
    /// Fault id -> the nodes that fault killed (restarted when it ends).
    killed_by: BTreeMap<usize, Vec<usize>>,
    /// How many faults of each kind were applied.
    pub applied: BTreeMap<&'static str, u32>,
}

impl<'a> Nemesis<'a> {
    pub fn new(cluster: &'a SimCluster, trace: Trace) -> Self {
        let nodes = vec![NodeState::default(); cluster.len()];
        Nemesis { cluster, trace, nodes, killed_by: BTreeMap::new(), applied: BTreeMap::new() }
    }

    /// Runs the schedule: sleeps until each fault's start and end and applies or undoes it.
    pub async fn run(&mut self, schedule: &[Planned], started: tokio::time::Instant) {
        let mut events: Vec<(Duration, bool, &Planned)> =
            schedule.iter().flat_map(|p| [(p.start, true, p), (p.end, false, p)]).collect();
        // Ends before starts at the same instant, then by fault id: a total, seed-stable order.
        events.sort_by_key(|(at, start, p)| (*at, *start, p.id));
        for (at, start, planned) in events {
            tokio::time::sleep_until(started + at).await;
            if start {
                self.start(planned);
            } else {
                self.end(planned);
            }
        }
    }

    fn net() -> std::sync::Arc<NetSim> {
        NetSim::current()
    }

    fn start(&mut self, p: &Planned) {
        let applied = match &p.fault {
            Fault::Kill { nodes, torn } => {
                let victims: Vec<usize> = nodes.iter().copied().filter(|i| !self.nodes[*i].down).collect();
                for &i in &victims {
                    self.crash(i, *torn);
                }
                let any = !victims.is_empty();
                self.killed_by.insert(p.id, victims);
                any
            }
            Fault::Isolate { node } => {
                Self::net().clog_node(self.cluster.sim_id(*node));
                true
            }
            Fault::Split { minority, majority } => {
                self.links(minority, majority, true);
                self.links(majority, minority, true);
                true
            }
            Fault::OneWay { from, to } => {
                self.links(from, to, true);
                true
            }
            Fault::Lossy { loss, latency_ms } => {
                let latency = Duration::from_millis(*latency_ms);
                Self::net().update_config(|c| {
                    c.packet_loss_rate = *loss;
                    c.send_latency = Duration::from_millis(1)..latency;
                });
                true
            }
            Fault::Pause { node } => {
                let st = &mut self.nodes[*node];
                let ok = !st.down && !st.paused;
                if ok {
                    st.paused = true;
                    self.cluster.pause(*node);
                }
                ok
            }
            Fault::Wipe { node } => {
                // Only when no replica lags (see `plan::add_wipe`); otherwise skipped.
                let ok = self.nodes.iter().all(|s| *s == NodeState::default()) && self.cluster.groups_in_sync();
                if ok {
                    self.crash(*node, 0.0);
                    self.cluster.engines[*node].wipe();
                    self.killed_by.insert(p.id, vec![*node]);
                    self.trace.event(format!("node {} disk wiped", node + 1));
                }
                ok
            }
            Fault::Damage { node, lose } => {
                // Unlike a wipe, composable with any other fault: the node knows it lost
                // data and does not vote until it has repaired.
                let ok = !self.nodes[*node].down;
                if ok {
                    self.crash(*node, 0.0);
                    self.cluster.damage_log(*node, *lose);
                    self.killed_by.insert(p.id, vec![*node]);
                    self.trace.event(format!("node {} log damaged: newest {lose} entries per group lost", node + 1));
                }
                ok
            }
            Fault::FsyncError { node } => {
                let ok = !self.nodes[*node].down;
                if ok {
                    self.nodes[*node].fsync_failing = true;
                    self.cluster.engines[*node].set_fsync_error(true);
                }
                ok
            }
        };
        let kind = p.fault.kind(self.cluster.len());
        if applied {
            *self.applied.entry(kind).or_default() += 1;
        }
        let verdict = if applied { "start" } else { "skip" };
        self.trace.event(format!("nemesis {verdict} #{} {kind} {:?}", p.id, p.fault));
    }

    fn end(&mut self, p: &Planned) {
        match &p.fault {
            Fault::Kill { .. } | Fault::Wipe { .. } | Fault::Damage { .. } => {
                for i in self.killed_by.remove(&p.id).unwrap_or_default() {
                    self.restart(i);
                }
            }
            Fault::Isolate { node } => Self::net().unclog_node(self.cluster.sim_id(*node)),
            Fault::Split { minority, majority } => {
                self.links(minority, majority, false);
                self.links(majority, minority, false);
            }
            Fault::OneWay { from, to } => self.links(from, to, false),
            Fault::Lossy { .. } => Self::net().update_config(|c| *c = madsim::net::Config::default()),
            Fault::Pause { node } => {
                if self.nodes[*node].paused {
                    self.nodes[*node].paused = false;
                    self.cluster.resume(*node);
                }
            }
            Fault::FsyncError { node } => self.replace_disk(*node),
        }
        self.trace.event(format!("nemesis end #{} {}", p.id, p.fault.kind(self.cluster.len())));
    }

    /// Power cut of node `i`, keeping `torn` of its unsynced writes as a torn tail.
    fn crash(&mut self, i: usize, torn: f64) {
        if self.nodes[i].paused {
            self.cluster.resume(i);
        }
        let keep = (self.cluster.engines[i].unsynced_len() as f64 * torn) as usize;
        self.cluster.kill_torn(i, keep);
        self.cluster.engines[i].set_fsync_error(false);
        self.nodes[i] = NodeState { down: true, paused: false, fsync_failing: false };
        self.trace.event(format!("node {} killed, kept {keep} unsynced writes", i + 1));
    }

    fn restart(&mut self, i: usize) {
        if self.nodes[i].down {
            self.cluster.restart(i);
            self.nodes[i].down = false;
            self.trace.event(format!("node {} restarted", i + 1));
        }
    }

    /// After an fsync error nobody knows what reached the disk: the node is crashed and
    /// restarts on a working disk, as an operator would do.
    fn replace_disk(&mut self, i: usize) {
        if self.nodes[i].fsync_failing {
            self.crash(i, 0.0);
            self.restart(i);
        }
    }

    fn links(&self, from: &[usize], to: &[usize], clog: bool) {
        let net = Self::net();
        for &a in from {
            for &b in to {
                let (a, b) = (self.cluster.sim_id(a), self.cluster.sim_id(b));
                if clog {
                    net.clog_link(a, b);
                } else {
                    net.unclog_link(a, b);
                }
            }
        }
    }

    /// Ends every fault: links open, normal network, nodes resumed, failed disks replaced,
    /// killed nodes restarted.
    pub fn heal(&mut self) {
        let net = Self::net();
        net.update_config(|c| *c = madsim::net::Config::default());
        let all: Vec<usize> = (0..self.cluster.len()).collect();
        for &i in &all {
            net.unclog_node(self.cluster.sim_id(i));
        }
        self.links(&all, &all, false);
        for i in all {
            if self.nodes[i].paused {
                self.nodes[i].paused = false;
                self.cluster.resume(i);
            }
            self.replace_disk(i);
            self.restart(i);
        }
        self.killed_by.clear();
        self.trace.event("nemesis heal");
    }
}
