//! The openraft type configuration shared by every group on a node.
//!
//! Application data is opaque bytes here: the broker defines what a command means for
//! the metadata group and for a partition group, so this crate stays free of domain
//! logic and one type config (one transport, one log store) serves every group.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::runtime::TidemarkRuntime;
use crate::state_machine::GroupStateMachine;

/// A command to replicate: encoded and interpreted by the group's state machine logic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command(pub Bytes);

/// The state machine's answer to one applied command.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResponse(pub Bytes);

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "command({} bytes)", self.0.len())
    }
}

impl fmt::Display for CommandResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "response({} bytes)", self.0.len())
    }
}

openraft::declare_raft_types!(
    /// Tidemark's Raft types: u64 node ids, nodes known by their gRPC address.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        AsyncRuntime = TidemarkRuntime,
);

pub type Raft = openraft::Raft<TypeConfig, GroupStateMachine>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, Vec<u8>>;
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;
