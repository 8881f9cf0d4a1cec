//! [`Producer`]: batched, pipelined, retried sends.
//!
//! ```text
//! send() ──▶ router task ──(topic metadata, partition choice)──▶ worker per partition
//!   │                                                               │ batches, window,
//!   └── DeliveryFuture ◀──────────── acknowledged offset / error ────┘ retries
//! ```
//!
//! `send` only enqueues (it never waits), so a caller can fire many records and await
//! their futures later; records sent in order to one partition are written in order.
//! One router task keeps that order while it looks up partition counts; each partition's
//! worker then owns batching and retries for that partition alone, so a slow or failing
//! partition never holds up the others.

mod batch;
mod partitioner;
mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tidemark_types::{now_ms, Header, PartitionId, Record};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::client::Client;
use crate::config::ProducerConfig;
use crate::error::{ClientError, Result};
use batch::{encoded_len, BufferGauge, PendingRecord, Ticket};
use partitioner::{choose_partition, StickyPartitioner};
use worker::{Worker, WorkerMsg};

/// Where an acknowledged record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    pub partition: PartitionId,
    pub offset: u64,
}

/// A record to send, with an optional explicit partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<Header>,
    /// Milliseconds since the epoch; `None` stamps the time of `send`.
    pub timestamp_ms: Option<i64>,
    /// `None`: by key if there is one, else spread over the partitions.
    pub partition: Option<PartitionId>,
}

impl ProducerRecord {
    pub fn new(value: impl Into<Bytes>) -> Self {
        ProducerRecord { value: value.into(), ..Default::default() }
    }

    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn partition(mut self, partition: PartitionId) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header { key: key.into(), value: value.into() });
        self
    }

    pub fn timestamp_ms(mut self, ts: i64) -> Self {
        self.timestamp_ms = Some(ts);
        self
    }

    /// Shared groups do not deliver this record later than `ttl` after its timestamp:
    /// they drop or dead-letter it, as each group says. Sets the `tidemark-ttl-ms`
    /// header; a shorter topic or group TTL still wins.
    pub fn ttl(self, ttl: std::time::Duration) -> Self {
        self.header(tidemark_types::TTL_HEADER, ttl.as_millis().max(1).to_string())
    }
}

/// A `Record` keeps its timestamp unless it is 0, which means "now".
impl From<Record> for ProducerRecord {
    fn from(r: Record) -> Self {
        let timestamp_ms = (r.timestamp_ms != 0).then_some(r.timestamp_ms);
        ProducerRecord { key: r.key, value: r.value, headers: r.headers, timestamp_ms, partition: None }
    }
}

/// `(key, value)`.
impl<K: Into<Bytes>, V: Into<Bytes>> From<(K, V)> for ProducerRecord {
    fn from((k, v): (K, V)) -> Self {
        ProducerRecord::new(v).key(k)
    }
}

/// Resolves when the record is acknowledged (after a Raft majority committed it) or has
/// definitely failed.
#[derive(Debug)]
pub struct DeliveryFuture {
    rx: oneshot::Receiver<Result<RecordMetadata>>,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| r.unwrap_or(Err(ClientError::Closed)))
    }
}

enum RouterMsg {
    Record { topic: Arc<str>, partition: Option<PartitionId>, pending: PendingRecord },
    Flush(oneshot::Sender<()>),
}

/// Sends records to a topic's partitions. Cheap to clone; clones share the batches.
/// Dropping every clone without [`close`](Producer::close) still delivers what was sent
/// (the background tasks finish it), but nobody can wait for it any more.
#[derive(Clone, Debug)]
pub struct Producer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    tx: mpsc::UnboundedSender<RouterMsg>,
    gauge: Arc<BufferGauge>,
    closed: AtomicBool,
    config: ProducerConfig,
}

impl Producer {
    /// Starts the producer's background tasks; call inside the runtime.
    pub fn new(client: Client, config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(route(client, config.clone(), rx));
        let shared = Shared { tx, gauge: Arc::new(BufferGauge::default()), closed: AtomicBool::new(false), config };
        Ok(Producer { shared: Arc::new(shared) })
    }

    /// Enqueues a record for `topic` and returns at once; the future resolves with the
    /// record's partition and offset once acknowledged. Records sent to one partition
    /// are written in the order of their `send` calls.
    pub fn send(&self, topic: &str, record: impl Into<ProducerRecord>) -> DeliveryFuture {
        let (ack, rx) = oneshot::channel();
        let future = DeliveryFuture { rx };
        if self.shared.closed.load(Ordering::Acquire) {
            let _ = ack.send(Err(ClientError::Closed));
            return future;
        }
        let r = record.into();
        let timestamp_ms = r.timestamp_ms.unwrap_or_else(now_ms);
        let record = Record { key: r.key, value: r.value, headers: r.headers, timestamp_ms };
        let ticket = Ticket::new(self.shared.gauge.clone(), encoded_len(&record));
        let deadline = Instant::now() + self.shared.config.delivery_timeout;
        let pending = PendingRecord { record, ack, deadline, ticket };
        let msg = RouterMsg::Record { topic: Arc::from(topic), partition: r.partition, pending };
        if let Err(mpsc::error::SendError(RouterMsg::Record { pending, .. })) = self.shared.tx.send(msg) {
            pending.fail(ClientError::Closed);
        }
        future
    }

    /// Waits while more than `max_buffered_bytes` of sent records await acknowledgement.
    /// Call it between sends to bound memory when producing faster than the cluster takes.
    pub async fn wait_for_buffer_space(&self) {
        self.shared.gauge.wait_below(self.shared.config.max_buffered_bytes).await;
    }

    /// Bytes of records sent but not yet acknowledged or failed.
    pub fn buffered_bytes(&self) -> usize {
        self.shared.gauge.used()
    }

    /// Sends everything buffered without waiting for linger, and waits until every record
    /// sent before this call is acknowledged or failed.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.shared.tx.send(RouterMsg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Refuses further sends, then flushes. Sends after `close` fail with `Closed`.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.flush().await;
    }
}

/// What the router knows about a topic.
enum TopicState {
    Known {
        partitions: u32,
        sticky: StickyPartitioner,
    },
    /// The cluster did not know it at `at`; sends fail fast for a while instead of each
    /// waiting out the unknown-topic timeout again.
    Missing {
        at: Instant,
        err: ClientError,
    },
}

/// How long a missing topic fails sends without asking the cluster again.
const MISSING_TOPIC_RECHECK: Duration = Duration::from_secs(1);

/// The router task: resolves each record's partition, in order, and hands it to that
/// partition's worker (started on first use).
async fn route(client: Client, config: ProducerConfig, mut rx: mpsc::UnboundedReceiver<RouterMsg>) {
    let mut topics: HashMap<Arc<str>, TopicState> = HashMap::new();
    let mut workers: HashMap<(Arc<str>, PartitionId), mpsc::UnboundedSender<WorkerMsg>> = HashMap::new();
    let mut identity = None;
    while let Some(msg) = rx.recv().await {
        match msg {
            RouterMsg::Record { topic, partition, pending } => {
                if config.idempotent && identity.is_none() {
                    match register(&client, &config).await {
                        Ok(id) => identity = Some(id),
                        Err(e) => {
                            pending.fail(e);
                            continue;
                        }
                    }
                }
                let p = match resolve_partition(&client, &config, &mut topics, &topic, partition, &pending).await {
                    Ok(p) => p,
                    Err(e) => {
                        pending.fail(e);
                        continue;
                    }
                };
                let worker = workers
                    .entry((topic.clone(), p))
                    .or_insert_with(|| Worker::spawn(client.clone(), config.clone(), topic.clone(), p, identity));
                if let Err(mpsc::error::SendError(WorkerMsg::Record(pending))) = worker.send(WorkerMsg::Record(pending))
                {
                    pending.fail(ClientError::Closed);
                }
            }
            RouterMsg::Flush(done) => {
                let waits: Vec<oneshot::Receiver<()>> = workers
                    .values()
                    .filter_map(|w| {
                        let (tx, rx) = oneshot::channel();
                        w.send(WorkerMsg::Flush(tx)).ok().map(|_| rx)
                    })
                    .collect();
                // Wait elsewhere so the router keeps routing meanwhile.
                tokio::spawn(async move {
                    for w in waits {
                        let _ = w.await;
                    }
                    let _ = done.send(());
                });
            }
        }
    }
}

/// Gets this producer's id and epoch from the cluster (once, before its first record).
async fn register(client: &Client, config: &ProducerConfig) -> Result<(i64, i16)> {
    let (id, epoch) = client.admin().init_producer(config.producer_name.as_deref()).await.map_err(|e| match e {
        ClientError::Timeout { what, elapsed, last } => {
            ClientError::Timeout { what: format!("{what} (idempotent producers register first)"), elapsed, last }
        }
        other => other,
    })?;
    tracing::debug!(producer_id = id, epoch, name = ?config.producer_name, "producer registered");
    Ok((id, epoch))
}

/// The partition for a record, or why it cannot be routed (missing topic, bad explicit
/// partition).
async fn resolve_partition(
    client: &Client,
    config: &ProducerConfig,
    topics: &mut HashMap<Arc<str>, TopicState>,
    topic: &Arc<str>,
    explicit: Option<PartitionId>,
    pending: &PendingRecord,
) -> Result<PartitionId> {
    let now = Instant::now();
    let recheck = match topics.get(topic) {
        None => true,
        Some(TopicState::Missing { at, .. }) => now.duration_since(*at) >= MISSING_TOPIC_RECHECK,
        Some(TopicState::Known { .. }) => false,
    };
    if recheck {
        let count = if topics.contains_key(topic) {
            // A recheck of a missing topic asks once; only the first look waits.
            match client.refresh_metadata().await {
                Ok(()) => {
                    let count = client.metadata().partition_count(topic);
                    match count {
                        Some(n) => Ok(n),
                        None => Err(client.missing_topic(topic).await),
                    }
                }
                Err(e) => Err(e),
            }
        } else {
            first_look(client, topic, pending.deadline).await
        };
        let state = match count {
            Ok(partitions) => {
                TopicState::Known { partitions, sticky: StickyPartitioner::new(config.max_batch_bytes, config.linger) }
            }
            Err(err) => TopicState::Missing { at: Instant::now(), err },
        };
        topics.insert(topic.clone(), state);
    }
    match topics.get_mut(topic).expect("inserted above") {
        TopicState::Known { partitions, sticky } => {
            let size = encoded_len(&pending.record);
            let key = pending.record.key.as_deref();
            choose_partition(explicit, key, topic, *partitions, size, sticky, Instant::now())
        }
        TopicState::Missing { err, .. } => Err(err.clone()),
    }
}

/// The partition count of a topic seen for the first time: waits a little for a topic
/// the cluster does not know yet, and up to the record's delivery deadline for a cluster
/// that cannot be reached.
async fn first_look(client: &Client, topic: &str, deadline: Instant) -> Result<u32> {
    let start = Instant::now();
    let mut backoff = client.backoff(tidemark_types::partitioner::fnv1a64(topic.as_bytes()));
    loop {
        match client.partition_count(topic).await {
            Err(e) if e.is_retriable() && Instant::now() < deadline && !client.unreachable_for_too_long(start, &e) => {
                tracing::debug!(topic, error = %e, "cannot read metadata yet; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            other => return other,
        }
    }
}
