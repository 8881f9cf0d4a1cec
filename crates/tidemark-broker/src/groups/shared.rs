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
//!  delivered max_attempts times, or rejected ──▶ leased as a dead letter (the member
//!  moves it to the dead-letter topic, then acks) ; older than ttl ──▶ done, undelivered
//! ```

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tidemark_raft::{Command, CommandResponse};
use tidemark_types::Offset;

use crate::partition::PartitionState;

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub attempts: u32,
    pub state: DeliveryState,
}

/// One group's shared cursor in one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedCursor {
    /// Every offset below is settled.
    pub start: Offset,
    /// Offsets at or above `start` that were delivered at least once.
    pub records: BTreeMap<Offset, Delivery>,
}

/// The group settings an acquire applies (carried in the command, so a settings change
/// cannot make replicas disagree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareLimits {
    pub lock_ms: u32,
    pub max_attempts: u32,
    pub ttl_ms: i64,
    pub backoff_ms: u32,
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
/// included), and whether it is to be dead-lettered instead of processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leased {
    pub offset: Offset,
    pub attempts: u32,
    pub dead_letter: bool,
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
    let result = match bincode::deserialize::<ShareCommand>(&command.0[1..]) {
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

/// Whether an acquire could lease anything now: lets the leader skip a Raft write when
/// a long poll has nothing to hand out.
pub fn has_available(state: &PartitionState, group_id: u64, now_ms: i64) -> bool {
    let start = state.shared.get(&group_id).map_or(0, |c| c.start).max(state.log_start_offset);
    let Some(cursor) = state.shared.get(&group_id) else { return start < state.next_offset };
    (start..state.next_offset).any(|o| match cursor.records.get(&o) {
        None => true,
        Some(d) => match &d.state {
            DeliveryState::Leased { until_ms, .. } => *until_ms <= now_ms,
            DeliveryState::Available { after_ms } => *after_ms <= now_ms,
            DeliveryState::Done => false,
        },
    })
}

fn acquire(
    state: &mut PartitionState,
    group_id: u64,
    member: &str,
    max: u32,
    limits: ShareLimits,
    now_ms: i64,
) -> Vec<Leased> {
    let PartitionState { log_start_offset, next_offset, index, shared, .. } = state;
    let expired_before = (limits.ttl_ms > 0).then(|| now_ms.saturating_sub(limits.ttl_ms));
    // TTL at batch granularity: the newest record of the batch decides.
    let too_old = |o: Offset| {
        let i = index.partition_point(|e| e.next_offset() <= o);
        expired_before.is_some_and(|t| index.get(i).is_some_and(|e| e.max_timestamp < t))
    };
    let cursor = shared.entry(group_id).or_default();
    cursor.start = cursor.start.max(*log_start_offset);
    let mut out = Vec::new();
    for o in cursor.start..*next_offset {
        if out.len() >= max as usize {
            break;
        }
        let d = cursor
            .records
            .entry(o)
            .or_insert(Delivery { attempts: 0, state: DeliveryState::Available { after_ms: 0 } });
        let free = match &d.state {
            DeliveryState::Leased { until_ms, .. } => *until_ms <= now_ms,
            DeliveryState::Available { after_ms } => *after_ms <= now_ms,
            DeliveryState::Done => false,
        };
        if !free {
            continue;
        }
        if too_old(o) {
            d.state = DeliveryState::Done;
            continue;
        }
        let dead_letter = d.attempts >= limits.max_attempts;
        if !dead_letter {
            d.attempts += 1;
        }
        d.state = DeliveryState::Leased { member: member.to_string(), until_ms: now_ms + limits.lock_ms as i64 };
        out.push(Leased { offset: o, attempts: d.attempts, dead_letter });
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
                Settle::Ack => DeliveryState::Done,
                Settle::Release => DeliveryState::Available { after_ms: now_ms + backoff_ms as i64 },
                // Unprocessable: offered once more, as a dead letter.
                Settle::Reject => {
                    d.attempts = u32::MAX;
                    DeliveryState::Available { after_ms: now_ms }
                }
            };
            n += 1;
        }
        n
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
