//! The slow half of a partitioned member's membership upkeep — joining again after the
//! session expired, finding where a gained partition starts, releasing revoked ones —
//! runs in tasks, so [`GroupConsumer::poll`](super::GroupConsumer::poll) never waits
//! for it. Each is a few RPCs that, under faults, retry for up to `operation_timeout`
//! apiece (one poll(300ms) once waited more than 30 s of virtual time in the chaos
//! simulation); a task carries on across polls and `poll` takes its result once it
//! is in.
//!
//! ```text
//! maintain ─ expired? ──────▶ spawn join ───────────▶ (later poll) take_joined ─▶ apply
//!          ├ gained? ───────▶ spawn start position ─▶ (later poll) take_started ─▶ add to reader
//!          └ revoked+committed ─▶ spawn release (fire and forget; the next heartbeat
//!                                 lists them again if it failed)
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use tidemark_types::{ErrorCode, PartitionId};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::member::{self, Assigned, Beat, Joined, Membership};
use super::route::{fetch_committed, OffsetTarget};
use crate::admin::Admin;
use crate::client::Client;
use crate::config::StartPosition;
use crate::consumer::start_offset;
use crate::error::{ClientError, Result};

pub(crate) type Key = (String, PartitionId);

/// A spawned task that is aborted when dropped: work for a member that is gone, or for
/// a partition that moved on, must not outlive it.
pub(crate) struct Task<T>(JoinHandle<T>);

impl<T: Send + 'static> Task<T> {
    pub fn spawn(fut: impl Future<Output = T> + Send + 'static) -> Self {
        Task(tokio::spawn(fut))
    }

    /// The task's result if it has finished; `None` while it runs. A panicked task
    /// yields `None` forever, so callers also check [`Self::is_finished`].
    fn try_take(&mut self) -> Option<std::result::Result<T, ClientError>> {
        if !self.0.is_finished() {
            return None;
        }
        let res = (&mut self.0).now_or_never()?;
        Some(res.map_err(|e| ClientError::Protocol(format!("membership task failed: {e}"))))
    }

    /// Waits for the result (for the constructor, which may take its time).
    async fn join(&mut self) -> std::result::Result<T, ClientError> {
        (&mut self.0).await.map_err(|e| ClientError::Protocol(format!("membership task failed: {e}")))
    }

    /// Waits for the result until `deadline`; `None` if the task is still running then
    /// (it carries on: waiting on a handle by reference does not cancel the task).
    pub async fn wait_until(&mut self, deadline: Instant) -> Option<std::result::Result<T, ClientError>> {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, self.join()).await.ok()
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The committed offset of a gained partition (if any) and where reading starts.
pub(crate) type Start = (Option<u64>, u64);

/// Background membership work in flight.
#[derive(Default)]
pub(crate) struct Background {
    joining: Option<Task<Result<Joined>>>,
    starting: BTreeMap<Key, (u64, Task<Result<Start>>)>,
    releasing: Vec<Task<()>>,
}

/// What a gained partition's start needs, owned so it can move into a task.
pub(crate) struct StartSpec {
    pub client: Client,
    pub group: String,
    pub group_id: u64,
    pub start: StartPosition,
}

impl Background {
    pub fn joining(&self) -> bool {
        self.joining.is_some()
    }

    /// Joins as a new member in a task (auto-creating the group, as a rejoin may find
    /// it deleted and recreated).
    pub fn spawn_join(&mut self, admin: &Admin, group: &str, topics: &[String], client_id: &str) {
        let (admin, group, topics, client_id) =
            (admin.clone(), group.to_string(), topics.to_vec(), client_id.to_string());
        self.joining =
            Some(Task::spawn(async move { member::join(&admin, &group, &topics, &client_id, true, false).await }));
    }

    /// The join's answer once it is in.
    pub fn take_joined(&mut self) -> Option<Result<Joined>> {
        let res = self.joining.as_mut()?.try_take()?;
        self.joining = None;
        Some(res.and_then(|r| r))
    }

    /// Whether the start of `key` under `generation` is being looked up.
    pub fn is_starting(&self, key: &Key, generation: u64) -> bool {
        self.starting.get(key).is_some_and(|(g, _)| *g == generation)
    }

    /// Looks up where `key` (gained under `generation`) starts: its committed offset,
    /// else the group's start position.
    pub fn spawn_start(&mut self, key: Key, generation: u64, s: StartSpec) {
        let (topic, partition) = key.clone();
        let bound = s.client.config().operation_timeout * 2;
        let task = Task::spawn(async move {
            // Bounded so a lookup stuck behind something never leaves the partition
            // unread without a word: it fails, is logged, and the next heartbeat retries.
            let started = Instant::now();
            let lookup = async {
                let at = OffsetTarget { group: &s.group, group_id: s.group_id, topic: &topic, partition };
                let committed = fetch_committed(&s.client, &at).await?;
                let committed = committed.has_offset.then_some(committed.offset);
                let position = match committed {
                    Some(o) => o,
                    None => start_offset(&s.client, &topic, partition, s.start).await?,
                };
                Ok::<Start, ClientError>((committed, position))
            };
            match tokio::time::timeout(bound, lookup).await {
                Ok(r) => r,
                Err(_) => Err(ClientError::timeout("finding where a partition starts", started.elapsed(), None)),
            }
        });
        self.starting.insert(key, (generation, task));
    }

    /// Drops the lookups `keep` no longer wants (the partition moved, or moved back
    /// under a newer generation).
    pub fn retain_starts(&mut self, keep: impl Fn(&Key, u64) -> bool) {
        self.starting.retain(|k, (g, _)| keep(k, *g));
    }

    /// The lookups that finished, each with its generation.
    pub fn take_started(&mut self) -> Vec<(Key, u64, Result<Start>)> {
        let done: Vec<Key> =
            self.starting.iter().filter(|(_, (_, t))| t.0.is_finished()).map(|(k, _)| k.clone()).collect();
        let mut out = Vec::new();
        for k in done {
            if let Some((g, mut t)) = self.starting.remove(&k) {
                if let Some(res) = t.try_take() {
                    out.push((k, g, res.and_then(|r| r)));
                }
            }
        }
        out
    }

    /// Waits for every lookup under way (the constructor hands out a member that
    /// already reads its first assignment).
    pub async fn wait_started(&mut self) -> Vec<(Key, u64, Result<Start>)> {
        let mut out = Vec::new();
        for (k, (g, mut t)) in std::mem::take(&mut self.starting) {
            out.push((k, g, t.join().await.and_then(|r| r)));
        }
        out
    }

    /// Tells the metadata leader that `parts` are committed and may move. An
    /// UnknownMember answer means the session expired: the member joins again.
    pub fn spawn_release(&mut self, admin: &Admin, m: &Membership, parts: Vec<Assigned>, beat: &Arc<Mutex<Beat>>) {
        self.releasing.retain(|t| !t.0.is_finished());
        let (admin, m, beat) = (admin.clone(), m.clone(), beat.clone());
        self.releasing.push(Task::spawn(async move {
            match member::release(&admin, &m, &parts).await {
                Ok(()) => {}
                Err(e) if e.code() == Some(ErrorCode::UnknownMember) => {
                    beat.lock().unwrap_or_else(|e| e.into_inner()).expired = true;
                }
                // The next heartbeat still lists them as revoking: released again then.
                Err(e) => tracing::warn!(group = %m.group, error = %e, "releasing partitions failed"),
            }
        }));
    }

    /// Forgets everything under way (the member rejoins, closes or dies).
    pub fn clear(&mut self) {
        *self = Background::default();
    }
}
