//! Shared (queue-style) consumption state of one partition, per group: which records
//! are leased to which member until when, how often each was delivered, and which are
//! settled. It lives in the partition state machine (a tagged command) so every replica
//! decides leases identically, at apply time, with the leader's clock carried in the
//! command; it is in the partition snapshot.
//!
//! ```text
//!  available ──acquire──▶ leased(member, until) ──ack──▶ done
//!      ▲                     │ release / lease expired (after backoff)
//!      └─────────────────────┘
//!  delivered max_attempts times, rejected, or past its TTL (expired action dead-letter)
//!      ──▶ leased as a dead letter (the member moves it to the dead-letter topic, then
//!          acks) ; past its TTL with expired action drop ──▶ done, undelivered
//! ```
//!
//! TTL: a free record is expired when the group's or the topic's TTL (the shorter, from
//! the newest timestamp of its batch) or its own `tidemark-ttl-ms` header (from its own
//! timestamp) has passed on the lease clock: whichever deadline comes first wins, so the
//! producer, the topic owner and the group owner can each shorten a record's life and
//! none can lengthen what another set. A leased record is not expired under its member.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tidemark_raft::{Command, CommandResponse};
use tidemark_types::Offset;

use super::ExpiredAction;
use crate::partition::{IndexEntry, PartitionState};

/// The first byte of a shared-consumption command (appends 1, commits 2).
pub const TAG_SHARE: u8 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryState {
    Leased {
        member: String,
        until_ms: i64,
    },
    /// Released or expired: may be delivered again from `after_ms`.
    Available {
        after_ms: i64,
    },
    Done,
}

/// Why a record is handed out as a dead letter (the SDK writes it as the
/// `tidemark-dlq-reason` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeadReason {
    MaxAttempts,
    Rejected,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Real deliveries (dead-letter leases do not count): what the dead letter reports.
    pub attempts: u32,
    pub state: DeliveryState,
    /// Set once the record is to be dead-lettered; it never goes back to normal delivery.
    pub dead: Option<DeadReason>,
}

impl Delivery {
    fn is_free(&self, now_ms: i64) -> bool {
        match &self.state {
            DeliveryState::Leased { until_ms, .. } => *until_ms <= now_ms,
            DeliveryState::Available { after_ms } => *after_ms <= now_ms,
            DeliveryState::Done => false,
        }
    }

    fn leased_to(&self, member: &str, now_ms: i64) -> bool {
        matches!(&self.state, DeliveryState::Leased { member: m, until_ms } if m == member && *until_ms > now_ms)
    }
}

/// One group's shared cursor in one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedCursor {
    /// Every offset below is settled.
    pub start: Offset,
    /// Offsets at or above `start` that were delivered at least once.
    pub records: BTreeMap<Offset, Delivery>,
    /// Records found past their TTL (dropped or dead-lettered), since the group began.
    pub expired: u64,
    /// Dead letters acknowledged (moved to the dead-letter topic), for any reason.
    pub dead_lettered: u64,
}

/// The group settings an acquire applies (carried in the command, so a settings change
/// cannot make replicas disagree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareLimits {
    pub lock_ms: u32,
    pub max_attempts: u32,
    /// The shorter of the group's and the topic's TTL (0: none).
    pub ttl_ms: i64,
    pub backoff_ms: u32,
    pub expired: ExpiredAction,
    /// Unsettled leases a member may hold in this partition.
    pub max_in_flight: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Settle {
    Ack,
    Release,
    Reject,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShareCommand {
    Acquire { group_id: u64, member: String, max_records: u32, limits: ShareLimits, now_ms: i64 },
    Settle { group_id: u64, member: String, offsets: Vec<(Offset, Settle)>, backoff_ms: u32, now_ms: i64 },
}

/// One leased record: its offset, how many times it has been delivered (this one
/// included; for a dead letter, the deliveries before it), and whether (and why) it is
/// to be dead-lettered instead of processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leased {
    pub offset: Offset,
    pub attempts: u32,
    pub dead_letter: Option<DeadReason>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShareResult {
    Acquired(Vec<Leased>),
    /// How many of the offsets were settled (the others were not leased to the member).
    Settled(u32),
    Rejected,
}

impl ShareCommand {
    pub fn encode(&self) -> Command {
        let body = bincode::serialize(self).expect("share commands always encode");
        let mut b = BytesMut::with_capacity(body.len() + 1);
        b.put_u8(TAG_SHARE);
        b.put_slice(&body);
        Command(b.freeze())
    }
}

pub fn is_share(command: &Command) -> bool {
    command.0.first() == Some(&TAG_SHARE)
}

pub fn apply_share(state: &mut PartitionState, command: &Command) -> CommandResponse {
    let result = match tidemark_raft::codec::decode::<ShareCommand>(&command.0[1..]) {
        Ok(ShareCommand::Acquire { group_id, member, max_records, limits, now_ms }) => {
            ShareResult::Acquired(acquire(state, group_id, &member, max_records, limits, now_ms))
        }
        Ok(ShareCommand::Settle { group_id, member, offsets, backoff_ms, now_ms }) => {
            let cursor = state.shared.entry(group_id).or_default();
            let n = cursor.settle(&member, &offsets, backoff_ms, now_ms);
            cursor.compact();
            ShareResult::Settled(n)
        }
        Err(_) => ShareResult::Rejected,
    };
    CommandResponse(Bytes::from(bincode::serialize(&result).expect("results always encode")))
}

/// Whether an acquire by `member` could lease (or expire) anything now: lets the leader
/// skip a Raft write when a long poll has nothing to hand out, or the member is at its
/// in-flight limit.
pub fn has_available(state: &PartitionState, group_id: u64, member: &str, max_in_flight: u32, now_ms: i64) -> bool {
    let start = state.shared.get(&group_id).map_or(0, |c| c.start).max(state.log_start_offset);
    let Some(cursor) = state.shared.get(&group_id) else { return start < state.next_offset };
    if cursor.held_by(member, now_ms) >= max_in_flight as usize {
        return false;
    }
    (start..state.next_offset).any(|o| cursor.records.get(&o).is_none_or(|d| d.is_free(now_ms)))
}

/// The TTL of a shared group on a topic: the shorter of the two, 0 meaning none.
pub fn shortest_ttl(group_ttl_ms: i64, topic_ttl_ms: i64) -> i64 {
    [group_ttl_ms, topic_ttl_ms].into_iter().filter(|t| *t > 0).min().unwrap_or(0)
}

/// When a record stops being deliverable: its TTL header's deadline, and the group or
/// topic TTL counted from its batch's newest timestamp (batch granularity: the state
/// keeps one timestamp per batch, and the newest never expires a record early).
struct Expiry<'a> {
    index: &'a [IndexEntry],
    record_deadlines: &'a BTreeMap<Offset, i64>,
    ttl_ms: i64,
}

impl Expiry<'_> {
    fn expired(&self, o: Offset, now_ms: i64) -> bool {
        if self.record_deadlines.get(&o).is_some_and(|d| *d < now_ms) {
            return true;
        }
        let i = self.index.partition_point(|e| e.next_offset() <= o);
        self.ttl_ms > 0 && self.index.get(i).is_some_and(|e| e.max_timestamp.saturating_add(self.ttl_ms) < now_ms)
    }
}

fn acquire(
    state: &mut PartitionState,
    group_id: u64,
    member: &str,
    max: u32,
    limits: ShareLimits,
    now_ms: i64,
) -> Vec<Leased> {
    let PartitionState { log_start_offset, next_offset, index, shared, record_deadlines, .. } = state;
    let expiry = Expiry { index, record_deadlines, ttl_ms: limits.ttl_ms };
    let cursor = shared.entry(group_id).or_default();
    cursor.start = cursor.start.max(*log_start_offset);
    let room = (max as usize).min((limits.max_in_flight as usize).saturating_sub(cursor.held_by(member, now_ms)));
    let mut out = Vec::new();
    for o in cursor.start..*next_offset {
        if out.len() >= room {
            break;
        }
        let d = cursor.records.entry(o).or_insert(Delivery {
            attempts: 0,
            state: DeliveryState::Available { after_ms: 0 },
            dead: None,
        });
        if !d.is_free(now_ms) {
            continue;
        }
        if d.dead.is_none() && expiry.expired(o, now_ms) {
            cursor.expired += 1;
            match limits.expired {
                ExpiredAction::Drop => {
                    d.state = DeliveryState::Done;
                    continue;
                }
                ExpiredAction::DeadLetter => d.dead = Some(DeadReason::Expired),
            }
        }
        if d.dead.is_none() && d.attempts >= limits.max_attempts {
            d.dead = Some(DeadReason::MaxAttempts);
        }
        if d.dead.is_none() {
            d.attempts += 1;
        }
        d.state = DeliveryState::Leased { member: member.to_string(), until_ms: now_ms + limits.lock_ms as i64 };
        out.push(Leased { offset: o, attempts: d.attempts, dead_letter: d.dead });
    }
    cursor.compact();
    out
}

impl SharedCursor {
    fn settle(&mut self, member: &str, offsets: &[(Offset, Settle)], backoff_ms: u32, now_ms: i64) -> u32 {
        let mut n = 0;
        for (o, how) in offsets {
            let Some(d) = self.records.get_mut(o) else { continue };
            if !matches!(&d.state, DeliveryState::Leased { member: m, .. } if m == member) {
                continue; // The lease expired and moved on: this member no longer decides.
            }
            d.state = match how {
                Settle::Ack => {
                    self.dead_lettered += u64::from(d.dead.is_some());
                    DeliveryState::Done
                }
                Settle::Release => DeliveryState::Available { after_ms: now_ms + backoff_ms as i64 },
                // Unprocessable: offered once more, as a dead letter, keeping its count.
                Settle::Reject => {
                    d.dead.get_or_insert(DeadReason::Rejected);
                    DeliveryState::Available { after_ms: now_ms }
                }
            };
            n += 1;
        }
        n
    }

    /// Unexpired leases `member` holds here.
    fn held_by(&self, member: &str, now_ms: i64) -> usize {
        self.records.values().filter(|d| d.leased_to(member, now_ms)).count()
    }

    /// Moves `start` past settled records so the map only holds the unsettled window.
    fn compact(&mut self) {
        while let Some(d) = self.records.get(&self.start) {
            if d.state != DeliveryState::Done {
                break;
            }
            self.records.remove(&self.start);
            self.start += 1;
        }
    }
}

#[cfg(test)]
#[path = "shared_tests.rs"]
mod tests;
