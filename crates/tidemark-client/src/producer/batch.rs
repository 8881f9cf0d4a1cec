//! Batch accumulation: records waiting for their partition's batch to fill or linger out,
//! and sealed batches encoded once and kept as bytes for every retry.
//!
//! Keeping the encoded bytes matters beyond saving work: once idempotence stamps
//! (producer id, epoch, base sequence) into the header at seal time, a retry must resend
//! exactly the same batch so the server can recognise it as a duplicate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tidemark_types::{PartitionId, Record, RecordBatchBuilder};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::error::ClientError;
use crate::producer::RecordMetadata;

/// Bytes a record adds to an encoded batch. Mirrors the layout in
/// `tidemark_types::batch` (timestamp delta, key length, value length, header count,
/// and per header two lengths); a test pins it to the real encoder.
pub(crate) fn encoded_len(r: &Record) -> usize {
    4 + 4 + 4 + 2 + r.payload_len() + r.headers.len() * 6
}

/// Bytes of records sent but not yet resolved, so `send`ers can wait for room.
#[derive(Debug, Default)]
pub(crate) struct BufferGauge {
    used: AtomicUsize,
    released: Notify,
}

impl BufferGauge {
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Waits until fewer than `max` bytes are buffered.
    pub(crate) async fn wait_below(&self, max: usize) {
        loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.used() < max {
                return;
            }
            notified.await;
        }
    }
}

/// A record's share of the buffer, given back when the record is resolved or dropped
/// (so no path can leak buffer space).
#[derive(Debug)]
pub(crate) struct Ticket {
    gauge: Arc<BufferGauge>,
    size: usize,
}

impl Ticket {
    pub(crate) fn new(gauge: Arc<BufferGauge>, size: usize) -> Ticket {
        gauge.used.fetch_add(size, Ordering::AcqRel);
        Ticket { gauge, size }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gauge.used.fetch_sub(self.size, Ordering::AcqRel);
        self.gauge.released.notify_waiters();
    }
}

pub(crate) type Ack = oneshot::Sender<Result<RecordMetadata, ClientError>>;

/// A record on its way to a partition, with the future waiting for its outcome.
#[derive(Debug)]
pub(crate) struct PendingRecord {
    pub record: Record,
    pub ack: Ack,
    /// When `send` was called plus the delivery timeout.
    pub deadline: Instant,
    pub ticket: Ticket,
}

impl PendingRecord {
    pub(crate) fn fail(self, err: ClientError) {
        let _ = self.ack.send(Err(err));
    }
}

/// The partition's open batch: filled by `push`, sealed when full or lingered out.
#[derive(Debug)]
pub(crate) struct Accumulator {
    max_batch_bytes: usize,
    linger: Duration,
    records: Vec<PendingRecord>,
    bytes: usize,
    opened_at: Option<Instant>,
}

impl Accumulator {
    pub(crate) fn new(max_batch_bytes: usize, linger: Duration) -> Self {
        Accumulator { max_batch_bytes, linger, records: Vec::new(), bytes: 0, opened_at: None }
    }

    /// Adds a record. If it would not fit in the open batch, that batch is returned
    /// sealed first and the record opens the next one.
    pub(crate) fn push(&mut self, rec: PendingRecord, now: Instant) -> Option<Vec<PendingRecord>> {
        let size = encoded_len(&rec.record);
        let sealed = if !self.records.is_empty() && self.encoded_len() + size > self.max_batch_bytes {
            self.take()
        } else {
            None
        };
        self.opened_at.get_or_insert(now);
        self.bytes += size;
        self.records.push(rec);
        sealed
    }

    /// Whether the open batch has reached the size limit and should go now.
    pub(crate) fn is_full(&self) -> bool {
        !self.records.is_empty() && self.encoded_len() >= self.max_batch_bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// When the open batch must be sent even if not full.
    pub(crate) fn linger_deadline(&self) -> Option<Instant> {
        self.opened_at.map(|t| t + self.linger)
    }

    /// Seals the open batch.
    pub(crate) fn take(&mut self) -> Option<Vec<PendingRecord>> {
        self.opened_at = None;
        self.bytes = 0;
        (!self.records.is_empty()).then(|| std::mem::take(&mut self.records))
    }

    fn encoded_len(&self) -> usize {
        tidemark_types::batch::HEADER_LEN + self.bytes
    }
}

/// A sealed batch: encoded once, resent as is, resolved once.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Increasing per partition, so flushes know which batches came before them.
    pub id: u64,
    pub bytes: Bytes,
    acks: Vec<(Ack, Ticket)>,
    /// The earliest deadline of its records.
    pub deadline: Instant,
    /// When the cluster first said it does not know the topic, for this batch.
    pub unknown_since: Option<Instant>,
    pub last_error: Option<ClientError>,
    /// The idempotence stamp in `bytes`: (producer id, epoch, base sequence).
    stamp: Option<(i64, i16, i32)>,
}

impl Batch {
    /// Encodes the records. `producer` is the idempotence stamp (id, epoch, base
    /// sequence), `None` for a producer without idempotence.
    pub(crate) fn seal(id: u64, records: Vec<PendingRecord>, producer: Option<(i64, i16, i32)>) -> Batch {
        let mut builder = RecordBatchBuilder::new();
        let mut acks = Vec::with_capacity(records.len());
        let mut deadline = None::<Instant>;
        for r in records {
            deadline = Some(deadline.map_or(r.deadline, |d| d.min(r.deadline)));
            builder.push(r.record);
            acks.push((r.ack, r.ticket));
        }
        let bytes = builder.build(producer);
        let deadline = deadline.unwrap_or_else(Instant::now);
        Batch { id, bytes, acks, deadline, unknown_since: None, last_error: None, stamp: producer }
    }

    /// The base sequence of an idempotent batch.
    pub(crate) fn base_seq(&self) -> Option<i32> {
        self.stamp.map(|s| s.2)
    }

    /// Renumbers a batch the server never wrote (the records stay the same bytes).
    pub(crate) fn renumber(&mut self, seq: i32) {
        if let Some((pid, epoch, _)) = self.stamp {
            self.stamp = Some((pid, epoch, seq));
            self.bytes = tidemark_types::restamp(&self.bytes, (pid, epoch, seq));
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.acks.len()
    }

    /// Splits a batch the server refused as too large into two halves, in order, each
    /// re-encoded from the records sliced out of the original bytes (no copies). Both
    /// halves keep the batch's id, so flushes still wait for them. A batch that cannot
    /// be split (one record) comes back whole, with no second half.
    pub(crate) fn split(self) -> (Batch, Option<Batch>) {
        let records = match tidemark_types::decode_records(&self.bytes) {
            Ok(r) if r.len() == self.acks.len() && r.len() > 1 => r,
            _ => return (self, None),
        };
        let mid = records.len() / 2;
        let mut acks = self.acks;
        let second_acks = acks.split_off(mid);
        let stamp = self.stamp;
        let half = |records: &[Record], acks: Vec<(Ack, Ticket)>, skip: usize| {
            let mut builder = RecordBatchBuilder::new();
            for r in records {
                builder.push(r.clone());
            }
            // The halves take the original's sequence range between them.
            let stamp = stamp.map(|(pid, epoch, seq)| (pid, epoch, tidemark_types::seq_add(seq, skip as u32)));
            Batch {
                id: self.id,
                bytes: builder.build(stamp),
                acks,
                deadline: self.deadline,
                unknown_since: self.unknown_since,
                last_error: self.last_error.clone(),
                stamp,
            }
        };
        (half(&records[..mid], acks, 0), Some(half(&records[mid..], second_acks, mid)))
    }

    /// Resolves every record with its offset: the batch's records are consecutive.
    pub(crate) fn complete(self, partition: PartitionId, base_offset: u64) {
        for (i, (ack, _ticket)) in self.acks.into_iter().enumerate() {
            let _ = ack.send(Ok(RecordMetadata { partition, offset: base_offset + i as u64 }));
        }
    }

    pub(crate) fn fail(self, err: ClientError) {
        for (ack, _ticket) in self.acks {
            let _ = ack.send(Err(err.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_types::Header;

    fn pending(
        gauge: &Arc<BufferGauge>,
        value_len: usize,
    ) -> (PendingRecord, oneshot::Receiver<Result<RecordMetadata, ClientError>>) {
        let (ack, rx) = oneshot::channel();
        let record = Record { key: None, value: Bytes::from(vec![b'x'; value_len]), headers: vec![], timestamp_ms: 1 };
        let ticket = Ticket::new(gauge.clone(), value_len);
        (PendingRecord { record, ack, deadline: Instant::now() + Duration::from_secs(30), ticket }, rx)
    }

    #[test]
    fn size_estimate_matches_the_encoder() {
        let r = Record {
            key: Some(Bytes::from_static(b"key")),
            value: Bytes::from_static(b"value"),
            headers: vec![
                Header { key: "h1".into(), value: Bytes::from_static(b"v") },
                Header { key: "h2".into(), value: Bytes::new() },
            ],
            timestamp_ms: 5,
        };
        let mut b = RecordBatchBuilder::new();
        let empty = b.encoded_len();
        b.push(r.clone());
        assert_eq!(b.encoded_len() - empty, encoded_len(&r));
        assert_eq!(b.build(None).len(), b.encoded_len());
    }

    #[tokio::test]
    async fn seals_when_the_next_record_would_overflow() {
        let gauge = Arc::new(BufferGauge::default());
        let per = encoded_len(&pending(&gauge, 100).0.record);
        let max = tidemark_types::batch::HEADER_LEN + 3 * per;
        let mut acc = Accumulator::new(max, Duration::from_millis(5));
        let now = Instant::now();
        for _ in 0..3 {
            assert!(acc.push(pending(&gauge, 100).0, now).is_none());
        }
        assert!(acc.is_full(), "exactly at the limit: send now");
        let sealed = acc.push(pending(&gauge, 100).0, now).expect("fourth record overflows");
        assert_eq!(sealed.len(), 3);
        assert!(!acc.is_full());
        assert_eq!(acc.take().map(|v| v.len()), Some(1));
        assert!(acc.take().is_none() && acc.linger_deadline().is_none());
    }

    #[tokio::test]
    async fn oversized_record_goes_alone() {
        let gauge = Arc::new(BufferGauge::default());
        let mut acc = Accumulator::new(1000, Duration::from_millis(5));
        let now = Instant::now();
        assert!(acc.push(pending(&gauge, 10).0, now).is_none());
        let sealed = acc.push(pending(&gauge, 5000).0, now).unwrap();
        assert_eq!(sealed.len(), 1);
        assert!(acc.is_full(), "the big record is sealed at once, alone");
        assert_eq!(acc.take().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn linger_starts_with_the_first_record() {
        let gauge = Arc::new(BufferGauge::default());
        let mut acc = Accumulator::new(1 << 20, Duration::from_millis(5));
        assert_eq!(acc.linger_deadline(), None);
        let t0 = Instant::now();
        acc.push(pending(&gauge, 1).0, t0);
        acc.push(pending(&gauge, 1).0, t0 + Duration::from_millis(3));
        assert_eq!(acc.linger_deadline(), Some(t0 + Duration::from_millis(5)));
    }

    #[tokio::test]
    async fn batch_resolves_consecutive_offsets_and_releases_buffer() {
        let gauge = Arc::new(BufferGauge::default());
        let (a, ra) = pending(&gauge, 10);
        let (b, rb) = pending(&gauge, 20);
        assert_eq!(gauge.used(), 30);
        let batch = Batch::seal(7, vec![a, b], None);
        assert_eq!(batch.len(), 2);
        let decoded = tidemark_types::decode_records(&batch.bytes).unwrap();
        assert_eq!(decoded.len(), 2);
        batch.complete(3, 100);
        assert_eq!(ra.await.unwrap().unwrap(), RecordMetadata { partition: 3, offset: 100 });
        assert_eq!(rb.await.unwrap().unwrap(), RecordMetadata { partition: 3, offset: 101 });
        assert_eq!(gauge.used(), 0);
        gauge.wait_below(1).await;
    }

    #[tokio::test]
    async fn split_keeps_order_and_acks() {
        let gauge = Arc::new(BufferGauge::default());
        let (recs, rxs): (Vec<_>, Vec<_>) = (0..5).map(|i| pending(&gauge, i + 1)).unzip();
        let (a, b) = Batch::seal(4, recs, None).split();
        let b = b.unwrap();
        assert_eq!((a.id, b.id, a.len(), b.len()), (4, 4, 2, 3));
        let lens: Vec<usize> = [&a, &b]
            .iter()
            .flat_map(|x| tidemark_types::decode_records(&x.bytes).unwrap())
            .map(|r| r.value.len())
            .collect();
        assert_eq!(lens, vec![1, 2, 3, 4, 5]);
        a.complete(0, 10);
        b.complete(0, 20);
        let offsets: Vec<u64> =
            futures::future::join_all(rxs).await.into_iter().map(|r| r.unwrap().unwrap().offset).collect();
        assert_eq!(offsets, vec![10, 11, 20, 21, 22]);
        let (one, _) = pending(&gauge, 1);
        assert!(Batch::seal(0, vec![one], None).split().1.is_none(), "a single record cannot be split");
    }

    #[tokio::test]
    async fn idempotent_halves_and_renumbering_keep_the_sequence_range() {
        let gauge = Arc::new(BufferGauge::default());
        let (recs, _rxs): (Vec<_>, Vec<_>) = (0..5).map(|i| pending(&gauge, i + 1)).unzip();
        let (a, b) = Batch::seal(0, recs, Some((9, 1, 100))).split();
        let mut b = b.unwrap();
        let header = |x: &Batch| tidemark_types::BatchHeader::read(&x.bytes).unwrap();
        assert_eq!((header(&a).base_sequence, header(&b).base_sequence), (100, 102));
        assert_eq!((header(&a).producer_id, header(&b).producer_epoch), (9, 1));
        let records = tidemark_types::decode_records(&b.bytes).unwrap();
        b.renumber(7);
        assert_eq!((b.base_seq(), header(&b).base_sequence), (Some(7), 7));
        assert_eq!(tidemark_types::decode_records(&b.bytes).unwrap(), records, "the records stay the same");
        tidemark_types::BatchHeader::validate(&b.bytes, &Default::default()).expect("the CRC is recomputed");
    }

    #[tokio::test]
    async fn failed_batch_fails_every_record() {
        let gauge = Arc::new(BufferGauge::default());
        let (a, ra) = pending(&gauge, 1);
        let (b, rb) = pending(&gauge, 1);
        Batch::seal(0, vec![a, b], None).fail(ClientError::Protocol("boom".into()));
        assert!(matches!(ra.await.unwrap(), Err(ClientError::Protocol(_))));
        assert!(matches!(rb.await.unwrap(), Err(ClientError::Protocol(_))));
        assert_eq!(gauge.used(), 0);
    }
}
