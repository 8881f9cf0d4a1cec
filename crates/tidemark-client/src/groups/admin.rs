//! Consumer-group administration: create, list, describe (with committed offsets and
//! lag), delete, and offset resets for replay.

use std::time::Duration;

use tidemark_proto::v1::{self, list_offsets_request::Spec};
use tidemark_types::{ErrorCode, PartitionId};

use super::route::{commit_offset, fetch_committed, OffsetTarget};
use crate::admin::Admin;
use crate::config::StartPosition;
use crate::error::{ClientError, Result};

/// How a group shares its topics among members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GroupMode {
    /// Kafka-style: each partition is owned by one member at a time.
    #[default]
    Partitioned,
    /// Queue-style: any member takes any record (see [`SharedConsumer`](crate::SharedConsumer)).
    Shared,
}

/// What a shared group does with a record whose TTL passed before it was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiredAction {
    /// Settle it without delivering it (counted as expired by `describe_group`).
    Drop,
    /// Hand it out once as a dead letter with reason `expired` (the server's default).
    DeadLetter,
}

/// A group's settings. `None` / zero fields take the server's defaults (session
/// timeout 10 s, heartbeat every 1 s; shared mode: lock 30 s, 5 attempts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupSettings {
    pub mode: GroupMode,
    pub session_timeout: Option<Duration>,
    pub heartbeat_interval: Option<Duration>,
    pub lock_duration: Option<Duration>,
    pub max_delivery_attempts: Option<u32>,
    pub redelivery_backoff: Option<Duration>,
    pub dead_letter_topic: Option<String>,
    /// Records older than this are not delivered (shared mode). The topic's record TTL
    /// and a record's `tidemark-ttl-ms` header apply too: the shortest wins.
    pub ttl: Option<Duration>,
    /// What happens to records past their TTL (shared mode; default dead-letter).
    pub expired: Option<ExpiredAction>,
    /// Unsettled leases one member may hold in one partition (shared mode; default 500).
    pub max_in_flight: Option<u32>,
    /// How long a member may take to commit and release a partition that moves away
    /// before it moves anyway (default 30 s).
    pub rebalance_timeout: Option<Duration>,
}

/// One group in [`Admin::list_groups`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub name: String,
    pub mode: GroupMode,
    pub members: u32,
    pub topics: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberDescription {
    pub member_id: String,
    pub client_id: String,
    pub topics: Vec<String>,
}

/// One partition of a group's topics: who owns it, what is committed, how far behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartitionDescription {
    pub topic: String,
    pub partition: PartitionId,
    pub owner: Option<String>,
    pub generation: u64,
    /// Set while the partition is being handed from `owner` to this member.
    pub moving_to: Option<String>,
    /// The next offset the group will read; `None`: never committed. For a shared group:
    /// every record below it is settled.
    pub committed: Option<u64>,
    pub log_end_offset: Option<u64>,
    /// Records not yet committed: log end minus committed (minus log start when nothing
    /// is committed); for a shared group, records not yet settled. `None` when the
    /// partition could not be asked.
    pub lag: Option<u64>,
    /// Shared groups: records leased to members right now.
    pub in_flight: Option<u32>,
    /// Shared groups: records found past their TTL (dropped or dead-lettered).
    pub expired: Option<u64>,
    /// Shared groups: records moved to the dead-letter topic (any reason).
    pub dead_lettered: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub name: String,
    pub group_id: u64,
    pub settings: GroupSettings,
    pub topics: Vec<String>,
    pub members: Vec<GroupMemberDescription>,
    pub partitions: Vec<GroupPartitionDescription>,
}

fn ms(d: Option<Duration>) -> u32 {
    d.map_or(0, |d| d.as_millis().min(u32::MAX as u128) as u32)
}

pub(crate) fn settings_to_wire(s: &GroupSettings) -> v1::GroupConfig {
    v1::GroupConfig {
        mode: match s.mode {
            GroupMode::Partitioned => v1::GroupMode::Partitioned as i32,
            GroupMode::Shared => v1::GroupMode::Shared as i32,
        },
        session_timeout_ms: ms(s.session_timeout),
        heartbeat_interval_ms: ms(s.heartbeat_interval),
        lock_ms: ms(s.lock_duration),
        max_delivery_attempts: s.max_delivery_attempts.unwrap_or(0),
        redelivery_backoff_ms: ms(s.redelivery_backoff),
        dead_letter_topic: s.dead_letter_topic.clone().unwrap_or_default(),
        ttl_ms: s.ttl.map_or(0, |d| d.as_millis() as i64),
        rebalance_timeout_ms: ms(s.rebalance_timeout),
        expired: match s.expired {
            None => v1::ExpiredAction::Unspecified,
            Some(ExpiredAction::Drop) => v1::ExpiredAction::Drop,
            Some(ExpiredAction::DeadLetter) => v1::ExpiredAction::DeadLetter,
        } as i32,
        max_in_flight: s.max_in_flight.unwrap_or(0),
    }
}

fn mode_from_wire(mode: i32) -> GroupMode {
    if mode == v1::GroupMode::Shared as i32 {
        GroupMode::Shared
    } else {
        GroupMode::Partitioned
    }
}

pub(crate) fn settings_from_wire(c: Option<v1::GroupConfig>) -> GroupSettings {
    let c = c.unwrap_or_default();
    let d = |v: u32| (v > 0).then(|| Duration::from_millis(v as u64));
    GroupSettings {
        mode: mode_from_wire(c.mode),
        session_timeout: d(c.session_timeout_ms),
        heartbeat_interval: d(c.heartbeat_interval_ms),
        lock_duration: d(c.lock_ms),
        max_delivery_attempts: (c.max_delivery_attempts > 0).then_some(c.max_delivery_attempts),
        redelivery_backoff: d(c.redelivery_backoff_ms),
        dead_letter_topic: Some(c.dead_letter_topic).filter(|t| !t.is_empty()),
        ttl: (c.ttl_ms > 0).then(|| Duration::from_millis(c.ttl_ms as u64)),
        rebalance_timeout: d(c.rebalance_timeout_ms),
        expired: match v1::ExpiredAction::try_from(c.expired) {
            Ok(v1::ExpiredAction::Drop) => Some(ExpiredAction::Drop),
            Ok(v1::ExpiredAction::DeadLetter) => Some(ExpiredAction::DeadLetter),
            _ => None,
        },
        max_in_flight: (c.max_in_flight > 0).then_some(c.max_in_flight),
    }
}

impl Admin {
    /// Creates a group reading `topics` (members may add topics when they join).
    pub async fn create_group(&self, name: &str, topics: &[String], settings: &GroupSettings) -> Result<()> {
        if settings.max_in_flight == Some(0) {
            // On the wire 0 means "the default", so a 0 asked for here must not pass silently.
            return Err(ClientError::InvalidArgument(
                "max in-flight must be at least 1 unsettled lease per member and partition".into(),
            ));
        }
        let req = v1::CreateGroupRequest {
            name: name.to_string(),
            topics: topics.to_vec(),
            config: Some(settings_to_wire(settings)),
        };
        let res = self
            .groups_call(&format!("create group {name}"), |mut c| {
                let req = req.clone();
                async move { c.create_group(req).await }
            })
            .await;
        match res {
            Ok(_) => Ok(()),
            // An earlier attempt whose answer was lost may have created it.
            Err((e, true)) if e.code() == Some(ErrorCode::GroupExists) => Ok(()),
            Err((e, _)) => Err(e),
        }
    }

    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let resp = self
            .groups_call("list groups", |mut c| async move { c.list_groups(v1::ListGroupsRequest {}).await })
            .await
            .map_err(|(e, _)| e)?;
        let mut out: Vec<GroupListing> = resp
            .groups
            .into_iter()
            .map(|g| GroupListing { name: g.name, mode: mode_from_wire(g.mode), members: g.members, topics: g.topics })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The group's members and assignment (from the metadata leader) with each
    /// partition's committed offset and lag (from the partition leaders).
    pub async fn describe_group(&self, name: &str) -> Result<GroupDescription> {
        let d = self.describe_group_raw(name).await?;
        let mut partitions = Vec::new();
        for topic in &d.topics {
            let count = match self.client().partition_count(topic).await {
                Ok(n) => n,
                Err(e) if e.is_unknown_topic() => continue, // deleted since
                Err(e) => return Err(e),
            };
            for p in 0..count {
                let a = d.assignments.iter().find(|a| &a.topic == topic && a.partition == p);
                let at = OffsetTarget { group: name, group_id: d.group_id, topic, partition: p };
                let c = fetch_committed(self.client(), &at).await.ok();
                let shared = d.config.as_ref().is_some_and(|c| c.mode == v1::GroupMode::Shared as i32);
                let committed = match &c {
                    Some(c) if shared => Some(c.shared_settled_below),
                    Some(c) => c.has_offset.then_some(c.offset),
                    None => None,
                };
                let lag = c.as_ref().map(|c| c.log_end_offset.saturating_sub(committed.unwrap_or(c.log_start_offset)));
                let in_flight = c.as_ref().filter(|_| shared).map(|c| c.shared_leased);
                let expired = c.as_ref().filter(|_| shared).map(|c| c.shared_expired);
                let dead_lettered = c.as_ref().filter(|_| shared).map(|c| c.shared_dead_lettered);
                partitions.push(GroupPartitionDescription {
                    topic: topic.clone(),
                    partition: p,
                    owner: a.map(|a| a.owner.clone()).filter(|o| !o.is_empty()),
                    generation: a.map_or(0, |a| a.generation),
                    moving_to: a.map(|a| a.moving_to.clone()).filter(|o| !o.is_empty()),
                    committed,
                    log_end_offset: c.map(|c| c.log_end_offset),
                    lag,
                    in_flight,
                    expired,
                    dead_lettered,
                });
            }
        }
        let members = d
            .members
            .into_iter()
            .map(|m| GroupMemberDescription { member_id: m.member_id, client_id: m.client_id, topics: m.topics })
            .collect();
        Ok(GroupDescription {
            name: d.name,
            group_id: d.group_id,
            settings: settings_from_wire(d.config),
            topics: d.topics,
            members,
            partitions,
        })
    }

    async fn describe_group_raw(&self, name: &str) -> Result<v1::GroupDescription> {
        let req = v1::DescribeGroupRequest { name: name.to_string() };
        self.groups_call(&format!("describe group {name}"), |mut c| {
            let req = req.clone();
            async move { c.describe_group(req).await }
        })
        .await
        .map_err(|(e, _)| e)
    }

    /// Deletes a group that has no members (and so its committed offsets).
    pub async fn delete_group(&self, name: &str) -> Result<()> {
        let req = v1::DeleteGroupRequest { name: name.to_string() };
        let res = self
            .groups_call(&format!("delete group {name}"), |mut c| {
                let req = req.clone();
                async move { c.delete_group(req).await }
            })
            .await;
        match res {
            Ok(_) => Ok(()),
            Err((e, true)) if e.code() == Some(ErrorCode::UnknownGroup) => Ok(()),
            Err((e, _)) => Err(e),
        }
    }

    /// Moves the group's committed offset in every partition of its topics to `to`
    /// (clamped into the retained log), so
    /// the next member re-reads the log from there. Refused (GroupNotEmpty) while the
    /// group has members: a live member would overwrite the reset with its own commits.
    /// Returns the new offsets.
    pub async fn reset_offsets(&self, name: &str, to: StartPosition) -> Result<Vec<(String, PartitionId, u64)>> {
        let done = self.reset_offsets_with(name, to, &ResetScope::default()).await?;
        Ok(done.into_iter().map(|r| (r.topic, r.partition, r.offset)).collect())
    }

    /// [`Admin::reset_offsets`] limited to `scope` (one topic, one partition), or only
    /// worked out and not applied (`scope.dry_run`). Each answer says when the offset
    /// asked for was outside the retained log and moved into it.
    pub async fn reset_offsets_with(
        &self,
        name: &str,
        to: StartPosition,
        scope: &ResetScope,
    ) -> Result<Vec<OffsetReset>> {
        let d = self.describe_group_raw(name).await?;
        if d.config.as_ref().is_some_and(|c| c.mode == v1::GroupMode::Shared as i32) {
            return Err(ClientError::InvalidArgument(format!(
                "group {name:?} is a shared group; resetting its offsets is not supported yet (delete and \
                 re-create the group to start over)"
            )));
        }
        if !d.members.is_empty() {
            return Err(ClientError::server(
                ErrorCode::GroupNotEmpty,
                format!(
                    "group {name:?} has {} live member(s); stop its consumers (or wait for their sessions to \
                     expire) before resetting offsets",
                    d.members.len()
                ),
            ));
        }
        if let Some(t) = scope.topic.as_ref().filter(|t| !d.topics.contains(t)) {
            return Err(ClientError::InvalidArgument(format!(
                "group {name:?} does not read topic {t:?}; it reads {}",
                d.topics.join(", ")
            )));
        }
        let mut out = Vec::new();
        for topic in d.topics.iter().filter(|t| scope.topic.as_ref().is_none_or(|s| s == *t)) {
            let count = self.client().partition_count(topic).await?;
            if let Some(p) = scope.partition.filter(|p| *p >= count) {
                return Err(ClientError::InvalidArgument(format!(
                    "topic {topic:?} has partitions 0..{count}; there is no partition {p}"
                )));
            }
            for p in (0..count).filter(|p| scope.partition.is_none_or(|s| s == *p)) {
                let at = OffsetTarget { group: name, group_id: d.group_id, topic, partition: p };
                let bounds = fetch_committed(self.client(), &at).await?;
                let (start, end) = (bounds.log_start_offset, bounds.log_end_offset);
                let mut asked = None;
                let offset = match to {
                    // Like Kafka, an offset outside the retained log is clamped into it.
                    StartPosition::Offset(n) => {
                        asked = Some(n).filter(|n| !(start..=end).contains(n));
                        n.clamp(start, end)
                    }
                    StartPosition::Earliest => start,
                    StartPosition::Latest => end,
                    StartPosition::Timestamp(ts) => self.offset_of(topic, p, Spec::TimestampMs(ts)).await?,
                };
                if !scope.dry_run {
                    self.reset_one(&at, offset).await?;
                }
                out.push(OffsetReset { topic: topic.clone(), partition: p, offset, clamped_from: asked });
            }
        }
        Ok(out)
    }

    /// One reset commit. The metadata leader said the group is empty, so a partition
    /// leader that still sees members has not applied their departure yet: wait briefly
    /// for it to catch up rather than fail.
    async fn reset_one(&self, at: &OffsetTarget<'_>, offset: u64) -> Result<()> {
        let start = tokio::time::Instant::now();
        let mut backoff = self.client().backoff(at.partition as u64);
        loop {
            match commit_offset(self.client(), at, "", 0, offset).await {
                Err(e) if e.code() == Some(ErrorCode::GroupNotEmpty) && start.elapsed() < Duration::from_secs(5) => {
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                other => return other,
            }
        }
    }

    async fn offset_of(&self, topic: &str, partition: PartitionId, spec: Spec) -> Result<u64> {
        Ok(crate::consumer::list_offsets(self.client(), topic, partition, spec).await?.offset)
    }
}

/// Which partitions [`Admin::reset_offsets_with`] resets, and whether it only says what
/// it would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResetScope {
    /// Only this topic of the group's (all of them when `None`).
    pub topic: Option<String>,
    /// Only this partition (of `topic`, or of each topic).
    pub partition: Option<PartitionId>,
    /// Work the new offsets out without committing them.
    pub dry_run: bool,
}

/// One partition's new committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetReset {
    pub topic: String,
    pub partition: PartitionId,
    pub offset: u64,
    /// The offset asked for, when it lay outside the retained log and was moved into it.
    pub clamped_from: Option<u64>,
}
