//! [`Consumer`]: reads a set of partitions of one topic, in order per partition.
//!
//! ```text
//! poll ─▶ one long-poll Fetch in flight per partition (kept across polls)
//!           │ records ─▶ buffer ─▶ caller          positions advance per record
//!           │ NotLeader / unreachable ─▶ follow hint or refresh metadata, retry after backoff
//!           └ offset out of range ─▶ reset to `offset_reset` (retention purged the position)
//! ```
//!
//! A fetch that has not answered when `poll` times out stays in flight and is picked up
//! by the next `poll`, so no partition is starved by faster ones and no long poll is
//! wasted. Positions only move when records are handed to the buffer, so a fetch that is
//! lost (node killed, leader moved) is simply repeated from the same offset.

mod fetch;

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::{Future, FutureExt};
use tidemark_proto::v1::list_offsets_request::Spec;
use tidemark_types::{ErrorCode, Header, PartitionId};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::client::Client;
use crate::config::{ConsumerConfig, StartPosition};
use crate::error::{ClientError, Result};
use fetch::{fetch_once, FetchOutcome};
pub(crate) use fetch::{list_offsets, records_from_fetch};

/// One record as read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: Arc<str>,
    pub partition: PartitionId,
    pub offset: u64,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<Header>,
    pub timestamp_ms: i64,
}

#[derive(Debug)]
struct PartitionState {
    /// The next offset to hand to the caller.
    position: u64,
    /// The partition's log end at the last fetch (the next offset to be written).
    log_end_offset: Option<u64>,
    fetching: bool,
    retry_at: Option<Instant>,
    backoff: Backoff,
    /// Rotates through replicas while the leader is unknown.
    attempt: u32,
    reset: bool,
    /// When fetches started saying the topic is unknown (a deleted topic fails the poll
    /// after `unknown_topic_timeout`; a lagging node is waited out).
    unknown_since: Option<Instant>,
}

type Fetch = Pin<Box<dyn Future<Output = FetchOutcome> + Send>>;

/// Reads partitions of one topic. Not shared: one consumer, one reader.
pub struct Consumer {
    client: Client,
    topic: Arc<str>,
    config: ConsumerConfig,
    partitions: BTreeMap<PartitionId, PartitionState>,
    inflight: FuturesUnordered<Fetch>,
    buffer: VecDeque<ConsumerRecord>,
    refresh_needed: bool,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("topic", &self.topic).field("positions", &self.positions()).finish()
    }
}

impl Consumer {
    /// A consumer of `partitions` of `topic` (all when `None`), starting at `start` in
    /// each. Resolves the start offsets before returning.
    pub async fn new(
        client: Client,
        topic: &str,
        partitions: Option<Vec<PartitionId>>,
        start: StartPosition,
        config: ConsumerConfig,
    ) -> Result<Consumer> {
        let count = client.partition_count(topic).await?;
        let chosen = partitions.unwrap_or_else(|| (0..count).collect());
        if let Some(bad) = chosen.iter().find(|&&p| p >= count) {
            return Err(ClientError::server(
                ErrorCode::UnknownPartition,
                format!("topic {topic:?} has partitions 0..{count}; there is no partition {bad}"),
            ));
        }
        let topic: Arc<str> = Arc::from(topic);
        let mut states = BTreeMap::new();
        let starts = chosen.iter().map(|&p| start_offset(&client, &topic, p, start));
        for (p, offset) in chosen.iter().zip(futures::future::join_all(starts).await) {
            let state = PartitionState {
                position: offset?,
                log_end_offset: None,
                fetching: false,
                retry_at: None,
                backoff: client.backoff(*p as u64),
                attempt: 0,
                reset: false,
                unknown_since: None,
            };
            states.insert(*p, state);
        }
        Ok(Consumer {
            client,
            topic,
            config,
            partitions: states,
            inflight: FuturesUnordered::new(),
            buffer: VecDeque::new(),
            refresh_needed: false,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partitions this consumer reads.
    pub fn assignment(&self) -> Vec<PartitionId> {
        self.partitions.keys().copied().collect()
    }

    /// The next offset this consumer will hand out, per partition.
    pub fn positions(&self) -> BTreeMap<PartitionId, u64> {
        self.partitions.iter().map(|(p, s)| (*p, s.position)).collect()
    }

    pub fn position(&self, partition: PartitionId) -> Option<u64> {
        self.partitions.get(&partition).map(|s| s.position)
    }

    /// The partition's log end offset as of the last fetch: `log_end - position` is the lag.
    pub fn log_end_offset(&self, partition: PartitionId) -> Option<u64> {
        self.partitions.get(&partition).and_then(|s| s.log_end_offset)
    }

    /// Moves a partition's position; records already buffered for it are dropped.
    pub fn seek(&mut self, partition: PartitionId, offset: u64) -> Result<()> {
        let state = self.partitions.get_mut(&partition).ok_or_else(|| {
            ClientError::InvalidArgument(format!("partition {partition} is not assigned to this consumer"))
        })?;
        state.position = offset;
        self.buffer.retain(|r| r.partition != partition);
        Ok(())
    }

    /// Starts reading `partition` at `position` (a group consumer's assignment grew).
    pub(crate) fn add_partition(&mut self, partition: PartitionId, position: u64) {
        let state = PartitionState {
            position,
            log_end_offset: None,
            fetching: false,
            retry_at: None,
            backoff: self.client.backoff(partition as u64),
            attempt: 0,
            reset: false,
            unknown_since: None,
        };
        self.partitions.insert(partition, state);
    }

    /// Stops reading `partition`; its buffered records are dropped and an answer of a
    /// fetch still in flight is ignored.
    pub(crate) fn remove_partition(&mut self, partition: PartitionId) {
        self.partitions.remove(&partition);
        self.buffer.retain(|r| r.partition != partition);
        if self.partitions.is_empty() {
            // A group consumer stops polling a reader left with no partitions, so an
            // in-flight fetch would never be polled again: parked on (or granted) the
            // client's metadata-refresh lock, it would block every other refresh of the
            // client for good — the start lookups of newly assigned partitions included.
            self.inflight = FuturesUnordered::new();
        }
    }

    /// Waits up to `timeout` for records and returns those available (possibly none).
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        if self.buffer.is_empty() {
            self.fill(Instant::now() + timeout).await?;
        }
        Ok(self.buffer.drain(..).collect())
    }

    /// The next record, waiting as long as it takes.
    pub async fn next(&mut self) -> Result<ConsumerRecord> {
        loop {
            if let Some(r) = self.buffer.pop_front() {
                return Ok(r);
            }
            // Short rounds: under madsim a pending sleep leaves a timer behind until it is due.
            self.fill(Instant::now() + Duration::from_secs(1)).await?;
        }
    }

    /// Runs fetches until some records are buffered or `deadline` passes.
    async fn fill(&mut self, deadline: Instant) -> Result<()> {
        loop {
            self.prepare().await?;
            self.launch();
            let wake = self.next_retry().map_or(deadline, |t| t.min(deadline));
            let done = if self.inflight.is_empty() {
                tokio::time::sleep_until(wake).await;
                None
            } else {
                tokio::select! {
                    biased;
                    done = self.inflight.next() => done,
                    _ = tokio::time::sleep_until(wake) => None,
                }
            };
            if let Some(outcome) = done {
                self.on_fetch(outcome)?;
                // Take whatever else has already answered, without waiting.
                while let Some(Some(outcome)) = self.inflight.next().now_or_never() {
                    self.on_fetch(outcome)?;
                }
            }
            if !self.buffer.is_empty() || Instant::now() >= deadline {
                return Ok(());
            }
        }
    }

    /// Refreshes metadata and resets out-of-range positions before the next fetches.
    async fn prepare(&mut self) -> Result<()> {
        if std::mem::take(&mut self.refresh_needed) {
            if let Err(e) = self.client.refresh_metadata_unless_busy().await {
                tracing::debug!(error = %e, "metadata refresh failed; fetching anyway");
            }
        }
        if self.partitions.values().any(|s| s.reset && !s.fetching) {
            // Resolving a reset may refresh metadata, whose lock one of our in-flight
            // fetches may hold; only we poll those, so let them finish first (each is
            // bounded by its request timeout) rather than deadlock (chaos seed 1611).
            while let Some(outcome) = self.inflight.next().await {
                self.on_fetch(outcome)?;
            }
        }
        let reset_to = self.config.offset_reset;
        for (&p, state) in self.partitions.iter_mut().filter(|(_, s)| s.reset && !s.fetching) {
            let offset = start_offset(&self.client, &self.topic, p, reset_to).await?;
            tracing::warn!(topic = %self.topic, partition = p, from = state.position, to = offset,
                "position is outside the retained log; reset to {reset_to:?}");
            state.position = offset;
            state.reset = false;
        }
        Ok(())
    }

    /// Starts a fetch for every partition that has none in flight and is not backing off.
    fn launch(&mut self) {
        let now = Instant::now();
        for (&p, state) in self.partitions.iter_mut() {
            if state.fetching || state.retry_at.is_some_and(|t| t > now) {
                continue;
            }
            state.fetching = true;
            state.retry_at = None;
            let fut = fetch_once(
                self.client.clone(),
                self.topic.clone(),
                p,
                state.position,
                state.attempt,
                self.config.clone(),
            );
            self.inflight.push(Box::pin(fut));
        }
    }

    fn next_retry(&self) -> Option<Instant> {
        self.partitions.values().filter(|s| !s.fetching).filter_map(|s| s.retry_at).min()
    }

    fn on_fetch(&mut self, out: FetchOutcome) -> Result<()> {
        let Some(state) = self.partitions.get_mut(&out.partition) else { return Ok(()) };
        state.fetching = false;
        if out.offset != state.position {
            return Ok(()); // Sought elsewhere while this fetch was out: stale.
        }
        match out.result {
            Ok(resp) => {
                state.log_end_offset = Some(resp.log_end_offset);
                let (records, next) = records_from_fetch(&self.topic, out.partition, state.position, &resp.batches)?;
                state.position = next;
                state.backoff.reset();
                state.unknown_since = None;
                self.buffer.extend(records);
                Ok(())
            }
            Err(err) if err.code() == Some(ErrorCode::OffsetOutOfRange) => {
                state.reset = true;
                Ok(())
            }
            Err(err) => {
                self.refresh_needed |= self.client.note_partition_error(&self.topic, out.partition, &err);
                let now = Instant::now();
                let retriable = if err.is_unknown_topic() {
                    let since = *state.unknown_since.get_or_insert(now);
                    now.duration_since(since) < self.client.config().unknown_topic_timeout
                } else {
                    err.is_retriable()
                };
                if !retriable {
                    state.unknown_since = None;
                    return Err(err);
                }
                tracing::debug!(topic = %self.topic, partition = out.partition, error = %err, "fetch failed; retrying");
                if err.leader_hint().is_none() {
                    state.attempt = state.attempt.wrapping_add(1);
                }
                state.retry_at = Some(now + state.backoff.next_delay());
                Ok(())
            }
        }
    }
}

/// Resolves a start position into an offset for one partition.
pub(crate) async fn start_offset(
    client: &Client,
    topic: &str,
    partition: PartitionId,
    start: StartPosition,
) -> Result<u64> {
    let spec = match start {
        StartPosition::Offset(n) => return Ok(n),
        StartPosition::Earliest => Spec::Earliest(true),
        StartPosition::Latest => Spec::Latest(true),
        StartPosition::Timestamp(ms) => Spec::TimestampMs(ms),
    };
    Ok(list_offsets(client, topic, partition, spec).await?.offset)
}
