//! Group operations on a node. Membership changes are metadata writes (so they reach
//! the metadata leader or answer NotLeader); heartbeats are answered from the leader's
//! memory; commits and committed-offset reads go to the partition's leader.

use tidemark_types::{now_ms, Offset, PartitionId};

use super::apply::{GroupCommand, GroupReject, GroupResponse};
use super::offsets::{CommitCommand, CommitResult, CommittedOffset};
use super::shared::{Delivery, DeliveryState};
use super::{validate_group_name, GroupConfig, GroupMeta, GroupMode, MemberPartition};
use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::meta::{MetaCommand, MetaResponse};

/// What a member learns when it joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub group_id: u64,
    pub member_id: String,
    pub assignment: Vec<MemberPartition>,
    pub config: GroupConfig,
}

/// A group's position in one partition: the committed offset (partitioned groups) and
/// the shared cursor (shared groups), with the partition's bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupPosition {
    pub committed: Option<CommittedOffset>,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
    /// Shared groups: every offset below is settled.
    pub shared_settled_below: Offset,
    /// Shared groups: records under lease now.
    pub shared_leased: u32,
    /// Shared groups: records found past their TTL (dropped or dead-lettered).
    pub shared_expired: u64,
    /// Shared groups: dead letters moved to the dead-letter topic.
    pub shared_dead_lettered: u64,
}

/// One partition of a commit or committed-offset read.
#[derive(Debug, Clone, Copy)]
pub struct GroupPartition<'a> {
    pub group: &'a str,
    /// From JoinGroup or DescribeGroup; 0: look the group up by name.
    pub group_id: u64,
    pub topic: &'a str,
    pub partition: PartitionId,
}

impl Broker {
    /// Creates a group.
    pub async fn create_group(&self, name: &str, topics: Vec<String>, config: GroupConfig) -> Result<GroupMeta> {
        validate_group_name(name)?;
        config.validate()?;
        let cmd = GroupCommand::Create { name: name.into(), config, topics };
        match self.group_write(name, "", cmd).await? {
            GroupResponse::Created(g) => Ok(*g),
            other => Err(unexpected(other)),
        }
    }

    pub fn list_groups(&self) -> Vec<GroupMeta> {
        self.meta.read().groups.values().cloned().collect()
    }

    pub fn describe_group(&self, name: &str) -> Result<GroupMeta> {
        self.meta.read().groups.get(name).cloned().ok_or_else(|| BrokerError::UnknownGroup { group: name.into() })
    }

    /// Deletes a group without members, and with it the meaning of its committed offsets
    /// (a group created again under the name gets a new id and starts afresh).
    pub async fn delete_group(&self, name: &str) -> Result<()> {
        match self.group_write(name, "", GroupCommand::Delete { name: name.into() }).await? {
            GroupResponse::Deleted => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Adds a member (or refreshes a known one's topics); `create` makes a missing group
    /// of the member's `mode` with default settings. The member gets a fresh session.
    #[allow(clippy::too_many_arguments)]
    pub async fn join_group(
        &self,
        group: &str,
        member_id: Option<String>,
        client_id: &str,
        topics: Vec<String>,
        create: bool,
        mode: GroupMode,
        principal: &str,
    ) -> Result<Joined> {
        validate_group_name(group)?;
        if topics.is_empty() {
            return Err(BrokerError::InvalidRequest("a member subscribes to at least one topic".into()));
        }
        if client_id.len() > 255 {
            return Err(BrokerError::InvalidRequest("a client id has at most 255 bytes".into()));
        }
        let client_id = if client_id.is_empty() { "member" } else { client_id };
        let known = member_id.clone().unwrap_or_default();
        let cmd = GroupCommand::Join {
            group: group.into(),
            member_id,
            client_id: client_id.into(),
            topics,
            create: create.then(|| GroupConfig { mode, ..GroupConfig::default() }),
            mode,
            principal: principal.into(),
        };
        match self.group_write(group, &known, cmd).await? {
            GroupResponse::Joined { group_id, member_id, assignment } => {
                self.sessions.touch(self.meta_term(), group, &member_id);
                let config = self.describe_group(group).map(|g| g.config).unwrap_or_default();
                Ok(Joined { group_id, member_id, assignment, config })
            }
            other => Err(unexpected(other)),
        }
    }

    /// Keeps a member alive, answered from the metadata leader's memory (no Raft write).
    /// Returns the member's assignment and the heartbeat interval it should keep.
    pub async fn heartbeat(&self, group: &str, member: &str) -> Result<(Vec<MemberPartition>, u32)> {
        let term = self.meta_leader_ready().await?;
        let state = self.meta.read();
        let g = state.groups.get(group).ok_or_else(|| BrokerError::UnknownGroup { group: group.into() })?;
        if !g.members.contains_key(member) {
            return Err(BrokerError::UnknownMember { group: group.into(), member: member.into() });
        }
        self.sessions.touch(term, group, member);
        Ok((g.member_assignment(member), g.config.heartbeat_interval_ms))
    }

    pub async fn leave_group(&self, group: &str, member: &str) -> Result<()> {
        let cmd = GroupCommand::Leave { group: group.into(), members: vec![member.into()] };
        match self.group_write(group, member, cmd).await? {
            GroupResponse::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// The member committed these revoking partitions: hand them to their new owners.
    pub async fn release_partitions(
        &self,
        group: &str,
        member: &str,
        partitions: Vec<(String, u32, u64)>,
    ) -> Result<()> {
        let cmd = GroupCommand::Release { group: group.into(), member: member.into(), partitions };
        match self.group_write(group, member, cmd).await? {
            GroupResponse::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Commits `offset` (the next offset to read) for a member that owns the partition
    /// under `generation`. An empty `member` is an administrative reset, allowed only
    /// while the group has no members.
    pub async fn commit_offset(
        &self,
        at: GroupPartition<'_>,
        member: &str,
        generation: u64,
        offset: Offset,
    ) -> Result<()> {
        let what = format!("{}/{}", at.topic, at.partition);
        let replica = self.read_replica(at.topic, at.partition).await?;
        let group_id = self.check_commit(at, member, generation, &what)?;
        let end = replica.shared.read().next_offset;
        if offset > end {
            return Err(BrokerError::InvalidRequest(format!(
                "offset {offset} is past the end of {what} ({end}); commit the next offset to read"
            )));
        }
        let cmd = CommitCommand { group_id, generation, offset, force: member.is_empty(), leader_time_ms: now_ms() };
        let resp = replica.raft.client_write(cmd.encode()).await.map_err(|e| self.write_error(what.clone(), e))?;
        match bincode::deserialize::<CommitResult>(&resp.data.0) {
            Ok(CommitResult::Committed) => Ok(()),
            Ok(CommitResult::Stale { current }) => Err(BrokerError::StaleGeneration {
                group: at.group.into(),
                member: member.into(),
                what,
                generation,
                current,
            }),
            other => Err(BrokerError::Internal(format!("{what}: commit answered {other:?}"))),
        }
    }

    /// The group's position in a partition, from the partition leader, with the
    /// partition's log start and end (for lag).
    pub async fn fetch_committed(&self, at: GroupPartition<'_>) -> Result<GroupPosition> {
        let replica = self.read_replica(at.topic, at.partition).await?;
        let group_id = self.resolve_group_id(at)?;
        let now = now_ms();
        let st = replica.shared.read();
        let cursor = st.shared.get(&group_id);
        let leased = cursor.map_or(0, |c| {
            let live = |d: &&Delivery| matches!(d.state, DeliveryState::Leased { until_ms, .. } if until_ms > now);
            c.records.values().filter(live).count() as u32
        });
        Ok(GroupPosition {
            committed: st.committed.get(&group_id).copied(),
            log_start_offset: st.log_start_offset,
            log_end_offset: st.next_offset,
            shared_settled_below: cursor.map_or(st.log_start_offset, |c| c.start.max(st.log_start_offset)),
            shared_leased: leased,
            shared_expired: cursor.map_or(0, |c| c.expired),
            shared_dead_lettered: cursor.map_or(0, |c| c.dead_lettered),
        })
    }

    /// The group's id as the request names it, checked against this node's metadata.
    fn resolve_group_id(&self, at: GroupPartition<'_>) -> Result<u64> {
        let state = self.meta.read();
        match state.groups.get(at.group) {
            Some(g) if at.group_id == 0 || g.id == at.group_id => Ok(g.id),
            _ if at.group_id > state.next_group_id => Err(metadata_behind(at.group)),
            _ => Err(BrokerError::UnknownGroup { group: at.group.into() }),
        }
    }

    /// The partition leader's fencing check against its metadata replica: the member
    /// must own the partition under `generation`. A generation newer than this node
    /// knows means its metadata replica lags: retriable.
    fn check_commit(&self, at: GroupPartition<'_>, member: &str, generation: u64, what: &str) -> Result<u64> {
        let group_id = self.resolve_group_id(at)?;
        let state = self.meta.read();
        let g = state.groups.get(at.group).ok_or_else(|| BrokerError::UnknownGroup { group: at.group.into() })?;
        if member.is_empty() {
            if !g.members.is_empty() {
                let action = "stop its consumers (or wait for their sessions to expire) and reset again";
                return Err(BrokerError::GroupNotEmpty { group: at.group.into(), members: g.members.len(), action });
            }
            return Ok(group_id);
        }
        let current = g.assignments.get(&(at.topic.to_string(), at.partition));
        let owned = current.is_some_and(|a| a.owner.as_deref() == Some(member) && a.generation == generation);
        if owned {
            return Ok(group_id);
        }
        if generation > g.next_generation {
            return Err(metadata_behind(at.group));
        }
        let current = current.map_or(0, |a| a.generation);
        Err(BrokerError::StaleGeneration {
            group: at.group.into(),
            member: member.into(),
            what: what.into(),
            generation,
            current,
        })
    }

    /// A group write through the metadata group, with the refusals of apply turned into
    /// errors (naming `member`, when the command is about one).
    async fn group_write(&self, group: &str, member: &str, cmd: GroupCommand) -> Result<GroupResponse> {
        match self.meta_write(MetaCommand::Group(cmd)).await? {
            MetaResponse::Group(GroupResponse::Rejected(r)) => Err(reject_error(group, member, r)),
            MetaResponse::Group(r) => Ok(r),
            other => Err(BrokerError::Internal(format!("a group command answered {other:?}"))),
        }
    }
}

fn reject_error(group: &str, member: &str, r: GroupReject) -> BrokerError {
    let group = group.to_string();
    match r {
        GroupReject::UnknownGroup => BrokerError::UnknownGroup { group },
        GroupReject::Exists => BrokerError::GroupExists { group },
        GroupReject::NotEmpty { members } => {
            BrokerError::GroupNotEmpty { group, members, action: "stop its consumers before deleting it" }
        }
        GroupReject::UnknownTopic(topic) => BrokerError::UnknownTopic { topic },
        GroupReject::WrongMode(GroupMode::Shared) => {
            BrokerError::InvalidRequest(format!("group {group:?} is a shared group; consume with --shared"))
        }
        GroupReject::WrongMode(GroupMode::Partitioned) => {
            BrokerError::InvalidRequest(format!("group {group:?} is a partitioned group; consume without --shared"))
        }
        GroupReject::UnknownMember => BrokerError::UnknownMember { group, member: member.into() },
    }
}

pub(crate) fn metadata_behind(group: &str) -> BrokerError {
    BrokerError::Unavailable(format!("this node's metadata does not know group {group:?} yet"))
}

fn unexpected(r: GroupResponse) -> BrokerError {
    BrokerError::Internal(format!("unexpected answer from the metadata group: {r:?}"))
}
