//! The server half of the internal transport: finds the named group on this node and
//! hands it the decoded openraft message. The tonic service in tidemark-server is a thin
//! wrapper over [`GroupRegistry::handle`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tidemark_proto::v1::RaftRpc;
use tidemark_types::GroupId;

use crate::repair::Repairs;
use crate::types::{Raft, Snapshot, SnapshotMeta, TypeConfig, Vote};

/// The Raft groups this node hosts, by id.
#[derive(Default)]
pub struct GroupRegistry {
    groups: RwLock<HashMap<GroupId, Raft>>,
    /// Groups repairing after disk damage: they must not vote (see [`crate::repair`]).
    repairs: Arc<Repairs>,
    closed: AtomicBool,
    closing: tokio::sync::Notify,
}

impl GroupRegistry {
    /// A registry whose groups refuse to vote while `repairs` lists them.
    pub fn new(repairs: Arc<Repairs>) -> Self {
        GroupRegistry { repairs, ..Default::default() }
    }

    /// Marks the node as stopping: inbound replication streams end (see
    /// [`crate::pipeline::serve`]), so the server's graceful drain is not left waiting
    /// on a stream whose leader has nothing more to send.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.closing.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Resolves once [`GroupRegistry::close`] was called.
    pub async fn closed(&self) {
        loop {
            let notified = self.closing.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    pub fn insert(&self, group: GroupId, raft: Raft) {
        self.groups.write().unwrap_or_else(|e| e.into_inner()).insert(group, raft);
    }

    pub fn remove(&self, group: GroupId) -> Option<Raft> {
        self.groups.write().unwrap_or_else(|e| e.into_inner()).remove(&group)
    }

    /// Every group registered now, for tools that look at all of them (tests, metrics).
    pub fn groups(&self) -> Vec<(GroupId, Raft)> {
        self.groups.read().unwrap_or_else(|e| e.into_inner()).iter().map(|(g, r)| (*g, r.clone())).collect()
    }

    pub fn get(&self, group: GroupId) -> Option<Raft> {
        self.groups.read().unwrap_or_else(|e| e.into_inner()).get(&group).cloned()
    }

    /// Serves one transport request. An `Err` is a message for the caller, who treats
    /// it as "unreachable" and retries (a group not yet created here, a stopped group).
    pub async fn handle(&self, group: GroupId, rpc: i32, payload: &[u8]) -> Result<Vec<u8>, String> {
        let raft = self.get(group).ok_or_else(|| format!("group {group:#x} is not hosted on this node (yet)"))?;
        match RaftRpc::try_from(rpc) {
            Ok(RaftRpc::Append) => {
                let req: AppendEntriesRequest<TypeConfig> = decode(payload)?;
                encode(&raft.append_entries(req).await.map_err(|e| e.to_string())?)
            }
            Ok(RaftRpc::Vote) if self.repairs.is_repairing(group) && !crate::planted::vote_while_repairing() => {
                Err(format!(
                "group {group:#x} is repairing after disk damage on this node; it does not vote until it has caught up"
            ))
            }
            Ok(RaftRpc::Vote) => {
                let req: VoteRequest<TypeConfig> = decode(payload)?;
                encode(&raft.vote(req).await.map_err(|e| e.to_string())?)
            }
            Ok(RaftRpc::TransferLeader) if self.repairs.is_repairing(group) => {
                Err(format!("group {group:#x} is repairing after disk damage on this node; it cannot take over"))
            }
            Ok(RaftRpc::TransferLeader) => {
                let req: TransferLeaderRequest<TypeConfig> = decode(payload)?;
                encode(&raft.handle_transfer_leader(req).await.map_err(|e| e.to_string())?)
            }
            Ok(RaftRpc::Snapshot) => {
                let (vote, meta, data): (Vote, SnapshotMeta, Vec<u8>) = decode(payload)?;
                let snapshot = Snapshot { meta, snapshot: data };
                encode(&raft.install_full_snapshot(vote, snapshot).await.map_err(|e| e.to_string())?)
            }
            _ => Err(format!("unknown raft rpc {rpc}")),
        }
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    crate::codec::decode(bytes).map_err(|e| format!("undecodable raft message: {e}"))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    bincode::serialize(v).map_err(|e| format!("unencodable raft reply: {e}"))
}
