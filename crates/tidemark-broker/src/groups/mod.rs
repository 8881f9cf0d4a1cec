//! Consumer groups: the replicated definitions, membership and partition assignment
//! (in the metadata group), committed offsets (in each partition's own group), and the
//! metadata leader's in-memory liveness tracking.
//!
//! ```text
//!  JoinGroup ──▶ meta write ──▶ apply: add member, rebalance (sticky, incremental)
//!  Heartbeat ──▶ meta leader memory (no Raft write) ──▶ answers the member's assignment
//!  session expired ──▶ leader proposes LeaveGroup ──▶ apply: remove, its partitions move
//!  partition moves A→B: A sees "revoking" ──▶ A commits its offset (partition group)
//!                       ──▶ A sends ReleasePartitions ──▶ apply: owner B, new generation
//!  CommitOffset (member, generation) ──▶ partition leader ──▶ apply refuses older generations
//! ```
//!
//! A partition's generation changes every time its owner changes, and every commit
//! carries the generation it was made under: a member that lost a partition can no
//! longer commit to it, so no two members of one generation own the same partition.

pub mod apply;
pub mod assign;
pub mod offsets;
pub mod ops;
pub mod sessions;
pub mod share_ops;
pub mod shared;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{BrokerError, Result};

/// How a group shares its topics among members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupMode {
    /// Kafka-style: each partition is owned by one member at a time; order per partition.
    #[default]
    Partitioned,
    /// Queue-style: any member may take any record (leases, acks, dead letters).
    Shared,
}

/// What a shared group does with a record whose TTL (group, topic or record header)
/// passed before it could be delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpiredAction {
    /// Settle it silently; `group describe` counts it as expired.
    Drop,
    /// Lease it once as a dead letter (reason `expired`): the default, because an
    /// expired record then stays inspectable and replayable instead of vanishing, and a
    /// group that wants it gone can still say `drop`.
    #[default]
    DeadLetter,
}

/// Per-group settings. The shared-mode settings are stored and validated now so shared
/// consumption can use them without a format change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupConfig {
    pub mode: GroupMode,
    /// A member not heard from for this long is removed and its partitions move.
    pub session_timeout_ms: u32,
    /// How often members are asked to heartbeat; well below the session timeout so a
    /// couple of lost heartbeats do not cost the membership.
    pub heartbeat_interval_ms: u32,
    /// Shared mode: how long a delivered record stays leased to its member.
    pub lock_ms: u32,
    /// Shared mode: deliveries before a record goes to the dead-letter topic.
    pub max_delivery_attempts: u32,
    /// Shared mode: delay before a released or expired record is delivered again.
    pub redelivery_backoff_ms: u32,
    /// Shared mode: where records go after `max_delivery_attempts` or a reject (none: the
    /// SDK uses `<topic>.<group>.dlq`, creating it on first use).
    pub dead_letter_topic: Option<String>,
    /// Shared mode: records older than this are not delivered (0: no limit). The topic's
    /// `record_ttl_ms` and a record's `tidemark-ttl-ms` header apply too: the shortest wins.
    pub ttl_ms: i64,
    /// Shared mode: what happens to a record whose TTL passed before delivery.
    pub expired: ExpiredAction,
    /// Shared mode: at most this many unsettled leases per member in one partition; a
    /// member at the limit gets nothing new from that partition until it settles some.
    /// Per partition because each partition leases on its own (like Kafka's per
    /// share-partition record-lock limit); it bounds what a slow member can hoard.
    pub max_in_flight: u32,
    /// How long a live owner may take to commit and release a revoking partition. After
    /// that the partition moves anyway (the owner is fenced), so a member whose
    /// application stopped polling cannot hold a handover up forever.
    pub rebalance_timeout_ms: u32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            mode: GroupMode::Partitioned,
            session_timeout_ms: 10_000,
            heartbeat_interval_ms: 1_000,
            lock_ms: 30_000,
            max_delivery_attempts: 5,
            redelivery_backoff_ms: 0,
            dead_letter_topic: None,
            ttl_ms: 0,
            expired: ExpiredAction::DeadLetter,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            rebalance_timeout_ms: 30_000,
        }
    }
}

/// Default per-member, per-partition lease limit of shared groups: enough to keep a
/// member busy across a few polls, small enough that one member cannot hold a backlog.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 500;
/// Upper bound of `max_in_flight` (an acquire leases at most 10 000 records anyway).
pub const MAX_MAX_IN_FLIGHT: u32 = 100_000;

/// Bounds on the session timeout: below the minimum an election alone could expire
/// every member; above the maximum a dead member holds its partitions too long.
pub const MIN_SESSION_TIMEOUT_MS: u32 = 1_000;
pub const MAX_SESSION_TIMEOUT_MS: u32 = 300_000;

impl GroupConfig {
    /// Rejects settings that cannot work, saying what to change.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(BrokerError::InvalidRequest(m));
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&self.session_timeout_ms) {
            return bad(format!(
                "session timeout {} ms is outside [{MIN_SESSION_TIMEOUT_MS}, {MAX_SESSION_TIMEOUT_MS}] ms",
                self.session_timeout_ms
            ));
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms.saturating_mul(3) > self.session_timeout_ms {
            return bad(format!(
                "heartbeat interval {} ms must be positive and at most a third of the session timeout ({} ms)",
                self.heartbeat_interval_ms, self.session_timeout_ms
            ));
        }
        if self.rebalance_timeout_ms < self.heartbeat_interval_ms.saturating_mul(2) {
            return bad(format!(
                "rebalance timeout {} ms must be at least two heartbeat intervals ({} ms)",
                self.rebalance_timeout_ms,
                self.heartbeat_interval_ms.saturating_mul(2)
            ));
        }
        if self.lock_ms == 0 {
            return bad("the lock duration must be positive".into());
        }
        if self.max_delivery_attempts == 0 {
            return bad("max delivery attempts must be at least 1".into());
        }
        if self.ttl_ms < 0 {
            return bad("ttl must be 0 (no limit) or positive".into());
        }
        if !(1..=MAX_MAX_IN_FLIGHT).contains(&self.max_in_flight) {
            return bad(format!(
                "max in-flight {} is outside [1, {MAX_MAX_IN_FLIGHT}] unsettled leases per member and partition",
                self.max_in_flight
            ));
        }
        if let Some(d) = &self.dead_letter_topic {
            tidemark_types::TopicName::new(d.as_str())
                .map_err(|e| BrokerError::InvalidRequest(format!("dead-letter topic: {e}")))?;
        }
        Ok(())
    }
}

/// Who owns one partition for a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAssignment {
    /// The member that owns it now; `None` only transiently inside apply.
    pub owner: Option<String>,
    /// Changes with every change of owner; commits must carry the current one.
    pub generation: u64,
    /// Set while the partition is being revoked from `owner` in favour of this member.
    pub moving_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberMeta {
    /// What the member called itself (for people reading `group describe`).
    pub client_id: String,
    pub topics: BTreeSet<String>,
    /// Who joined it (`User:<name>`; `User:ANONYMOUS` without authentication): with
    /// `--require-auth`, only that principal (or an administrator) may act for it.
    pub principal: String,
}

/// One consumer group, as replicated in the metadata group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMeta {
    /// Never reused: committed offsets are keyed by it, so a group deleted and created
    /// again starts without the old offsets.
    pub id: u64,
    pub name: String,
    pub config: GroupConfig,
    /// Every topic the group was created with or a member subscribed to.
    pub topics: BTreeSet<String>,
    pub members: BTreeMap<String, MemberMeta>,
    pub assignments: BTreeMap<(String, u32), PartitionAssignment>,
    pub next_member: u64,
    pub next_generation: u64,
}

/// One partition of a member's assignment, as answered to its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberPartition {
    pub topic: String,
    pub partition: u32,
    pub generation: u64,
    /// The member must commit and release it.
    pub revoking: bool,
}

impl GroupMeta {
    /// The partitions `member` owns, with those it must give up marked.
    pub fn member_assignment(&self, member: &str) -> Vec<MemberPartition> {
        self.assignments
            .iter()
            .filter(|(_, a)| a.owner.as_deref() == Some(member))
            .map(|((topic, partition), a)| MemberPartition {
                topic: topic.clone(),
                partition: *partition,
                generation: a.generation,
                revoking: a.moving_to.is_some(),
            })
            .collect()
    }
}

/// Group names follow the topic-name rules: 1 to 249 of `[A-Za-z0-9._-]`.
pub fn validate_group_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= tidemark_types::names::MAX_TOPIC_NAME_LEN
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(BrokerError::InvalidRequest(format!(
            "group name {name:?} is not valid: use 1 to 249 ASCII letters, digits, '.', '_' and '-'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_are_valid_and_bad_values_are_named() {
        assert!(GroupConfig::default().validate().is_ok());
        let c = GroupConfig { session_timeout_ms: 10, ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("session timeout"));
        let c = GroupConfig { heartbeat_interval_ms: 5_000, ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("a third"));
        let c = GroupConfig { dead_letter_topic: Some("bad name".into()), ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("dead-letter"));
        assert!(GroupConfig { max_delivery_attempts: 0, ..Default::default() }.validate().is_err());
        assert!(GroupConfig { ttl_ms: -1, ..Default::default() }.validate().is_err());
        let c = GroupConfig { max_in_flight: 0, ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("max in-flight"));
        assert!(GroupConfig { max_in_flight: MAX_MAX_IN_FLIGHT + 1, ..Default::default() }.validate().is_err());
        let c = GroupConfig { rebalance_timeout_ms: 1_500, ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("rebalance timeout"));
        assert!(validate_group_name("billing.v2").is_ok());
        assert!(validate_group_name("").is_err() && validate_group_name("a/b").is_err());
    }
}
