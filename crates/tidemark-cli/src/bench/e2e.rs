//! `tidemark bench e2e`: publish-to-receive latency at a fixed rate.
//!
//! ```text
//! consumer at end of every partition (positions fixed before the first send)
//! producer ── value = run id | send µs | padding ──▶ cluster ──▶ consumer: now − send µs
//! after --duration: producer stops; consumer drains until it has every acknowledged
//! record of this run (or DRAIN_LIMIT passes: the rest count as errors)
//! ```
//!
//! Producer and consumer live in this one process and read one monotonic clock, so the
//! latency needs no clock synchronisation and is immune to wall-clock steps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use tidemark_client::{Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord, StartPosition};
use tokio::sync::watch;
use tokio::time::Instant;

use super::stats::{print_text, show_progress, Stats};
use crate::acks::{Acks, Delivery};
use crate::common::{print_json, ClientArgs, Format};

/// Bytes of the stamp at the start of every value: run id, then send time.
const STAMP_LEN: usize = 16;
/// How long the consumer may still wait for acknowledged records once sending stopped.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct E2eBench {
    /// The topic to write and tail (created with --partitions and --replication-factor if missing).
    #[arg(long, default_value = "e2e")]
    pub topic: String,
    /// Records per second the producer sends (paced evenly, not in bursts).
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Bytes of each record's value (at least 16: the stamp).
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Partitions, if the topic has to be created.
    #[arg(long, default_value_t = 3)]
    pub partitions: u32,
    /// Replication factor, if the topic has to be created.
    #[arg(long, default_value_t = 3)]
    pub replication_factor: u32,
    /// How long a producer holds a batch open for more records while it could send it.
    /// 0 (the SDK default) sends at once and batches only while the window is full.
    #[arg(long, default_value_t = 0)]
    pub linger_ms: u64,
    /// text for people; json prints one summary object on stdout for scripts.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// What ties a value to this run and when it was sent.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    run: u64,
    origin: Instant,
}

impl Stamp {
    /// A value of `size` bytes (at least [`STAMP_LEN`]) carrying the run id and the send time.
    fn encode(&self, sent_us: u64, size: usize) -> Bytes {
        let mut b = BytesMut::with_capacity(size.max(STAMP_LEN));
        b.put_u64_le(self.run);
        b.put_u64_le(sent_us);
        b.resize(size.max(STAMP_LEN), b'x');
        b.freeze()
    }

    /// The send time of a value of this run; `None` for anything else on the topic.
    fn decode(&self, value: &[u8]) -> Option<u64> {
        let run = u64::from_le_bytes(value.get(..8)?.try_into().ok()?);
        let sent = u64::from_le_bytes(value.get(8..STAMP_LEN)?.try_into().ok()?);
        (run == self.run).then_some(sent)
    }

    fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }
}

/// Distinct per run (wall clock and pid), so records of an earlier run still in the
/// topic, or of a concurrent one, are never mistaken for ours.
fn run_id() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ ((std::process::id() as u64) << 40)
}

pub async fn run(a: E2eBench) -> anyhow::Result<()> {
    anyhow::ensure!(a.rate > 0 && a.duration > 0, "--rate and --duration must be at least 1");
    anyhow::ensure!(a.record_size >= STAMP_LEN, "--record-size must be at least {STAMP_LEN} bytes (the stamp)");
    let client = a.client.client()?;
    super::ensure_topic(&client, &a.topic, a.partitions, a.replication_factor).await?;
    // Positioned at the end now, before anything is sent, so no record of this run is missed.
    let consumer = client
        .consumer(&a.topic, None, StartPosition::Latest, ConsumerConfig::default())
        .await
        .with_context(|| format!("could not start a consumer of {:?}", a.topic))?;
    let config = ProducerConfig { linger: Duration::from_millis(a.linger_ms), ..ProducerConfig::default() };
    let producer = client.producer(config).context("could not start the producer")?;
    let stats = Arc::new(Stats::new());
    let stamp = Stamp { run: run_id(), origin: stats.start };
    let deadline = stats.start + Duration::from_secs(a.duration);
    let sent = Arc::new(AtomicU64::new(0));
    let (acked_tx, acked_rx) = watch::channel(None);
    let receiver = tokio::spawn(receive(consumer, stamp, acked_rx, stats.clone()));
    let shown = sent.clone();
    let progress = tokio::spawn(show_progress(stats.clone(), deadline, move || {
        format!("  sent {}", shown.load(Ordering::Relaxed))
    }));
    let pace = Pace { rate: a.rate as f64, deadline, size: a.record_size };
    let acked = send_paced(producer, &a.topic, pace, stamp, &sent, &stats).await;
    let _ = acked_tx.send(Some(acked));
    let received = receiver.await.context("the consumer task panicked")?;
    progress.abort();
    if received < acked {
        stats.error(
            acked - received,
            format!("{} acknowledged record(s) not received within {DRAIN_LIMIT:?}", acked - received),
        );
    }
    let summary = stats.summarize(None);
    match a.format {
        Format::Json => print_json(&summary)?,
        Format::Text => {
            println!("sent         {} at {} records/s, {acked} acknowledged", sent.load(Ordering::Relaxed), a.rate);
            print_text(&summary, "e2e latency", stats.first_error().as_deref());
        }
    }
    Ok(())
}

struct Pace {
    rate: f64,
    deadline: Instant,
    size: usize,
}

/// Sends stamped records evenly at `pace.rate` until its deadline; returns how many were
/// acknowledged (send failures are booked as errors).
async fn send_paced(
    producer: Producer,
    topic: &str,
    pace: Pace,
    stamp: Stamp,
    sent: &AtomicU64,
    stats: &Arc<Stats>,
) -> u64 {
    let acks = Acks::spawn((0u64, stats.clone()), |(acked, stats), (), r: Delivery| match r {
        Ok(_) => *acked += 1,
        Err(e) => stats.error(1, format!("send: {e}")),
    });
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        let now = Instant::now();
        if now >= pace.deadline {
            break;
        }
        let due = start + Duration::from_secs_f64(n as f64 / pace.rate);
        if due > now {
            tokio::time::sleep_until(due.min(pace.deadline)).await;
            continue;
        }
        let value = stamp.encode(stamp.now_us(), pace.size);
        acks.push((), producer.send(topic, ProducerRecord::new(value)));
        n += 1;
        sent.store(n, Ordering::Relaxed);
    }
    let (acked, _) = acks.finish().await;
    producer.close().await;
    acked
}

/// Tails the topic, booking one latency sample per record of this run, until it has as
/// many as the producer got acknowledged (announced on `acked` when sending is over) or
/// [`DRAIN_LIMIT`] after that. Returns how many records of this run it received.
async fn receive(
    mut consumer: Consumer,
    stamp: Stamp,
    mut acked: watch::Receiver<Option<u64>>,
    stats: Arc<Stats>,
) -> u64 {
    let mut received = 0u64;
    let mut drain_until = None;
    loop {
        if drain_until.is_none() {
            if let Some(target) = *acked.borrow_and_update() {
                drain_until = Some((target, Instant::now() + DRAIN_LIMIT));
            }
        }
        if let Some((target, until)) = drain_until {
            if received >= target || Instant::now() >= until {
                return received;
            }
        }
        match consumer.poll(Duration::from_millis(100)).await {
            Ok(records) => {
                let now_us = stamp.now_us();
                for r in records {
                    if let Some(sent_us) = stamp.decode(&r.value) {
                        received += 1;
                        stats.record(now_us.saturating_sub(sent_us), 1, r.value.len() as u64);
                    }
                }
            }
            Err(e) => {
                stats.error(1, format!("poll: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_foreign_values_are_ignored() {
        let stamp = Stamp { run: 42, origin: Instant::now() };
        let v = stamp.encode(1_234_567, 1024);
        assert_eq!(v.len(), 1024);
        assert_eq!(stamp.decode(&v), Some(1_234_567));
        assert_eq!(stamp.encode(7, 3).len(), STAMP_LEN, "never shorter than the stamp");
        let other_run = Stamp { run: 43, ..stamp };
        assert_eq!(other_run.decode(&v), None, "another run's record");
        assert_eq!(stamp.decode(b"hello"), None, "too short to hold a stamp");
        assert_eq!(stamp.decode(&[b'x'; 64]), None, "a plain record");
    }

    #[test]
    fn run_ids_differ_between_runs() {
        let a = run_id();
        std::thread::sleep(Duration::from_millis(1));
        assert_ne!(a, run_id());
    }
}
