//! Group commands of the metadata state machine. Everything here is deterministic:
//! member ids and generations come from counters in the replicated state, and the
//! assignment is recomputed inside apply, so every replica agrees on who owns what.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::assign::{complete_move, rebalance};
use super::{GroupConfig, GroupMeta, GroupMode, MemberMeta, MemberPartition};
use crate::meta::MetaState;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum GroupCommand {
    Create {
        name: String,
        config: GroupConfig,
        topics: Vec<String>,
    },
    /// Refused while the group has members.
    Delete {
        name: String,
    },
    /// A new member (`member_id` None) or a known member refreshing its subscription.
    /// `create`: make the group with this config if it does not exist.
    Join {
        group: String,
        member_id: Option<String>,
        client_id: String,
        topics: Vec<String>,
        create: Option<GroupConfig>,
        /// The kind of member: it must match the group's mode.
        mode: GroupMode,
        /// Who joins (kept with the member; see `MemberMeta::principal`).
        principal: String,
    },
    /// Members that left cleanly, or whose session the metadata leader saw expire.
    Leave {
        group: String,
        members: Vec<String>,
    },
    /// The owner committed these partitions, which were revoking: they may move now.
    Release {
        group: String,
        member: String,
        /// (topic, partition, generation it owned them under)
        partitions: Vec<(String, u32, u64)>,
    },
    /// The metadata leader saw these partitions revoking for longer than the rebalance
    /// timeout: they move without their owner's release (its commits are fenced).
    ForceRelease {
        group: String,
        /// (topic, partition, generation of the stuck owner)
        partitions: Vec<(String, u32, u64)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupResponse {
    Created(Box<GroupMeta>),
    Deleted,
    Joined { group_id: u64, member_id: String, assignment: Vec<MemberPartition> },
    Done,
    Rejected(GroupReject),
}

/// Why apply refused a group command (decided identically on every replica).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupReject {
    UnknownGroup,
    Exists,
    NotEmpty {
        members: usize,
    },
    UnknownTopic(String),
    /// The group's mode (carried here) differs from the joining member's.
    WrongMode(GroupMode),
    UnknownMember,
}

impl MetaState {
    /// Partitions per existing topic: the input of every rebalance.
    pub(crate) fn partition_counts(&self) -> BTreeMap<String, u32> {
        self.topics.iter().map(|(n, t)| (n.clone(), t.partition_count())).collect()
    }

    /// Recomputes every group's assignment (after topics appear or disappear).
    pub(crate) fn rebalance_groups(&mut self) {
        let counts = self.partition_counts();
        for g in self.groups.values_mut() {
            rebalance(g, &counts);
        }
    }

    pub(crate) fn apply_group(&mut self, cmd: GroupCommand) -> GroupResponse {
        let reject = GroupResponse::Rejected;
        match cmd {
            GroupCommand::Create { name, config, topics } => {
                if self.groups.contains_key(&name) {
                    return reject(GroupReject::Exists);
                }
                if let Some(t) = topics.iter().find(|t| !self.topics.contains_key(*t)) {
                    return reject(GroupReject::UnknownTopic(t.clone()));
                }
                GroupResponse::Created(Box::new(self.new_group(name, config, topics).clone()))
            }
            GroupCommand::Delete { name } => match self.groups.get(&name) {
                None => reject(GroupReject::UnknownGroup),
                Some(g) if !g.members.is_empty() => reject(GroupReject::NotEmpty { members: g.members.len() }),
                Some(_) => {
                    self.groups.remove(&name);
                    GroupResponse::Deleted
                }
            },
            GroupCommand::Join { group, member_id, client_id, topics, create, mode, principal } => self.join(
                group,
                member_id,
                MemberMeta { client_id, topics: topics.into_iter().collect(), principal },
                create,
                mode,
            ),
            GroupCommand::Leave { group, members } => {
                let counts = self.partition_counts();
                let Some(g) = self.groups.get_mut(&group) else { return reject(GroupReject::UnknownGroup) };
                for m in &members {
                    g.members.remove(m);
                }
                rebalance(g, &counts);
                GroupResponse::Done
            }
            GroupCommand::Release { group, member, partitions } => {
                let counts = self.partition_counts();
                let Some(g) = self.groups.get_mut(&group) else { return reject(GroupReject::UnknownGroup) };
                if !g.members.contains_key(&member) {
                    return reject(GroupReject::UnknownMember);
                }
                for (topic, partition, generation) in partitions {
                    complete_move(g, &(topic, partition), &member, generation);
                }
                rebalance(g, &counts);
                GroupResponse::Done
            }
            GroupCommand::ForceRelease { group, partitions } => {
                let counts = self.partition_counts();
                let Some(g) = self.groups.get_mut(&group) else { return reject(GroupReject::UnknownGroup) };
                for (topic, partition, generation) in partitions {
                    let key = (topic, partition);
                    let owner = g.assignments.get(&key).and_then(|a| a.owner.clone());
                    if let Some(owner) = owner {
                        complete_move(g, &key, &owner, generation);
                    }
                }
                rebalance(g, &counts);
                GroupResponse::Done
            }
        }
    }

    fn new_group(&mut self, name: String, config: GroupConfig, topics: Vec<String>) -> &mut GroupMeta {
        self.next_group_id += 1;
        let g = GroupMeta {
            id: self.next_group_id,
            name: name.clone(),
            config,
            topics: topics.into_iter().collect(),
            members: BTreeMap::new(),
            assignments: BTreeMap::new(),
            next_member: 0,
            next_generation: 0,
        };
        self.groups.entry(name).or_insert(g)
    }

    fn join(
        &mut self,
        group: String,
        member_id: Option<String>,
        member: MemberMeta,
        create: Option<GroupConfig>,
        mode: GroupMode,
    ) -> GroupResponse {
        let reject = GroupResponse::Rejected;
        if let Some(t) = member.topics.iter().find(|t| !self.topics.contains_key(*t)) {
            return reject(GroupReject::UnknownTopic(t.clone()));
        }
        let counts = self.partition_counts();
        let g = match (self.groups.contains_key(&group), create) {
            (true, _) => self.groups.get_mut(&group).expect("checked"),
            (false, Some(config)) => self.new_group(group, config, Vec::new()),
            (false, None) => return reject(GroupReject::UnknownGroup),
        };
        if g.config.mode != mode {
            return reject(GroupReject::WrongMode(g.config.mode));
        }
        let member_id = match member_id {
            Some(id) if g.members.contains_key(&id) => id,
            Some(_) => return reject(GroupReject::UnknownMember),
            None => {
                g.next_member += 1;
                format!("{}-{}", member.client_id, g.next_member)
            }
        };
        g.topics.extend(member.topics.iter().cloned());
        g.members.insert(member_id.clone(), member);
        rebalance(g, &counts);
        GroupResponse::Joined { group_id: g.id, assignment: g.member_assignment(&member_id), member_id }
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
