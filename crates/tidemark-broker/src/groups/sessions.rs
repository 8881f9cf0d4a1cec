//! Member liveness, kept in the metadata leader's memory: heartbeats are not Raft writes.
//! When a session expires the leader proposes the member's removal. A new leader knows
//! nothing of the old one's clock, so it gives every member a fresh session timeout
//! (the map belongs to one leader term and is emptied when the term changes).
//!
//! The same clock bounds handovers: a partition revoking for longer than the group's
//! rebalance timeout (its owner is alive but does not release it) is moved anyway.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use tokio::time::Instant;

use super::apply::GroupCommand;
use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::meta::MetaCommand;

/// How often the leader looks for expired sessions.
const CHECK_EVERY: Duration = Duration::from_millis(200);

#[derive(Default)]
pub struct Sessions {
    inner: Mutex<SessionMap>,
    /// The term in which this node last confirmed it may answer from its metadata.
    read_term: AtomicU64,
}

/// A partition being revoked: (group, topic, partition, owner's generation).
type Revoke = (String, String, u32, u64);
/// Stuck partitions by group: (topic, partition, owner's generation).
type StuckByGroup = Vec<(String, Vec<(String, u32, u64)>)>;

#[derive(Default)]
struct SessionMap {
    term: u64,
    last_seen: HashMap<(String, String), Instant>,
    revoking_since: HashMap<Revoke, Instant>,
}

impl SessionMap {
    fn for_term(&mut self, term: u64) -> &mut HashMap<(String, String), Instant> {
        self.new_term(term);
        &mut self.last_seen
    }

    fn new_term(&mut self, term: u64) {
        if self.term != term {
            self.term = term;
            self.last_seen.clear();
            self.revoking_since.clear();
        }
    }
}

impl Sessions {
    /// Records that `member` was heard from in leader term `term`.
    pub fn touch(&self, term: u64, group: &str, member: &str) {
        self.touch_at(term, group, member, Instant::now());
    }

    fn touch_at(&self, term: u64, group: &str, member: &str, at: Instant) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.for_term(term).insert((group.to_string(), member.to_string()), at);
    }

    /// Members whose session expired at `now`, by group. Members seen for the first time
    /// in this term start their session now; entries of departed members are dropped.
    fn expired(&self, term: u64, members: &[(String, String, Duration)], now: Instant) -> Vec<(String, Vec<String>)> {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let seen = map.for_term(term);
        seen.retain(|k, _| members.iter().any(|(g, m, _)| (g, m) == (&k.0, &k.1)));
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for (group, member, timeout) in members {
            let last = *seen.entry((group.clone(), member.clone())).or_insert(now);
            if now.saturating_duration_since(last) > *timeout {
                match out.last_mut() {
                    Some((g, ms)) if g == group => ms.push(member.clone()),
                    _ => out.push((group.clone(), vec![member.clone()])),
                }
            }
        }
        out
    }
}

impl Sessions {
    /// Revoking partitions whose owner has held them past `timeout`, by group. A
    /// partition seen revoking for the first time in this term starts its clock now.
    fn stuck(&self, term: u64, revoking: &[(Revoke, Duration)], now: Instant) -> StuckByGroup {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.new_term(term);
        map.revoking_since.retain(|k, _| revoking.iter().any(|(r, _)| r == k));
        let mut out: StuckByGroup = Vec::new();
        for (key, timeout) in revoking {
            let since = *map.revoking_since.entry(key.clone()).or_insert(now);
            if now.saturating_duration_since(since) > *timeout {
                let (group, topic, partition, generation) = key.clone();
                match out.last_mut() {
                    Some((g, ps)) if *g == group => ps.push((topic, partition, generation)),
                    _ => out.push((group, vec![(topic, partition, generation)])),
                }
            }
        }
        out
    }
}

impl Broker {
    /// The metadata group's current term as this node sees it.
    pub(crate) fn meta_term(&self) -> u64 {
        self.meta_raft.metrics().borrow_watched().current_term
    }

    fn is_meta_leader(&self) -> bool {
        let metrics = self.meta_raft.metrics();
        let m = metrics.borrow_watched();
        m.state == openraft::ServerState::Leader && m.current_leader == Some(self.node_id())
    }

    /// Confirms this node leads the metadata group and has applied everything committed
    /// before its term (once per term), so membership answered from memory is current.
    pub(crate) async fn meta_leader_ready(&self) -> Result<u64> {
        if !self.is_meta_leader() {
            return Err(self.not_meta_leader());
        }
        let term = self.meta_term();
        if self.sessions.read_term.load(Ordering::Acquire) == term && self.lease_holds(&self.meta_raft) {
            return Ok(term);
        }
        let wait = Duration::from_millis(self.cfg.timing.election_max_ms * 2);
        let unavailable = |why: &str| BrokerError::Unavailable(format!("the metadata leader {why}"));
        match tokio::time::timeout(wait, self.meta_raft.ensure_linearizable(openraft::ReadPolicy::ReadIndex)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(self.not_meta_leader()),
            Err(_) => return Err(unavailable("could not confirm its leadership in time")),
        }
        let last = self.meta_raft.metrics().borrow_watched().last_log_index;
        if self.meta_raft.wait(Some(wait)).applied_index_at_least(last, "metadata applied").await.is_err() {
            return Err(unavailable("is still applying its log"));
        }
        self.sessions.read_term.store(term, Ordering::Release);
        Ok(term)
    }

    /// One round of the expiry check: proposes the removal of expired members.
    async fn expire_sessions(&self) {
        if !self.is_meta_leader() {
            return;
        }
        let term = self.meta_term();
        let members: Vec<(String, String, Duration)> = {
            let state = self.meta.read();
            state
                .groups
                .values()
                .flat_map(|g| {
                    let timeout = Duration::from_millis(g.config.session_timeout_ms as u64);
                    g.members.keys().map(move |m| (g.name.clone(), m.clone(), timeout))
                })
                .collect()
        };
        for (group, members) in self.sessions.expired(term, &members, Instant::now()) {
            tracing::info!(%group, ?members, "consumer session expired; removing the member(s)");
            let cmd = MetaCommand::Group(GroupCommand::Leave { group: group.clone(), members });
            if let Err(e) = self.meta_write(cmd).await {
                tracing::debug!(%group, error = %e, "could not remove expired members; retrying next round");
            }
        }
        let revoking = self.revoking_partitions();
        for (group, partitions) in self.sessions.stuck(term, &revoking, Instant::now()) {
            tracing::warn!(%group, ?partitions, "revoking partitions not released within the rebalance timeout; moving them");
            let cmd = MetaCommand::Group(GroupCommand::ForceRelease { group: group.clone(), partitions });
            if let Err(e) = self.meta_write(cmd).await {
                tracing::debug!(%group, error = %e, "could not move stuck partitions; retrying next round");
            }
        }
    }

    /// Every partition being revoked, with its group's rebalance timeout.
    fn revoking_partitions(&self) -> Vec<(Revoke, Duration)> {
        let state = self.meta.read();
        let mut out = Vec::new();
        for g in state.groups.values() {
            let timeout = Duration::from_millis(g.config.rebalance_timeout_ms as u64);
            for ((topic, partition), a) in g.assignments.iter().filter(|(_, a)| a.moving_to.is_some()) {
                out.push(((g.name.clone(), topic.clone(), *partition, a.generation), timeout));
            }
        }
        out
    }
}

/// Runs until the broker is dropped.
pub async fn run(broker: Weak<Broker>) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let Some(b) = broker.upgrade() else { return };
        b.expire_sessions().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sessions_expire_and_a_new_term_starts_them_afresh() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let timeout = Duration::from_secs(10);
        let members = vec![("g".to_string(), "a".to_string(), timeout), ("g".to_string(), "b".to_string(), timeout)];
        assert!(s.expired(1, &members, t0).is_empty(), "first sight starts the session");
        s.touch_at(1, "g", "a", t0 + Duration::from_secs(5));
        let later = t0 + Duration::from_secs(11);
        assert_eq!(s.expired(1, &members, later), vec![("g".to_string(), vec!["b".to_string()])]);
        assert!(s.expired(2, &members, later).is_empty(), "a new leader term gives everyone a fresh session");
        assert_eq!(s.expired(2, &members[..1], later + timeout * 2).len(), 1);
        assert_eq!(s.inner.lock().unwrap().last_seen.len(), 1, "departed members are forgotten");
    }

    #[tokio::test]
    async fn a_handover_stuck_past_the_rebalance_timeout_is_reported_once_per_generation() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let timeout = Duration::from_secs(30);
        let key = |generation| (("g".to_string(), "t".to_string(), 3, generation), timeout);
        assert!(s.stuck(1, &[key(7)], t0).is_empty(), "the clock starts at first sight");
        assert!(s.stuck(1, &[key(7)], t0 + Duration::from_secs(29)).is_empty());
        let late = t0 + Duration::from_secs(31);
        assert_eq!(s.stuck(1, &[key(7)], late), vec![("g".to_string(), vec![("t".to_string(), 3, 7)])]);
        assert!(s.stuck(1, &[key(9)], late).is_empty(), "a new move of the partition starts a new clock");
        assert!(s.stuck(2, &[key(9)], late + timeout * 2).is_empty(), "a new leader starts every clock afresh");
    }
}
