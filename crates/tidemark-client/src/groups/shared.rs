//! [`SharedConsumer`]: a member of a shared (queue-style) group. Every member reads every
//! partition; the partition leaders lease each record to one member at a time for the
//! group's lock duration, and the member acknowledges, releases or rejects it.
//!
//! ```text
//! poll ─▶ send settled acks ─▶ ShareFetch on every partition (leases records)
//!      ├▶ dead letters ─▶ produced to the dead-letter topic, then acknowledged
//!      └▶ records ─▶ caller ─▶ ack / release / reject (auto: acked at the next poll)
//! ```
//!
//! A member that dies simply stops acknowledging: its leases expire and the records
//! are delivered to someone else, counting the attempt.
//!
//! `poll(timeout)` returns within `timeout` + [`POLL_SLACK`]: its RPCs are cut at that
//! deadline (a leader that is down would otherwise hold them for `operation_timeout`).
//! Acks not sent by then stay pending and go with the next poll; a rejoin still under
//! way carries on in a task.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use tidemark_proto::v1::{self, AckKind};
use tidemark_types::ErrorCode;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::background::Task;
use super::config::GroupConsumerConfig;
use super::member::{self, Beat, Joined, Membership};
use super::route::partition_call;
use crate::admin::Admin;
use crate::client::Client;
use crate::config::ProducerConfig;
use crate::consumer::{records_from_fetch, ConsumerRecord};
use crate::error::{ClientError, Result};
use crate::producer::{Producer, ProducerRecord};

/// A record leased to this member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedRecord {
    pub record: ConsumerRecord,
    /// How many times it was delivered, this time included: above 1 it was released, or
    /// a member holding it died.
    pub delivery_count: u32,
}

type Key = (String, u32);

/// How far past its timeout a poll may run to finish the RPCs it started: a round trip
/// to a live leader fits easily; a dead leader's retries do not hold the caller.
pub const POLL_SLACK: Duration = Duration::from_secs(1);

/// One member of a shared group. Not shared itself: one member, one reader.
pub struct SharedConsumer {
    client: Client,
    admin: Admin,
    config: GroupConsumerConfig,
    membership: Membership,
    beat: Arc<Mutex<Beat>>,
    heartbeat: Option<JoinHandle<()>>,
    partitions: Vec<Key>,
    /// Handed out, not yet settled by the application.
    unsettled: BTreeSet<(String, u32, u64)>,
    /// Settled by the application, not yet sent.
    pending: BTreeMap<Key, Vec<v1::ShareAck>>,
    producer: Option<Producer>,
    /// Dead-letter topics this member has made sure exist.
    dlq_ready: BTreeSet<String>,
    closed: bool,
    /// A join after the session expired, still under way.
    joining: Option<Task<Result<Joined>>>,
}

impl std::fmt::Debug for SharedConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedConsumer")
            .field("group", &self.config.group)
            .field("unsettled", &self.unsettled.len())
            .finish()
    }
}

impl SharedConsumer {
    /// Joins the shared group (creating it with defaults if `create_group`).
    /// `auto_commit` acknowledges every record handed out at the next poll.
    pub async fn new(client: Client, config: GroupConsumerConfig) -> Result<SharedConsumer> {
        config.validate()?;
        let mut partitions = Vec::new();
        for t in &config.topics {
            let n = client.partition_count(t).await?;
            partitions.extend((0..n).map(|p| (t.clone(), p)));
        }
        let admin = client.admin();
        let (membership, _) =
            member::join(&admin, &config.group, &config.topics, &config.client_id, config.create_group, true).await?;
        let mut me = SharedConsumer {
            client,
            admin,
            config,
            membership,
            beat: Arc::default(),
            heartbeat: None,
            partitions,
            unsettled: BTreeSet::new(),
            pending: BTreeMap::new(),
            producer: None,
            dlq_ready: BTreeSet::new(),
            closed: false,
            joining: None,
        };
        me.start_heartbeat();
        Ok(me)
    }

    pub fn member_id(&self) -> &str {
        &self.membership.member_id
    }

    fn start_heartbeat(&mut self) {
        *self.beat.lock().unwrap_or_else(|e| e.into_inner()) = Beat::default();
        let task = member::heartbeat_loop(self.admin.clone(), self.membership.clone(), self.beat.clone());
        if let Some(old) = self.heartbeat.replace(tokio::spawn(task)) {
            old.abort();
        }
    }

    /// Acknowledges a record: it is done and never delivered again.
    pub fn ack(&mut self, r: &ConsumerRecord) {
        self.settle(r, AckKind::Accept);
    }

    /// Gives a record back: delivered again (to any member) after the redelivery backoff.
    pub fn release(&mut self, r: &ConsumerRecord) {
        self.settle(r, AckKind::Release);
    }

    /// Marks a record unprocessable: it goes to the dead-letter topic.
    pub fn reject(&mut self, r: &ConsumerRecord) {
        self.settle(r, AckKind::Reject);
    }

    fn settle(&mut self, r: &ConsumerRecord, kind: AckKind) {
        if self.unsettled.remove(&(r.topic.to_string(), r.partition, r.offset)) {
            let ack = v1::ShareAck { offset: r.offset, kind: kind as i32 };
            self.pending.entry((r.topic.to_string(), r.partition)).or_default().push(ack);
        }
    }

    /// Sends settled acks, then leases and returns records (waiting up to `timeout`).
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<SharedRecord>> {
        self.poll_up_to(timeout, self.config.max_poll_records).await
    }

    /// Like [`Self::poll`], leasing at most about `max` records. Lease only what will be
    /// processed: every lease counts as a delivery attempt, released or not.
    pub async fn poll_up_to(&mut self, timeout: Duration, max: u32) -> Result<Vec<SharedRecord>> {
        let deadline = Instant::now() + timeout + POLL_SLACK;
        if !self.rejoined(deadline).await? {
            return Ok(Vec::new());
        }
        if self.config.auto_commit {
            self.settle_all(AckKind::Accept);
        }
        match self.send_acks(deadline).await {
            Err(e) if !e.is_retriable() => return Err(e),
            _ => {} // Unsent acks stay pending for the next poll.
        }
        let per_partition = (max / self.partitions.len().max(1) as u32).max(1);
        let wait = timeout.min(Duration::from_millis(300));
        let fetches = self
            .partitions
            .iter()
            .map(|(t, p)| until(deadline, "shared fetch", self.share_fetch(t, *p, per_partition, wait)));
        let answers = join_all(fetches).await;
        let mut out = Vec::new();
        let mut dead = Vec::new();
        for ((topic, partition), answer) in self.partitions.clone().iter().zip(answers) {
            let resp = match answer {
                Ok(r) => r,
                Err(e) if e.is_retriable() => {
                    tracing::debug!(%topic, partition, error = %e, "shared fetch failed; retrying next poll");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let leased: BTreeMap<u64, &v1::LeasedRecord> = resp.leased.iter().map(|l| (l.offset, l)).collect();
            let t: Arc<str> = Arc::from(topic.as_str());
            let (records, _) = records_from_fetch(&t, *partition, 0, &resp.batches)?;
            for r in records {
                let Some(l) = leased.get(&r.offset) else { continue };
                self.unsettled.insert((topic.clone(), *partition, r.offset));
                if l.dead_letter {
                    dead.push((r, l.delivery_count, dlq_reason(l)));
                } else {
                    out.push(SharedRecord { record: r, delivery_count: l.delivery_count });
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now()).max(POLL_SLACK);
        if tokio::time::timeout(left, self.dead_letter(dead)).await.is_err() {
            // Left unacknowledged: the leases expire and they are dead-lettered again.
            tracing::debug!(group = %self.config.group, "dead letters unwritten by the poll deadline");
        }
        Ok(out)
    }

    /// Rejoins if the session expired, waiting for the join until `deadline`; a join
    /// still under way then carries on for the next poll. Whether the member may fetch.
    async fn rejoined(&mut self, deadline: Instant) -> Result<bool> {
        if std::mem::take(&mut self.beat.lock().unwrap_or_else(|e| e.into_inner()).expired) && self.joining.is_none() {
            let (admin, c) = (self.admin.clone(), self.config.clone());
            let join = async move { member::join(&admin, &c.group, &c.topics, &c.client_id, true, true).await };
            self.joining = Some(Task::spawn(join));
        }
        let Some(task) = &mut self.joining else { return Ok(true) };
        let Some(joined) = task.wait_until(deadline).await else { return Ok(false) };
        self.joining = None;
        match joined.and_then(|j| j) {
            Ok((membership, _)) => {
                self.membership = membership;
                self.start_heartbeat();
                Ok(true)
            }
            Err(e) => {
                self.beat.lock().unwrap_or_else(|e| e.into_inner()).expired = true; // Try again next poll.
                Err(e)
            }
        }
    }

    /// Moves records delivered too often, rejected or expired to the dead-letter topic, then
    /// acknowledges them. The topic is the group's `dead_letter_topic`, by default
    /// `<topic>.<group>.dlq`; either is created on first use if missing. Each dead letter keeps the record's
    /// key, value and headers and adds the `tidemark-dlq-*` headers of [`dead_letter_record`].
    async fn dead_letter(&mut self, dead: Vec<(ConsumerRecord, u32, &'static str)>) {
        if dead.is_empty() {
            return;
        }
        if self.producer.is_none() {
            self.producer = self.client.producer(ProducerConfig::default()).ok();
        }
        let mut sends = Vec::with_capacity(dead.len());
        for (r, attempts, reason) in &dead {
            let topic = match &self.membership.dead_letter_topic {
                Some(t) => t.clone(),
                None => format!("{}.{}.dlq", r.topic, self.config.group),
            };
            if !self.dlq_ready.contains(&topic) {
                self.create_dead_letter_topic(&r.topic, &topic).await;
                self.dlq_ready.insert(topic.clone());
            }
            let Some(producer) = &self.producer else { return };
            sends.push(producer.send(&topic, dead_letter_record(r, *attempts, reason)));
        }
        let results = join_all(sends).await;
        for ((r, ..), res) in dead.iter().zip(results) {
            match res {
                Ok(_) => self.ack(r),
                // Left unacknowledged: the lease expires and it is dead-lettered again.
                Err(e) => tracing::warn!(topic = %r.topic, error = %e, "could not write a dead letter"),
            }
        }
    }

    /// Creates the default dead-letter topic like its source topic (1 partition, the
    /// source's replication factor); an existing topic is left as it is.
    async fn create_dead_letter_topic(&self, source: &str, dlq: &str) {
        let rf = match self.admin.describe_topic(source).await {
            Ok(d) => d.partitions.first().map_or(1, |p| p.replicas.len().max(1) as u32),
            Err(_) => 1,
        };
        match self.admin.create_topic(dlq, 1, rf, 0, 0).await {
            Ok(_) => tracing::info!(topic = dlq, "created the dead-letter topic"),
            Err(e) if e.code() == Some(ErrorCode::TopicExists) => {}
            Err(e) => tracing::warn!(topic = dlq, error = %e, "could not create the dead-letter topic"),
        }
    }

    fn settle_all(&mut self, kind: AckKind) {
        for (topic, partition, offset) in std::mem::take(&mut self.unsettled) {
            let ack = v1::ShareAck { offset, kind: kind as i32 };
            self.pending.entry((topic, partition)).or_default().push(ack);
        }
    }

    /// Sends every pending ack to its partition's leader, trying for up to
    /// `operation_timeout`. Acks that could not be sent stay pending (the next poll
    /// sends them), and the first error says why.
    pub async fn flush(&mut self) -> Result<()> {
        self.send_acks(Instant::now() + self.client.config().operation_timeout).await
    }

    /// Sends the pending acks until `deadline`. Those that failed with a retriable error
    /// or were cut at the deadline are kept for the next try (an ack applied twice is
    /// harmless); others are dropped (their leases expire). Returns the first error.
    async fn send_acks(&mut self, deadline: Instant) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let sends = pending.into_iter().map(|((topic, partition), acks)| {
            let req = v1::ShareAckRequest {
                group: self.config.group.clone(),
                member_id: self.membership.member_id.clone(),
                topic: topic.clone(),
                partition,
                acks,
            };
            let client = self.client.clone();
            async move {
                let sent = until(deadline, "acknowledging records", async {
                    partition_call(&client, &topic, partition, "acknowledging records", |mut c| {
                        let req = req.clone();
                        async move { c.share_ack(req).await }
                    })
                    .await
                })
                .await;
                ((topic, partition), req.acks, sent)
            }
        });
        let mut first_err = None;
        for (key, acks, sent) in join_all(sends.collect::<Vec<_>>()).await {
            let Err(e) = sent else { continue };
            if e.is_retriable() {
                tracing::debug!(topic = %key.0, partition = key.1, error = %e, "acks unsent; kept for the next poll");
                self.pending.entry(key).or_default().extend(acks);
            } else {
                tracing::warn!(topic = %key.0, partition = key.1, error = %e, "acks refused; their leases expire");
            }
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }

    async fn share_fetch(
        &self,
        topic: &str,
        partition: u32,
        max: u32,
        wait: Duration,
    ) -> Result<v1::ShareFetchResponse> {
        let req = v1::ShareFetchRequest {
            group: self.config.group.clone(),
            member_id: self.membership.member_id.clone(),
            topic: topic.to_string(),
            partition,
            max_records: max,
            max_wait_ms: wait.as_millis() as u32,
        };
        partition_call(&self.client, topic, partition, "shared fetch", |mut c| {
            let req = req.clone();
            async move { c.share_fetch(req).await }
        })
        .await
    }

    /// Settles what is still open (acknowledged with auto-commit, else released so
    /// others get it at once), sends it, and leaves the group. Best effort within the
    /// session timeout (the leave gets at least a heartbeat interval more): what did not
    /// make it by then is covered by lease expiry and the server's session expiry.
    pub async fn close(mut self) -> Result<()> {
        self.closed = true;
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        self.joining = None;
        let m = self.membership.clone();
        let deadline = Instant::now() + m.session_timeout;
        let kind = if self.config.auto_commit { AckKind::Accept } else { AckKind::Release };
        self.settle_all(kind);
        let flushed = self.send_acks(deadline).await;
        if let Some(p) = &self.producer {
            let _ = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), p.close()).await;
        }
        let leave_by = deadline.max(Instant::now() + m.heartbeat_interval);
        until(leave_by, "leaving the group", member::leave(&self.admin, &m)).await?;
        flushed
    }

    /// Walks away like a crashed process: no acks, no leave. Its leases expire.
    pub fn kill(mut self) {
        self.closed = true;
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}

impl Drop for SharedConsumer {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        if self.closed {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let (admin, membership) = (self.admin.clone(), self.membership.clone());
            handle.spawn(async move {
                let _ = member::leave(&admin, &membership).await;
            });
        }
    }
}

/// `fut`, or a Timeout error (retriable) if it has not finished by `deadline`.
async fn until<T>(deadline: Instant, what: &str, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let started = Instant::now();
    match tokio::time::timeout(deadline.saturating_duration_since(started), fut).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::timeout(format!("{what} (cut at its deadline)"), started.elapsed(), None)),
    }
}

/// Header names on a dead letter: why it was dead-lettered (`max-attempts`, `rejected`
/// or `expired`), how often it was delivered before (0: it expired undelivered), and
/// where it came from.
pub const DLQ_REASON: &str = "tidemark-dlq-reason";
pub const DLQ_ATTEMPTS: &str = "tidemark-dlq-attempts";
pub const DLQ_TOPIC: &str = "tidemark-dlq-topic";
pub const DLQ_PARTITION: &str = "tidemark-dlq-partition";
pub const DLQ_OFFSET: &str = "tidemark-dlq-offset";

/// The `tidemark-dlq-reason` value for a leased dead letter (a server too old to say
/// why only dead-letters after max attempts or a reject; `max-attempts` is the fallback).
fn dlq_reason(l: &v1::LeasedRecord) -> &'static str {
    match v1::DeadLetterReason::try_from(l.dead_letter_reason) {
        Ok(v1::DeadLetterReason::Rejected) => "rejected",
        Ok(v1::DeadLetterReason::Expired) => "expired",
        _ => "max-attempts",
    }
}

/// The dead letter written for `r`, delivered `attempts` times before. It keeps the
/// record's headers except `tidemark-ttl-ms`, which would expire the dead letter itself.
fn dead_letter_record(r: &ConsumerRecord, attempts: u32, reason: &str) -> ProducerRecord {
    let mut rec = ProducerRecord::new(r.value.clone());
    rec.key = r.key.clone();
    rec.headers = r.headers.iter().filter(|h| h.key != tidemark_types::TTL_HEADER).cloned().collect();
    rec.header(DLQ_REASON, reason.to_string())
        .header(DLQ_ATTEMPTS, attempts.to_string())
        .header(DLQ_TOPIC, r.topic.to_string())
        .header(DLQ_PARTITION, r.partition.to_string())
        .header(DLQ_OFFSET, r.offset.to_string())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn header<'a>(r: &'a ProducerRecord, key: &str) -> Option<&'a [u8]> {
        r.headers.iter().find(|h| h.key == key).map(|h| &h.value[..])
    }

    #[test]
    fn a_dead_letter_says_why_how_often_and_where_from() {
        let original = ConsumerRecord {
            topic: Arc::from("orders"),
            partition: 2,
            offset: 41,
            key: Some(Bytes::from_static(b"k")),
            value: Bytes::from_static(b"v"),
            headers: vec![
                tidemark_types::Header { key: "trace".into(), value: Bytes::from_static(b"t1") },
                tidemark_types::Header { key: tidemark_types::TTL_HEADER.into(), value: Bytes::from_static(b"9") },
            ],
            timestamp_ms: 5,
        };
        let d = dead_letter_record(&original, 5, "max-attempts");
        assert_eq!((d.key.as_deref(), &d.value[..]), (Some(&b"k"[..]), &b"v"[..]));
        assert_eq!(header(&d, "trace"), Some(&b"t1"[..]), "the record's own headers are kept");
        assert_eq!(header(&d, tidemark_types::TTL_HEADER), None, "but not its TTL");
        assert_eq!(header(&d, DLQ_REASON), Some(&b"max-attempts"[..]));
        assert_eq!(header(&d, DLQ_ATTEMPTS), Some(&b"5"[..]));
        assert_eq!(header(&d, DLQ_TOPIC), Some(&b"orders"[..]));
        assert_eq!(header(&d, DLQ_PARTITION), Some(&b"2"[..]));
        assert_eq!(header(&d, DLQ_OFFSET), Some(&b"41"[..]));
        let r = dead_letter_record(&original, 1, "rejected");
        assert_eq!((header(&r, DLQ_REASON), header(&r, DLQ_ATTEMPTS)), (Some(&b"rejected"[..]), Some(&b"1"[..])));
        let lease = |reason: v1::DeadLetterReason| v1::LeasedRecord {
            dead_letter: true,
            dead_letter_reason: reason as i32,
            ..Default::default()
        };
        assert_eq!(dlq_reason(&lease(v1::DeadLetterReason::Expired)), "expired");
        assert_eq!(dlq_reason(&lease(v1::DeadLetterReason::Rejected)), "rejected");
        assert_eq!(dlq_reason(&lease(v1::DeadLetterReason::None)), "max-attempts");
    }
}
