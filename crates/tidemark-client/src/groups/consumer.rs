//! [`GroupConsumer`]: a member of a partitioned consumer group. The server decides who
//! reads which partition; this reads the partitions it is given with the plain
//! [`Consumer`] machinery (leader changes, retries, long polls) and commits progress.
//!
//! ```text
//! poll ─▶ maintain: expired? (re)join in a task │ new assignment? revoke (commit, then
//!      │            release in a task) + look up gained partitions' starts in tasks
//!      │            finished lookups? start reading │ auto-commit due? commit positions
//!      └▶ per-topic Consumer::poll ─▶ records (positions advance as records are handed out)
//! ```
//!
//! Revocations and commits happen only between polls, when every record handed out has
//! been processed (Kafka's contract): committing the handed-out position before releasing
//! a partition is what makes a clean handover redeliver nothing.
//!
//! `poll(timeout)` returns within its timeout plus a bounded slack (two heartbeat
//! intervals at most, for a revoke commit and an auto-commit): everything else the
//! membership needs runs in [`Background`] tasks that outlive a poll, and `close` gives
//! up after the session timeout, past which the server moves the partitions anyway.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use tidemark_types::{ErrorCode, PartitionId};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::background::{Background, Key, Start, StartSpec};
use super::config::GroupConsumerConfig;
use super::member::{self, Assigned, Beat, Membership};
use super::route::{commit_offset, OffsetTarget};
use crate::admin::Admin;
use crate::client::Client;
use crate::consumer::{Consumer, ConsumerRecord};
use crate::error::{ClientError, Result};

/// A partition this member owns.
#[derive(Debug, Clone)]
struct Owned {
    generation: u64,
    /// The offset after the last record handed to the application.
    consumed: u64,
    committed: Option<u64>,
}

/// One member of a partitioned consumer group. Not shared: one member, one reader.
pub struct GroupConsumer {
    client: Client,
    admin: Admin,
    config: GroupConsumerConfig,
    membership: Membership,
    beat: Arc<Mutex<Beat>>,
    heartbeat: Option<JoinHandle<()>>,
    readers: BTreeMap<String, Consumer>,
    owned: BTreeMap<Key, Owned>,
    buffer: VecDeque<ConsumerRecord>,
    next_auto_commit: Instant,
    closed: bool,
    /// The server forgot this member: a join is (or must be) under way.
    expired: bool,
    /// The newest assignment applied, which a finished start lookup must still match.
    assigned: Vec<Assigned>,
    background: Background,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("group", &self.config.group)
            .field("member", &self.membership.member_id)
            .field("assignment", &self.assignment())
            .finish()
    }
}

impl GroupConsumer {
    /// Joins the group and starts reading what the server assigns.
    pub async fn new(client: Client, config: GroupConsumerConfig) -> Result<GroupConsumer> {
        config.validate()?;
        let mut readers = BTreeMap::new();
        for t in &config.topics {
            let reader = Consumer::new(client.clone(), t, Some(vec![]), config.start, config.consumer.clone()).await?;
            readers.insert(t.clone(), reader);
        }
        let admin = client.admin();
        let (membership, assignment) =
            member::join(&admin, &config.group, &config.topics, &config.client_id, config.create_group, false).await?;
        let next_auto_commit = Instant::now() + config.auto_commit_interval;
        let mut me = GroupConsumer {
            client,
            admin,
            config,
            membership,
            beat: Arc::default(),
            heartbeat: None,
            readers,
            owned: BTreeMap::new(),
            buffer: VecDeque::new(),
            next_auto_commit,
            closed: false,
            expired: false,
            assigned: Vec::new(),
            background: Background::default(),
        };
        me.start_heartbeat();
        me.sync(assignment).await;
        let started = me.background.wait_started().await;
        me.start_partitions(started)?;
        Ok(me)
    }

    pub fn group(&self) -> &str {
        &self.config.group
    }

    /// The id the server gave this member (it changes if the member has to rejoin).
    pub fn member_id(&self) -> &str {
        &self.membership.member_id
    }

    /// The partitions this member reads now.
    pub fn assignment(&self) -> Vec<(String, PartitionId)> {
        self.owned.keys().cloned().collect()
    }

    /// The partitions this member reads now, each with the generation the server
    /// assigned it under: one owner per (partition, generation), so tests can check that
    /// no two members ever held the same one.
    pub fn owned_with_generation(&self) -> BTreeMap<(String, PartitionId), u64> {
        self.owned.iter().map(|(k, o)| (k.clone(), o.generation)).collect()
    }

    /// The offset after the last record handed out, per owned partition.
    pub fn positions(&self) -> BTreeMap<(String, PartitionId), u64> {
        self.owned.iter().map(|(k, o)| (k.clone(), o.consumed)).collect()
    }

    /// Waits up to `timeout` for records of the partitions this member owns.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        self.poll_up_to(timeout, usize::MAX).await
    }

    /// Like [`Self::poll`], handing out at most `max` records; the rest stay buffered
    /// (not consumed, so not committed) for the next call.
    pub async fn poll_up_to(&mut self, timeout: Duration, max: usize) -> Result<Vec<ConsumerRecord>> {
        if self.buffer.is_empty() {
            self.fill(Instant::now() + timeout).await?;
        }
        let n = max.min(self.buffer.len());
        let records: Vec<ConsumerRecord> = self.buffer.drain(..n).collect();
        for r in &records {
            self.mark_consumed(r);
        }
        Ok(records)
    }

    /// The next record, waiting as long as it takes.
    pub async fn next(&mut self) -> Result<ConsumerRecord> {
        loop {
            if let Some(r) = self.buffer.pop_front() {
                self.mark_consumed(&r);
                return Ok(r);
            }
            self.fill(Instant::now() + Duration::from_secs(1)).await?;
        }
    }

    /// Commits the position after every record handed out so far, in every owned
    /// partition. A partition that moved to another member meanwhile is dropped and the
    /// error (StaleGeneration) returned: its records will be read again by the new owner.
    pub async fn commit(&mut self) -> Result<()> {
        let keys: Vec<Key> = self.owned.keys().cloned().collect();
        self.commit_keys(keys).await
    }

    /// Commits (with auto-commit on), leaves the group so its partitions move at once,
    /// and stops heartbeating. Best effort within the session timeout (the leave gets at
    /// least a heartbeat interval more): past it the server expires the member and moves
    /// its partitions by itself, so waiting longer buys nothing. A commit that did not
    /// make it means the next owner redelivers from the last commit.
    pub async fn close(mut self) -> Result<()> {
        self.closed = true;
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        self.background.clear();
        if self.expired {
            return Ok(()); // The server already forgot this member: nothing to commit or leave.
        }
        let group = self.config.group.clone();
        let m = self.membership.clone();
        let deadline = Instant::now() + m.session_timeout;
        if self.config.auto_commit {
            match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), self.commit()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(%group, error = %e, "final commit failed"),
                Err(_) => tracing::warn!(%group, "final commit unanswered within the session timeout"),
            }
        }
        let leave_by = deadline.max(Instant::now() + m.heartbeat_interval);
        let started = Instant::now();
        match tokio::time::timeout(leave_by.saturating_duration_since(started), member::leave(&self.admin, &m)).await {
            Ok(left) => left,
            Err(_) => {
                Err(ClientError::timeout("leaving the group (the session timeout ends it)", started.elapsed(), None))
            }
        }
    }

    /// Stops heartbeating and walks away without committing or leaving, as a crashed
    /// process would: the group notices when the session times out. For failure tests.
    pub fn kill(mut self) {
        self.closed = true;
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }

    fn mark_consumed(&mut self, r: &ConsumerRecord) {
        if let Some(o) = self.owned.get_mut(&(r.topic.to_string(), r.partition)) {
            o.consumed = r.offset + 1;
        }
    }

    fn start_heartbeat(&mut self) {
        *self.beat.lock().unwrap_or_else(|e| e.into_inner()) = Beat::default();
        let task = member::heartbeat_loop(self.admin.clone(), self.membership.clone(), self.beat.clone());
        if let Some(old) = self.heartbeat.replace(tokio::spawn(task)) {
            old.abort();
        }
    }

    /// Runs the readers until records are buffered or `deadline` passes, keeping the
    /// membership current in between.
    async fn fill(&mut self, deadline: Instant) -> Result<()> {
        loop {
            self.maintain().await?;
            let left = deadline.saturating_duration_since(Instant::now());
            let slice = left.min(self.membership.heartbeat_interval);
            let active: Vec<&mut Consumer> = self.readers.values_mut().filter(|r| !r.assignment().is_empty()).collect();
            if active.is_empty() {
                tokio::time::sleep(slice).await;
            } else {
                let each = slice / active.len() as u32;
                for reader in active {
                    let records = reader.poll(each).await?;
                    self.buffer.extend(records);
                }
            }
            if !self.buffer.is_empty() || Instant::now() >= deadline {
                return Ok(());
            }
        }
    }

    /// Takes what the heartbeat learned: rejoins after expiry, applies a new
    /// assignment, starts partitions whose start was found, and auto-commits when due.
    /// Waits for commits only, each bounded by a heartbeat interval.
    async fn maintain(&mut self) -> Result<()> {
        let (assignment, expired) = {
            let mut b = self.beat.lock().unwrap_or_else(|e| e.into_inner());
            (b.assignment.take(), std::mem::take(&mut b.expired))
        };
        if expired {
            self.expire();
        }
        if self.expired {
            return self.rejoin().await;
        }
        if let Some(a) = assignment {
            self.sync(a).await;
        }
        let started = self.background.take_started();
        self.start_partitions(started)?;
        if self.config.auto_commit && Instant::now() >= self.next_auto_commit {
            self.next_auto_commit = Instant::now() + self.config.auto_commit_interval;
            // Bounded: a commit retried through a leader change or a lagging node's
            // UnknownTopic could otherwise hold `poll` for many seconds (seen in the
            // simulation). Cancelling is safe: nothing is marked committed until every
            // answer is in, and the next interval commits again.
            match tokio::time::timeout(self.membership.heartbeat_interval, self.commit()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(group = %self.config.group, error = %e, "auto-commit failed"),
                Err(_) => tracing::debug!(group = %self.config.group, "auto-commit still unanswered; retried later"),
            }
        }
        Ok(())
    }

    /// The server forgot this member (its session expired): whatever it owned has moved
    /// or will, so drop everything uncommitted; [`Self::rejoin`] joins as a new member.
    fn expire(&mut self) {
        let keys: Vec<Key> = self.owned.keys().cloned().collect();
        for k in &keys {
            self.drop_partition(k);
        }
        self.background.clear();
        self.assigned.clear();
        self.expired = true;
    }

    /// Starts a join in the background, or applies the one that finished. A failed
    /// join is returned once; the next poll tries again.
    async fn rejoin(&mut self) -> Result<()> {
        if !self.background.joining() {
            let c = &self.config;
            self.background.spawn_join(&self.admin, &c.group, &c.topics, &c.client_id);
            return Ok(());
        }
        let Some(joined) = self.background.take_joined() else { return Ok(()) };
        let (membership, assignment) = joined?;
        tracing::info!(group = %self.config.group, member = %membership.member_id, "rejoined the group");
        self.membership = membership;
        self.expired = false;
        self.start_heartbeat();
        self.sync(assignment).await;
        Ok(())
    }

    /// Brings the readers in line with `assignment`: drops lost partitions, commits and
    /// releases revoking ones, and looks up where gained ones start (in the background;
    /// [`Self::start_partitions`] adds them once known).
    async fn sync(&mut self, assignment: Vec<Assigned>) {
        let current = |o: &Owned, k: &Key| {
            assignment.iter().any(|a| (&a.topic, a.partition) == (&k.0, k.1) && a.generation == o.generation)
        };
        let lost: Vec<Key> = self.owned.iter().filter(|(k, o)| !current(o, k)).map(|(k, _)| k.clone()).collect();
        for k in &lost {
            tracing::info!(group = %self.config.group, topic = %k.0, partition = k.1, "partition lost");
            self.drop_partition(k);
        }
        let gains = |k: &Key, g: u64| {
            assignment.iter().any(|a| (&a.topic, a.partition) == (&k.0, k.1) && a.generation == g && !a.revoking)
        };
        self.background.retain_starts(gains);
        let revoking: Vec<Assigned> = assignment.iter().filter(|a| a.revoking).cloned().collect();
        if !revoking.is_empty() {
            self.revoke(revoking).await;
        }
        for a in assignment.iter().filter(|a| !a.revoking) {
            let key = (a.topic.clone(), a.partition);
            if self.owned.contains_key(&key) || self.background.is_starting(&key, a.generation) {
                continue;
            }
            let spec = StartSpec {
                client: self.client.clone(),
                group: self.config.group.clone(),
                group_id: self.membership.group_id,
                start: self.config.start,
            };
            self.background.spawn_start(key, a.generation, spec);
        }
        self.assigned = assignment;
    }

    /// Commits the revoking partitions (with auto-commit), stops reading them and
    /// releases them. A commit still unanswered after a heartbeat interval keeps them
    /// for now: the next heartbeat lists them again and the commit is retried, so a
    /// clean handover still redelivers nothing; the server's rebalance timeout bounds it.
    async fn revoke(&mut self, revoking: Vec<Assigned>) {
        let keys: Vec<Key> = revoking.iter().map(|a| (a.topic.clone(), a.partition)).collect();
        if self.config.auto_commit && keys.iter().any(|k| self.owned.contains_key(k)) {
            let group = self.config.group.clone();
            match tokio::time::timeout(self.membership.heartbeat_interval, self.commit_keys(keys.clone())).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(%group, error = %e, "commit before revoking failed"),
                Err(_) => {
                    tracing::debug!(%group, "commit before revoking still unanswered; retried next heartbeat");
                    return;
                }
            }
        }
        for k in &keys {
            self.drop_partition(k);
        }
        self.background.spawn_release(&self.admin, &self.membership, revoking, &self.beat);
    }

    /// Starts reading the partitions whose start lookup finished, if they are still
    /// assigned under the generation they were looked up for. A failed lookup is
    /// returned (the first of them) and retried when the next heartbeat lists it.
    fn start_partitions(&mut self, done: Vec<(Key, u64, Result<Start>)>) -> Result<()> {
        let mut first_err = None;
        for (key, generation, res) in done {
            let wanted = self
                .assigned
                .iter()
                .any(|a| (&a.topic, a.partition) == (&key.0, key.1) && a.generation == generation && !a.revoking);
            if !wanted || self.owned.contains_key(&key) {
                continue;
            }
            let (committed, position) = match res {
                Ok(start) => start,
                Err(e) => {
                    tracing::warn!(group = %self.config.group, topic = %key.0, partition = key.1, error = %e,
                        "could not find where an assigned partition starts; retrying");
                    first_err.get_or_insert(e);
                    continue;
                }
            };
            let Some(reader) = self.readers.get_mut(&key.0) else { continue };
            tracing::info!(group = %self.config.group, topic = %key.0, partition = key.1, position,
                "partition assigned");
            reader.add_partition(key.1, position);
            self.owned.insert(key, Owned { generation, consumed: position, committed });
        }
        first_err.map_or(Ok(()), Err)
    }

    fn drop_partition(&mut self, k: &Key) {
        self.owned.remove(k);
        self.buffer.retain(|r| !(&*r.topic == k.0.as_str() && r.partition == k.1));
        if let Some(reader) = self.readers.get_mut(&k.0) {
            reader.remove_partition(k.1);
        }
    }

    /// Commits the handed-out positions of `keys` that moved since their last commit.
    async fn commit_keys(&mut self, keys: Vec<Key>) -> Result<()> {
        let work: Vec<(Key, u64, u64)> = keys
            .into_iter()
            .filter_map(|k| {
                let o = self.owned.get(&k)?;
                (o.committed != Some(o.consumed)).then_some((k, o.generation, o.consumed))
            })
            .collect();
        let (client, group, group_id) = (&self.client, &self.config.group, self.membership.group_id);
        let member = &self.membership.member_id;
        let results = join_all(work.iter().map(|(k, generation, offset)| async move {
            let at = OffsetTarget { group, group_id, topic: &k.0, partition: k.1 };
            commit_offset(client, &at, member, *generation, *offset).await
        }))
        .await;
        let mut first_err = None;
        for ((k, _, offset), r) in work.into_iter().zip(results) {
            match r {
                Ok(()) => {
                    if let Some(o) = self.owned.get_mut(&k) {
                        o.committed = Some(offset);
                    }
                }
                Err(e) => {
                    if e.code() == Some(ErrorCode::StaleGeneration) {
                        tracing::warn!(group = %self.config.group, topic = %k.0, partition = k.1, error = %e,
                            "partition moved to another member; dropping it");
                        self.drop_partition(&k);
                    }
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for GroupConsumer {
    /// Dropping without `close` still leaves gracefully when a runtime is around: the
    /// commit (with auto-commit) and the LeaveGroup run in a spawned task, given up
    /// after the session timeout like `close`.
    fn drop(&mut self) {
        if self.closed || self.expired {
            return;
        }
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        let (client, admin, membership) = (self.client.clone(), self.admin.clone(), self.membership.clone());
        let commits: Vec<(Key, u64, u64)> = if self.config.auto_commit {
            let pending = self.owned.iter().filter(|(_, o)| o.committed != Some(o.consumed));
            pending.map(|(k, o)| (k.clone(), o.generation, o.consumed)).collect()
        } else {
            Vec::new()
        };
        let bound = membership.session_timeout;
        handle.spawn(tokio::time::timeout(bound, async move {
            for (k, generation, offset) in commits {
                let at = OffsetTarget {
                    group: &membership.group,
                    group_id: membership.group_id,
                    topic: &k.0,
                    partition: k.1,
                };
                let _ = commit_offset(&client, &at, &membership.member_id, generation, offset).await;
            }
            let _ = member::leave(&admin, &membership).await;
        }));
    }
}
