//! The metadata group's state machine: topics and where their partitions live.
//!
//! Placement is computed by the metadata leader when it proposes a topic (from the
//! nodes it sees alive) and carried in the command, so applying it is deterministic on
//! every replica. Topic ids and producer ids come from counters in this state, so they
//! are never reused, not even across a metadata-leader failover.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tidemark_raft::{Command, CommandResponse, StateMachineLogic};
use tidemark_types::{partition_group, GroupId, NodeId, PartitionId, TopicName};

use crate::acl::AclBinding;
use crate::groups::apply::{GroupCommand, GroupResponse};
use crate::groups::GroupMeta;
use crate::quota::Quota;
use crate::signal::Signal;

/// Per-topic settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// Batches appended longer ago than this are removed (0: keep forever).
    pub retention_ms: i64,
    /// Per partition: the oldest batches are removed while more than this is kept (0: no
    /// size limit).
    pub retention_bytes: u64,
    /// Shared groups on this topic do not deliver records older than this (0: no limit);
    /// see `groups::shared` for how it combines with the group's and the record's TTL.
    pub record_ttl_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub id: u32,
    pub name: TopicName,
    /// Replicas of each partition; the first is the preferred leader.
    pub replicas: Vec<Vec<NodeId>>,
    pub replication_factor: u32,
    pub config: TopicConfig,
    /// Partitions moving to other replicas: partition -> the replicas it moves to (see
    /// `moves.rs`). Until the move completes, both old and new replicas host the group.
    pub moves: BTreeMap<PartitionId, Vec<NodeId>>,
}

impl TopicMeta {
    pub fn group(&self, partition: PartitionId) -> GroupId {
        partition_group(self.id, partition)
    }

    pub fn partition_count(&self) -> u32 {
        self.replicas.len() as u32
    }

    /// Every node that hosts `partition` now: its replicas, and those it is moving to.
    pub fn hosts(&self, partition: PartitionId) -> Vec<NodeId> {
        let mut all = self.replicas.get(partition as usize).cloned().unwrap_or_default();
        for n in self.moves.get(&partition).into_iter().flatten() {
            if !all.contains(n) {
                all.push(*n);
            }
        }
        all
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    pub next_topic_id: u32,
    pub topics: BTreeMap<String, TopicMeta>,
    pub next_producer_id: i64,
    /// Named producers: name -> (id, current epoch). Registering a name again bumps the
    /// epoch, which fences the older instance. Anonymous producers are not kept here.
    pub named_producers: BTreeMap<String, (i64, i16)>,
    /// Current epoch of each named producer id, for the leaders' fencing check.
    pub producer_epochs: BTreeMap<i64, i16>,
    /// Consumer groups by name; ids come from `next_group_id` and are never reused.
    pub groups: BTreeMap<String, GroupMeta>,
    pub next_group_id: u64,
    /// Where each node serves clients, as it last said (see `directory.rs`). Peers reach
    /// each other on cluster addresses (the Raft membership); clients are given these.
    pub client_addrs: BTreeMap<NodeId, String>,
    /// Nodes being removed: nothing new is placed on them (see `membership.rs`).
    pub draining: std::collections::BTreeSet<NodeId>,
    /// Access control (see `acl.rs`); enforced by nodes started with `--require-auth`.
    pub acls: std::collections::BTreeSet<AclBinding>,
    /// Rates per principal (see `quota.rs`); `User:*` is the default.
    pub quotas: BTreeMap<String, Quota>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MetaCommand {
    CreateTopic {
        name: TopicName,
        replicas: Vec<Vec<NodeId>>,
        config: TopicConfig,
    },
    DeleteTopic {
        name: String,
    },
    /// Hands out a producer id and epoch: a fresh id for an anonymous producer, the same
    /// id with the next epoch for a name seen before.
    InitProducer {
        name: Option<String>,
    },
    /// Consumer-group definitions, membership and assignment.
    Group(GroupCommand),
    /// Replaces a topic's settings (retention, TTL); takes effect on the next retention
    /// pass of each partition leader.
    AlterTopic {
        name: String,
        config: TopicConfig,
    },
    /// Starts moving a partition to `replicas` (nothing when they are the current ones;
    /// refused while it moves elsewhere).
    Reassign {
        topic: String,
        partition: PartitionId,
        replicas: Vec<NodeId>,
    },
    /// The partition's group now has exactly `replicas` as voters: they become its
    /// replicas. Ignored unless that is the move in progress.
    CompleteMove {
        topic: String,
        partition: PartitionId,
        replicas: Vec<NodeId>,
    },
    /// Places nothing new on `node`: it is being removed.
    Drain {
        node: NodeId,
    },
    /// `node` left the cluster: forget its address and drain mark.
    Forget {
        node: NodeId,
    },
    /// Records the address where `node` serves clients.
    PublishAddress {
        node: NodeId,
        address: String,
    },
    AddAcl(AclBinding),
    /// Answers `Deleted`, or `Missing` when there was no such binding.
    RemoveAcl(AclBinding),
    /// Sets a principal's quota, or removes it (None; `Missing` when it had none).
    SetQuota {
        principal: String,
        quota: Option<Quota>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MetaResponse {
    Created(TopicMeta),
    Deleted,
    Exists,
    Missing,
    Producer {
        id: i64,
        epoch: i16,
    },
    Group(GroupResponse),
    Altered(TopicMeta),
    /// A node's client address or drain mark was recorded.
    Published,
}

impl MetaCommand {
    pub fn encode(&self) -> Command {
        Command(Bytes::from(bincode::serialize(self).expect("metadata commands always encode")))
    }
}

impl MetaState {
    fn init_producer(&mut self, name: Option<String>) -> (i64, i16) {
        let known = name.as_ref().and_then(|n| self.named_producers.get(n).copied());
        let (id, epoch) = match known {
            Some((id, epoch)) if epoch < i16::MAX => (id, epoch + 1),
            // A new producer, or a name whose epochs ran out: a fresh id.
            _ => {
                let id = self.next_producer_id;
                self.next_producer_id += 1;
                if let Some((old, _)) = known {
                    self.producer_epochs.remove(&old);
                }
                (id, 0)
            }
        };
        if let Some(name) = name {
            self.named_producers.insert(name, (id, epoch));
            self.producer_epochs.insert(id, epoch);
        }
        (id, epoch)
    }
}

/// Spreads `partitions` x `rf` replicas over `nodes` (sorted ids) so that both replicas
/// and preferred leaders are balanced; `start` rotates the pattern per topic so small
/// topics do not all lead on the first node.
pub fn place(nodes: &[NodeId], partitions: u32, rf: u32, start: u32) -> Vec<Vec<NodeId>> {
    let n = nodes.len();
    (0..partitions as usize).map(|p| (0..rf as usize).map(|i| nodes[(start as usize + p + i) % n]).collect()).collect()
}

/// Shared, readable view of the metadata state; `changes` ticks on every applied change.
pub struct MetaShared {
    pub state: RwLock<MetaState>,
    pub changes: Signal,
}

impl MetaShared {
    pub fn new() -> Arc<MetaShared> {
        Arc::new(MetaShared { state: RwLock::new(MetaState::default()), changes: Signal::default() })
    }

    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, MetaState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changes.bump();
    }
}

pub struct MetaLogic(pub Arc<MetaShared>);

impl StateMachineLogic for MetaLogic {
    fn apply(&mut self, _index: u64, command: &Command) -> CommandResponse {
        let response = match tidemark_raft::codec::decode::<MetaCommand>(&command.0) {
            Ok(cmd) => self.apply_command(cmd),
            // A command this version cannot read was still committed; skipping it on
            // every replica alike keeps them identical.
            Err(_) => MetaResponse::Missing,
        };
        CommandResponse(Bytes::from(bincode::serialize(&response).expect("responses always encode")))
    }

    fn snapshot(&self) -> Vec<u8> {
        bincode::serialize(&*self.0.read()).expect("metadata state always encodes")
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let state: MetaState = tidemark_raft::codec::decode(snapshot).map_err(|e| e.to_string())?;
        *self.0.state.write().unwrap_or_else(|e| e.into_inner()) = state;
        self.0.bump();
        Ok(())
    }
}

impl MetaLogic {
    fn apply_command(&mut self, cmd: MetaCommand) -> MetaResponse {
        let mut state = self.0.state.write().unwrap_or_else(|e| e.into_inner());
        let response = match cmd {
            MetaCommand::CreateTopic { name, replicas, config } => {
                if state.topics.contains_key(name.as_str()) {
                    return MetaResponse::Exists;
                }
                let id = state.next_topic_id;
                state.next_topic_id += 1;
                let replication_factor = replicas.first().map_or(0, |r| r.len() as u32);
                let moves = BTreeMap::new();
                let topic = TopicMeta { id, name: name.clone(), replicas, replication_factor, config, moves };
                state.topics.insert(name.as_str().to_string(), topic.clone());
                state.rebalance_groups();
                MetaResponse::Created(topic)
            }
            MetaCommand::DeleteTopic { name } => match state.topics.remove(&name) {
                Some(_) => {
                    state.rebalance_groups();
                    MetaResponse::Deleted
                }
                None => return MetaResponse::Missing,
            },
            MetaCommand::Group(cmd) => MetaResponse::Group(state.apply_group(cmd)),
            MetaCommand::AlterTopic { name, config } => match state.topics.get_mut(&name) {
                Some(t) => {
                    t.config = config;
                    MetaResponse::Altered(t.clone())
                }
                None => return MetaResponse::Missing,
            },
            MetaCommand::Reassign { topic, partition, replicas } => {
                let Some(t) = state.topics.get_mut(&topic) else { return MetaResponse::Missing };
                let Some(current) = t.replicas.get(partition as usize) else { return MetaResponse::Missing };
                // A move is never replaced or cancelled: its swap may be under way, and
                // the nodes it adds must keep hosting the group until it completes.
                match t.moves.get(&partition) {
                    Some(moving) if *moving != replicas => return MetaResponse::Exists,
                    Some(_) => {}
                    None if *current == replicas => {}
                    None => {
                        t.moves.insert(partition, replicas);
                    }
                }
                MetaResponse::Altered(t.clone())
            }
            MetaCommand::CompleteMove { topic, partition, replicas } => {
                let Some(t) = state.topics.get_mut(&topic) else { return MetaResponse::Missing };
                if t.moves.get(&partition) != Some(&replicas) {
                    return MetaResponse::Missing;
                }
                t.moves.remove(&partition);
                t.replicas[partition as usize] = replicas;
                MetaResponse::Altered(t.clone())
            }
            MetaCommand::Drain { node } => {
                state.draining.insert(node);
                MetaResponse::Published
            }
            MetaCommand::Forget { node } => {
                state.draining.remove(&node);
                state.client_addrs.remove(&node);
                MetaResponse::Published
            }
            MetaCommand::PublishAddress { node, address } => {
                state.client_addrs.insert(node, address);
                MetaResponse::Published
            }
            MetaCommand::AddAcl(binding) => {
                state.acls.insert(binding);
                MetaResponse::Published
            }
            MetaCommand::RemoveAcl(binding) => {
                if !state.acls.remove(&binding) {
                    return MetaResponse::Missing;
                }
                MetaResponse::Deleted
            }
            MetaCommand::SetQuota { principal, quota: Some(quota) } => {
                state.quotas.insert(principal, quota);
                MetaResponse::Published
            }
            MetaCommand::SetQuota { principal, quota: None } => {
                if state.quotas.remove(&principal).is_none() {
                    return MetaResponse::Missing;
                }
                MetaResponse::Deleted
            }
            MetaCommand::InitProducer { name } => {
                let (id, epoch) = state.init_producer(name);
                return MetaResponse::Producer { id, epoch };
            }
        };
        drop(state);
        self.0.bump();
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_balances_replicas_and_leaders() {
        let p = place(&[1, 2, 3], 6, 3, 0);
        let mut leaders = [0; 4];
        for r in &p {
            assert_eq!(r.len(), 3);
            let mut s = r.clone();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 3, "replicas on distinct nodes: {r:?}");
            leaders[r[0] as usize] += 1;
        }
        assert_eq!(&leaders[1..], &[2, 2, 2]);
        assert_eq!(place(&[1, 2, 3], 1, 1, 1), vec![vec![2]]);
    }

    #[test]
    fn a_move_is_neither_replaced_nor_cancelled_until_it_completes() {
        let shared = MetaShared::new();
        let mut logic = MetaLogic(shared.clone());
        let name = TopicName::new("t").unwrap();
        let create = MetaCommand::CreateTopic { name, replicas: vec![vec![1, 2, 3]], config: TopicConfig::default() };
        logic.apply(1, &create.encode());
        let apply = |logic: &mut MetaLogic, cmd: MetaCommand| -> MetaResponse {
            bincode::deserialize(&logic.apply(2, &cmd.encode()).0).unwrap()
        };
        let reassign = |r: Vec<NodeId>| MetaCommand::Reassign { topic: "t".into(), partition: 0, replicas: r };
        assert!(matches!(apply(&mut logic, reassign(vec![2, 3, 4])), MetaResponse::Altered(_)));
        assert!(matches!(apply(&mut logic, reassign(vec![2, 3, 5])), MetaResponse::Exists), "not replaced");
        assert!(matches!(apply(&mut logic, reassign(vec![1, 2, 3])), MetaResponse::Exists), "not cancelled");
        assert!(matches!(apply(&mut logic, reassign(vec![2, 3, 4])), MetaResponse::Altered(_)), "asked again");
        assert_eq!(shared.read().topics["t"].hosts(0), vec![1, 2, 3, 4], "old and new replicas host it meanwhile");
        let wrong = MetaCommand::CompleteMove { topic: "t".into(), partition: 0, replicas: vec![2, 3, 5] };
        assert!(matches!(apply(&mut logic, wrong), MetaResponse::Missing), "only the move in progress completes");
        let done = MetaCommand::CompleteMove { topic: "t".into(), partition: 0, replicas: vec![2, 3, 4] };
        assert!(matches!(apply(&mut logic, done), MetaResponse::Altered(_)));
        let t = &shared.read().topics["t"];
        assert_eq!((t.replicas[0].clone(), t.moves.len()), (vec![2, 3, 4], 0));
    }

    #[test]
    fn create_and_delete_are_deterministic() {
        let shared = MetaShared::new();
        let mut logic = MetaLogic(shared.clone());
        let create = MetaCommand::CreateTopic {
            name: TopicName::new("t").unwrap(),
            replicas: vec![vec![1, 2]],
            config: TopicConfig::default(),
        };
        logic.apply(1, &create.encode());
        let r: MetaResponse = bincode::deserialize(&logic.apply(2, &create.encode()).0).unwrap();
        assert!(matches!(r, MetaResponse::Exists));
        assert_eq!(shared.read().topics["t"].id, 0);
        logic.apply(3, &MetaCommand::DeleteTopic { name: "t".into() }.encode());
        logic.apply(4, &create.encode());
        assert_eq!(shared.read().topics["t"].id, 1, "ids are never reused");
        let snap = logic.snapshot();
        let other = MetaShared::new();
        MetaLogic(other.clone()).restore(&snap).unwrap();
        assert_eq!(*other.read(), *shared.read());
        let producer = |logic: &mut MetaLogic, name: Option<&str>| {
            let cmd = MetaCommand::InitProducer { name: name.map(String::from) };
            match bincode::deserialize(&logic.apply(9, &cmd.encode()).0).unwrap() {
                MetaResponse::Producer { id, epoch } => (id, epoch),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(producer(&mut logic, None), (0, 0));
        assert_eq!(producer(&mut logic, Some("orders")), (1, 0));
        assert_eq!(producer(&mut logic, None), (2, 0));
        assert_eq!(producer(&mut logic, Some("orders")), (1, 1), "same name: same id, next epoch");
        assert_eq!(shared.read().producer_epochs[&1], 1);
        let snap_after = logic.snapshot();
        let mut again = MetaLogic(MetaShared::new());
        again.restore(&snap_after).unwrap();
        assert_eq!(producer(&mut again, None), (3, 0), "ids continue after a restore, never reused");
    }
}
