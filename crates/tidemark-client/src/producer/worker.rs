//! One task per partition: accumulates, sends a window of batches, retries in order.
//!
//! ```text
//! records ─▶ Accumulator ─(full / linger / flush)─▶ ready ─▶ in flight (≤ window) ─▶ ack
//!                                                    ▲                │ retriable error
//!                                                    └── retry, in order, after the
//!                                                        window drains + backoff
//! ```
//!
//! Results are taken in send order. When a batch fails with a retriable error, no new
//! batch is launched; the rest of the window drains (its failures join the retry list
//! in order), then the retry list goes back to the front of the queue and is resent in
//! the original order after a backoff (and a metadata refresh if the error made the
//! cached leader doubtful). Without idempotence a batch after the failed one may already
//! have been written, so order across a retry is guaranteed only with a window of 1;
//! with idempotent sequence numbers the server rejects such out-of-order writes and this
//! same drain-and-resend keeps order for any window. After a retry only the head batch
//! is in flight until it is acknowledged, so the resent window does not race itself.
//!
//! Idempotence: each batch is stamped at seal time with (producer id, epoch, base
//! sequence) and every retry resends those exact bytes, so the partition answers a
//! repeat with the original offsets. When a batch failed for good without being written
//! (a delivery timeout, a refused batch), the partition reports the gap as
//! OutOfOrderSequence with the sequence it expects; the unwritten batches behind it are
//! then renumbered from there (their CRC changes with the stamp, so the partition can
//! never take a renumbered batch for one it already holds).

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{FuturesOrdered, StreamExt};
use futures::Future;
use tidemark_proto::v1;
use tidemark_types::{seq_add, ErrorCode, PartitionId};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::client::Client;
use crate::config::ProducerConfig;
use crate::error::{ClientError, Result};
use crate::producer::batch::{Accumulator, Batch, PendingRecord};

pub(crate) enum WorkerMsg {
    Record(PendingRecord),
    /// Send what is buffered now and answer once everything sent before is resolved.
    Flush(oneshot::Sender<()>),
}

type Attempt = Pin<Box<dyn Future<Output = Result<v1::ProduceResponse>> + Send>>;

pub(crate) struct Worker {
    client: Client,
    config: ProducerConfig,
    topic: Arc<str>,
    partition: PartitionId,
    rx: mpsc::UnboundedReceiver<WorkerMsg>,
    rx_closed: bool,
    acc: Accumulator,
    next_id: u64,
    ready: VecDeque<Batch>,
    inflight: FuturesOrdered<Attempt>,
    inflight_batches: VecDeque<Batch>,
    /// Set while draining the window after a retriable failure.
    retry: Option<Vec<Batch>>,
    refresh_needed: bool,
    backoff: Backoff,
    backoff_until: Option<Instant>,
    /// Rotates through replicas while the leader is unknown.
    attempt: u32,
    /// Batch id -> how many parts of it are unresolved (a split batch has two).
    unresolved: BTreeMap<u64, usize>,
    flushes: Vec<(u64, oneshot::Sender<()>)>,
    /// Idempotence: (producer id, epoch), the next sequence to stamp, the sequence after
    /// the last acknowledged batch, and where to renumber from once the window drains.
    identity: Option<(i64, i16)>,
    next_seq: i32,
    acked_next: i32,
    renumber_from: Option<i32>,
    /// After a retry, one batch at a time until one is acknowledged.
    cautious: bool,
}

impl Worker {
    pub(crate) fn spawn(
        client: Client,
        config: ProducerConfig,
        topic: Arc<str>,
        partition: PartitionId,
        identity: Option<(i64, i16)>,
    ) -> mpsc::UnboundedSender<WorkerMsg> {
        let (tx, rx) = mpsc::unbounded_channel();
        let backoff = client.backoff(partition as u64 ^ tidemark_types::partitioner::fnv1a64(topic.as_bytes()));
        let acc = Accumulator::new(config.max_batch_bytes, config.linger);
        let worker = Worker {
            client,
            config,
            topic,
            partition,
            rx,
            rx_closed: false,
            acc,
            next_id: 0,
            ready: VecDeque::new(),
            inflight: FuturesOrdered::new(),
            inflight_batches: VecDeque::new(),
            retry: None,
            refresh_needed: false,
            backoff,
            backoff_until: None,
            attempt: 0,
            unresolved: BTreeMap::new(),
            flushes: Vec::new(),
            identity,
            next_seq: 0,
            acked_next: 0,
            renumber_from: None,
            cautious: false,
        };
        tokio::spawn(worker.run());
        tx
    }

    async fn run(mut self) {
        loop {
            if self.linger_due() {
                self.seal();
            }
            self.launch();
            if self.rx_closed && self.acc.is_empty() && self.unresolved.is_empty() {
                break;
            }
            let far = Instant::now() + Duration::from_secs(3600);
            // While the window is full a lingered-out batch could only queue behind it,
            // so it stays open and keeps filling until a slot frees (see `linger_due`).
            let linger_at = self.acc.linger_deadline().filter(|_| self.has_room());
            let backoff_at = self.backoff_until;
            tokio::select! {
                biased;
                Some(res) = self.inflight.next(), if !self.inflight.is_empty() => self.on_result(res).await,
                msg = self.rx.recv(), if !self.rx_closed => {
                    self.on_msg(msg);
                    // Take what else is queued in one go: one loop turn per record is slow.
                    for _ in 0..1024 {
                        match self.rx.try_recv() {
                            Ok(msg) => self.on_msg(Some(msg)),
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(linger_at.unwrap_or(far)), if linger_at.is_some() => self.seal(),
                _ = tokio::time::sleep_until(backoff_at.unwrap_or(far)), if backoff_at.is_some() => {
                    self.backoff_until = None;
                }
            }
        }
        for (_, tx) in self.flushes.drain(..) {
            let _ = tx.send(());
        }
    }

    fn on_msg(&mut self, msg: Option<WorkerMsg>) {
        match msg {
            Some(WorkerMsg::Record(rec)) => {
                if let Some(records) = self.acc.push(rec, Instant::now()) {
                    self.enqueue(records);
                }
                if self.acc.is_full() {
                    self.seal();
                }
            }
            Some(WorkerMsg::Flush(tx)) => {
                self.seal();
                self.flushes.push((self.next_id, tx));
                self.answer_flushes();
            }
            None => {
                // The producer is gone: send what is left, then stop.
                self.rx_closed = true;
                self.seal();
            }
        }
    }

    fn seal(&mut self) {
        if let Some(records) = self.acc.take() {
            self.enqueue(records);
        }
    }

    fn enqueue(&mut self, records: Vec<PendingRecord>) {
        let stamp = self.identity.map(|(pid, epoch)| (pid, epoch, self.next_seq));
        self.next_seq = seq_add(self.next_seq, records.len() as u32);
        let batch = Batch::seal(self.next_id, records, stamp);
        self.unresolved.insert(self.next_id, 1);
        self.next_id += 1;
        self.ready.push_back(batch);
    }

    fn window(&self) -> usize {
        if self.cautious {
            1
        } else {
            self.config.max_in_flight
        }
    }

    /// Whether a batch sealed now would be sent at once rather than wait in `ready`.
    fn has_room(&self) -> bool {
        self.ready.is_empty()
            && self.retry.is_none()
            && self.backoff_until.is_none()
            && self.inflight.len() < self.window()
    }

    /// The open batch has lingered long enough *and* could be sent now. Sealing only when
    /// it can go at once is what makes a short linger cheap: under load, records that
    /// arrive while the window is full join one batch instead of many tiny queued ones,
    /// and when the window has room a record goes without waiting for company.
    fn linger_due(&self) -> bool {
        self.has_room() && self.acc.linger_deadline().is_some_and(|at| at <= Instant::now())
    }

    /// Starts sends while the window has room and no retry is pending.
    fn launch(&mut self) {
        let window = self.window();
        while self.retry.is_none() && self.backoff_until.is_none() && self.inflight.len() < window {
            let Some(batch) = self.ready.pop_front() else { break };
            if Instant::now() >= batch.deadline {
                let last = batch.last_error.clone();
                let what = format!("delivery of {} records to {}/{}", batch.len(), self.topic, self.partition);
                self.resolve(batch, Err(ClientError::timeout(what, self.config.delivery_timeout, last)));
                continue;
            }
            let fut =
                send_batch(self.client.clone(), self.topic.clone(), self.partition, batch.bytes.clone(), self.attempt);
            self.inflight.push_back(Box::pin(fut));
            self.inflight_batches.push_back(batch);
        }
    }

    async fn on_result(&mut self, res: Result<v1::ProduceResponse>) {
        let mut batch = self.inflight_batches.pop_front().expect("one batch per attempt");
        match res {
            Ok(resp) => {
                let count = resp.last_offset.wrapping_sub(resp.base_offset).wrapping_add(1);
                if count != batch.len() as u64 {
                    tracing::warn!(topic = %self.topic, partition = self.partition, sent = batch.len(), acked = count,
                        "produce answer covers a different number of records than the batch");
                }
                self.backoff.reset();
                self.cautious = false;
                if let Some(seq) = batch.base_seq() {
                    self.acked_next = seq_add(seq, batch.len() as u32);
                }
                let base = resp.base_offset;
                self.resolve(batch, Ok(base));
            }
            Err(err) => {
                self.refresh_needed |= self.client.note_partition_error(&self.topic, self.partition, &err);
                match self.classify(&mut batch, err) {
                    Ok(()) => self.retry.get_or_insert_with(Vec::new).push(batch),
                    Err(fatal) if is_size_error(&fatal) && batch.len() > 1 => self.split(batch, fatal),
                    Err(fatal) => self.resolve(batch, Err(fatal)),
                }
            }
        }
        if self.inflight.is_empty() {
            match self.retry.take() {
                Some(retry) => self.schedule_retry(retry).await,
                // The batch that found the gap failed for good (its deadline passed): the
                // next batch will find the gap again and renumber then.
                None => self.renumber_from = None,
            }
        }
    }

    /// `Ok` if the batch should be retried; else the error to fail it with.
    fn classify(&mut self, batch: &mut Batch, err: ClientError) -> std::result::Result<(), ClientError> {
        let now = Instant::now();
        let retriable = if batch.base_seq().is_some() && is_sequence_error(&err) {
            self.resequence(batch, &err)
        } else if err.is_unknown_topic() {
            // Lagging nodes learn about new topics a moment late: retry, but not forever.
            let since = *batch.unknown_since.get_or_insert(now);
            now.duration_since(since) < self.client.config().unknown_topic_timeout
        } else {
            err.is_retriable()
        };
        if !retriable {
            return Err(err);
        }
        if now >= batch.deadline {
            let what = format!("delivery of {} records to {}/{}", batch.len(), self.topic, self.partition);
            return Err(ClientError::timeout(what, self.config.delivery_timeout, Some(err)));
        }
        tracing::debug!(topic = %self.topic, partition = self.partition, error = %err, "produce failed; will retry");
        let followed_hint = err.leader_hint().is_some();
        batch.last_error = Some(err);
        if !followed_hint {
            self.attempt = self.attempt.wrapping_add(1);
        }
        Ok(())
    }

    /// Whether an idempotent batch refused for its sequence can go again. Behind an
    /// earlier failed batch: yes, as is (it is judged again after that one). A stale
    /// answer (the partition has since acknowledged later batches): yes, as is. A real
    /// gap, or a partition that forgot this producer: yes, renumbered once the window
    /// has drained.
    fn resequence(&mut self, batch: &Batch, err: &ClientError) -> bool {
        if self.retry.is_some() {
            return true;
        }
        let expected = if err.code() == Some(ErrorCode::UnknownProducer) {
            self.acked_next = 0;
            0
        } else {
            match err.expected_sequence() {
                Some(e) if e < self.acked_next => return true,
                Some(e) => e,
                None => return false,
            }
        };
        tracing::debug!(topic = %self.topic, partition = self.partition, base_seq = ?batch.base_seq(), expected,
            "sequence gap: renumbering the unwritten batches");
        self.renumber_from = Some(expected);
        true
    }

    /// A batch refused as too large is retried as two halves, so one oversized record
    /// fails alone instead of taking its batch-mates with it.
    fn split(&mut self, batch: Batch, err: ClientError) {
        match batch.split() {
            (first, Some(second)) => {
                tracing::debug!(topic = %self.topic, partition = self.partition, error = %err, "batch too large; splitting");
                *self.unresolved.entry(first.id).or_insert(0) += 1;
                let retry = self.retry.get_or_insert_with(Vec::new);
                retry.push(first);
                retry.push(second);
            }
            (whole, None) => self.resolve(whole, Err(err)),
        }
    }

    /// Puts the failed batches back in front, in order, and waits before resending.
    async fn schedule_retry(&mut self, retry: Vec<Batch>) {
        let hinted = retry.first().and_then(|b| b.last_error.as_ref()).is_some_and(|e| e.leader_hint().is_some());
        for batch in retry.into_iter().rev() {
            self.ready.push_front(batch);
        }
        if let Some(mut seq) = self.renumber_from.take() {
            for batch in self.ready.iter_mut() {
                batch.renumber(seq);
                seq = seq_add(seq, batch.len() as u32);
            }
            self.next_seq = seq;
        }
        self.cautious = true;
        if self.refresh_needed {
            self.refresh_needed = false;
            if let Err(e) = self.client.refresh_metadata().await {
                tracing::debug!(error = %e, "metadata refresh failed; retrying anyway");
            }
        }
        // A leader hint is fresh news: use it at once the first time.
        let delay = if hinted && self.backoff.attempts() == 0 {
            self.backoff.next_delay(); // Counted, so a second failure in a row does back off.
            Duration::ZERO
        } else {
            self.backoff.next_delay()
        };
        self.backoff_until = (!delay.is_zero()).then(|| Instant::now() + delay);
    }

    fn resolve(&mut self, batch: Batch, res: std::result::Result<u64, ClientError>) {
        if let Some(n) = self.unresolved.get_mut(&batch.id) {
            *n -= 1;
            if *n == 0 {
                self.unresolved.remove(&batch.id);
            }
        }
        match res {
            Ok(base) => batch.complete(self.partition, base),
            Err(e) => {
                tracing::debug!(topic = %self.topic, partition = self.partition, error = %e, records = batch.len(), "batch failed");
                batch.fail(e)
            }
        }
        self.answer_flushes();
    }

    fn answer_flushes(&mut self) {
        let first_open = self.unresolved.keys().next().copied().unwrap_or(u64::MAX);
        let mut i = 0;
        while i < self.flushes.len() {
            if first_open >= self.flushes[i].0 {
                let _ = self.flushes.swap_remove(i).1.send(());
            } else {
                i += 1;
            }
        }
    }
}

fn is_sequence_error(e: &ClientError) -> bool {
    matches!(e.code(), Some(ErrorCode::OutOfOrderSequence | ErrorCode::UnknownProducer))
}

fn is_size_error(e: &ClientError) -> bool {
    matches!(e.code(), Some(ErrorCode::RecordTooLarge | ErrorCode::BatchTooLarge))
}

/// One produce attempt to the partition's current leader (or, while none is known, a
/// replica in turn).
async fn send_batch(
    client: Client,
    topic: Arc<str>,
    partition: PartitionId,
    batch: Bytes,
    attempt: u32,
) -> Result<v1::ProduceResponse> {
    let (_, addr) = client.resolve_partition_target(&topic, partition, attempt).await?;
    let req = v1::ProduceRequest { topic: topic.to_string(), partition, batch };
    let timeout = client.config().request_timeout;
    let call = |ch| {
        let mut c = client.data_client(ch);
        async move { c.produce(req).await }
    };
    client.rpc(&addr, timeout, call).await
}
