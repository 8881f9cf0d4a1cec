//! Repair after damage to synced data: a replica that may have lost entries it
//! acknowledged must not vote, or campaign, until its peers have given them back.
//!
//! ```text
//!  engine reports damage (segment log: CRC failure in synced data, truncation)
//!    ▼  at node start, before any group runs (begin_after_damage)
//!  every group held here: log and local snapshots deleted; vote term bumped; REPAIR = bumped term
//!    ▼  the damage report is cleared only once all of that is durable
//!  group starts with elections off; vote requests to it are refused (GroupRegistry)
//!    ▼  its old leader is refused too (lower vote), so the others elect a leader without it
//!  leader sends snapshot + every retained entry (the path a wiped follower takes)
//!    ▼  an entry of the bumped term or later is applied here (watch)
//!  REPAIR cleared, elections on: the replica counts again
//! ```
//!
//! Why this is safe: an entry acknowledged by a majority that included this replica is,
//! with this copy gone, perhaps on a minority only. Raft's guarantee that every new
//! leader holds it rests on every voter keeping what it acknowledged, so this replica
//! must not vote until it holds everything again. Any leader of a term at or after the
//! bumped one was elected without this replica's vote (its vote stayed below that term,
//! and it refuses requests since), so its log holds every committed entry; once an
//! entry of such a term is applied here, everything before it is here too.
//!
//! The whole log is dropped rather than only the damaged part because the storage layer
//! cannot tell which groups a damaged frame belonged to, and a replica cannot find a gap
//! it never knew about. Catch-up is the one every wiped follower already takes.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tidemark_storage::{SharedEngine, StorageError, WriteBatch};
use tidemark_types::{GroupId, NodeId};

use crate::checkpoint::{BASE, CHECKPOINT};
use crate::flusher::Flusher;
use crate::log_store::{state_key, LOG_TREE, PURGED, STATE_TREE, VOTE};
use crate::types::{Raft, Vote};

/// The state key that marks a group under repair; its value is the bumped term (u64 BE).
pub(crate) const REPAIR: u8 = b'r';

/// The groups of this node under repair: they refuse vote requests.
#[derive(Default, Debug)]
pub struct Repairs {
    groups: Mutex<HashSet<GroupId>>,
}

impl Repairs {
    pub fn is_repairing(&self, group: GroupId) -> bool {
        self.lock().contains(&group)
    }

    /// How many groups are under repair, for status and logs.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<GroupId>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn corrupt(message: String) -> StorageError {
    StorageError::Corrupt { op: "repair", message }
}

/// Turns the engine's damage report, if any, into a repair of every group this node
/// holds; returns how many. Call once at node start, before any group runs. Blocking.
pub fn begin_after_damage(engine: &SharedEngine, node: NodeId) -> Result<usize, StorageError> {
    let Some(report) = engine.damage_report() else { return Ok(0) };
    let mut votes = Vec::new();
    let mut state = WriteBatch::new();
    for (key, value) in engine.range(STATE_TREE, &[], None, usize::MAX)? {
        let Ok(head) = <[u8; 8]>::try_from(&key[..key.len().min(8)]) else { continue };
        let group = GroupId::from_be_bytes(head);
        match key.get(8).copied() {
            Some(VOTE) if key.len() == 9 => {
                let vote: Vote = crate::codec::decode(&value)
                    .map_err(|e| corrupt(format!("vote of group {group:#x} is unreadable: {e}")))?;
                votes.push((group, vote));
            }
            Some(PURGED | CHECKPOINT | BASE) if key.len() == 9 => state.delete(key),
            _ => {}
        }
    }
    for (group, vote) in &votes {
        let term = vote.leader_id().term + 1;
        let bumped = bincode::serialize(&Vote::new(term, node)).map_err(|e| corrupt(e.to_string()))?;
        state.put(state_key(*group, VOTE).to_vec(), bumped);
        state.put(state_key(*group, REPAIR).to_vec(), term.to_be_bytes().to_vec());
    }
    engine.write(STATE_TREE, state)?;
    engine.delete_range(LOG_TREE, &[], None)?;
    engine.flush()?;
    engine.clear_damage()?;
    tracing::error!(
        damage = %report,
        groups = votes.len(),
        "synced data on this node's disk was damaged: every replica here starts over from its peers, \
         and none votes until it has caught up"
    );
    Ok(votes.len())
}

/// The term group `group` must catch up to, if it is under repair; marks it as such.
pub(crate) fn pending(engine: &SharedEngine, repairs: &Repairs, group: GroupId) -> Result<Option<u64>, String> {
    let value = engine.get(STATE_TREE, &state_key(group, REPAIR)).map_err(|e| e.to_string())?;
    let Some(value) = value else { return Ok(None) };
    let term = <[u8; 8]>::try_from(value.as_slice())
        .map(u64::from_be_bytes)
        .map_err(|_| format!("repair mark of group {group:#x} is unreadable"))?;
    repairs.lock().insert(group);
    Ok(Some(term))
}

/// Ends the repair of `group` once it has applied an entry of `term` or later.
pub(crate) async fn watch(
    raft: Raft,
    engine: SharedEngine,
    flusher: Flusher,
    repairs: Arc<Repairs>,
    group: GroupId,
    term: u64,
) {
    let caught_up = |m: &crate::types::RaftMetrics| m.last_applied.as_ref().is_some_and(|l| l.leader_id.term >= term);
    if raft.wait(None).metrics(caught_up, "repair").await.is_err() {
        return; // the group stopped; the mark stays for its next start
    }
    // The entries that prove the catch-up must be durable before the mark goes.
    let cleared = async {
        flusher.flush().await?;
        engine.delete(STATE_TREE, &state_key(group, REPAIR))?;
        flusher.flush().await
    };
    if let Err(e) = cleared.await {
        tracing::error!(group = format!("{group:#x}"), error = %e, "could not end the repair; it stays until the next start");
        return;
    }
    repairs.lock().remove(&group);
    raft.runtime_config().elect(true);
    tracing::info!(group = format!("{group:#x}"), term, "replica repaired from its peers; it votes again");
}
