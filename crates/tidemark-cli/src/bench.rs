//! `tidemark bench produce`: a bounded load generator that reports what a user feels:
//! throughput, acknowledgement latency percentiles (HDR histogram), the longest stretch
//! without any acknowledgement, and errors. It targets whatever `--bootstrap` names, runs
//! for `--duration` seconds and stops by itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use tidemark_client::{Client, ErrorCode, ProducerConfig, ProducerRecord};
use tokio::time::Instant;

use crate::common::{print_json, ClientArgs, Format};

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Measure produce throughput and acknowledgement latency.
    #[command(after_help = "Examples:\n  \
        tidemark bench produce --topic bench --duration 30\n  \
        tidemark bench produce --topic bench --rate 2000 --duration 20 --format json\n  \
        tidemark bench produce --topic bench --producers 4 --no-idempotent\n\n\
        The topic is created if it does not exist. A live line shows records/s, MB/s and the\n\
        p99 of the last second; the summary adds p50/p99/p99.9/max latency (send to ack), the\n\
        longest interval with no acknowledgement, and errors.")]
    Produce(ProduceBench),
}

#[derive(Debug, clap::Args)]
pub struct ProduceBench {
    #[arg(long, default_value = "bench")]
    pub topic: String,
    /// Partitions, if the topic has to be created.
    #[arg(long, default_value_t = 3)]
    pub partitions: u32,
    /// Replication factor, if the topic has to be created.
    #[arg(long, default_value_t = 3)]
    pub replication_factor: u32,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Target records per second over all producers (default: as fast as acknowledged).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Independent producers (each its own batches and producer id).
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Idempotent producers (the default).
    #[arg(long, overrides_with = "no_idempotent")]
    pub idempotent: bool,
    /// Producers without idempotence, for comparison.
    #[arg(long, overrides_with = "idempotent")]
    pub no_idempotent: bool,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The JSON summary (field names are a contract for scripts comparing runs).
#[derive(Debug, Serialize)]
pub struct Summary {
    pub records: u64,
    pub seconds: f64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub max_ack_gap_ms: f64,
    pub errors: u64,
}

/// Shared by the producer tasks: the latency histogram (µs), counters, ack gap tracking.
struct Stats {
    start: Instant,
    hist: Mutex<Histogram<u64>>,
    interval: Mutex<Histogram<u64>>,
    acked: AtomicU64,
    errors: AtomicU64,
    last_ack_us: AtomicU64,
    max_gap_us: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Stats {
    fn new() -> Stats {
        let hist = || Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds"));
        Stats {
            start: Instant::now(),
            hist: hist(),
            interval: hist(),
            acked: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_ack_us: AtomicU64::new(0),
            max_gap_us: AtomicU64::new(0),
            first_error: Mutex::new(None),
        }
    }

    fn on_ack(&self, sent: Instant, result: Result<(), String>) {
        let now = Instant::now();
        match result {
            Ok(()) => {
                let us = now.duration_since(sent).as_micros().max(1) as u64;
                let _ = self.hist.lock().expect("histogram lock").record(us);
                let _ = self.interval.lock().expect("histogram lock").record(us);
                self.acked.fetch_add(1, Ordering::Relaxed);
                let at = now.duration_since(self.start).as_micros() as u64;
                let prev = self.last_ack_us.swap(at, Ordering::Relaxed);
                self.max_gap_us.fetch_max(at.saturating_sub(prev), Ordering::Relaxed);
            }
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.first_error.lock().expect("error lock").get_or_insert(e);
            }
        }
    }
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Produce(a) => produce(a).await,
    }
}

async fn produce(a: ProduceBench) -> anyhow::Result<()> {
    anyhow::ensure!(a.producers > 0 && a.duration > 0, "--producers and --duration must be at least 1");
    anyhow::ensure!(a.record_size > 0, "--record-size must be at least 1 byte");
    let client = a.client.client()?;
    ensure_topic(&client, &a).await?;
    let stats = Arc::new(Stats::new());
    let deadline = stats.start + Duration::from_secs(a.duration);
    let value = Bytes::from(vec![b'x'; a.record_size]);
    let per_producer_rate = a.rate.map(|r| (r as f64 / a.producers as f64).max(0.001));
    let config = ProducerConfig { idempotent: !a.no_idempotent, ..ProducerConfig::default() };
    let mut tasks = Vec::new();
    for _ in 0..a.producers {
        let producer = client.producer(config.clone())?;
        let (stats, value, topic) = (stats.clone(), value.clone(), a.topic.clone());
        tasks.push(tokio::spawn(run_producer(producer, topic, value, per_producer_rate, deadline, stats)));
    }
    let progress = tokio::spawn(show_progress(stats.clone(), a.record_size, deadline));
    for t in tasks {
        t.await.context("a producer task panicked")?;
    }
    progress.abort();
    let summary = summarize(&stats, a.record_size);
    match a.format {
        Format::Json => print_json(&summary)?,
        Format::Text => print_text(&summary, stats.first_error.lock().expect("error lock").as_deref()),
    }
    Ok(())
}

async fn ensure_topic(client: &Client, a: &ProduceBench) -> anyhow::Result<()> {
    let admin = client.admin();
    match admin.create_topic(&a.topic, a.partitions, a.replication_factor, 0, 0).await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(ErrorCode::TopicExists) => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("could not create topic {:?}", a.topic))),
    }
}

/// Sends until `deadline` (paced when `rate` is set), then waits for every outstanding ack.
async fn run_producer(
    producer: tidemark_client::Producer,
    topic: String,
    value: Bytes,
    rate: Option<f64>,
    deadline: Instant,
    stats: Arc<Stats>,
) {
    let mut pending = FuturesUnordered::new();
    let start = Instant::now();
    let mut sent = 0u64;
    while Instant::now() < deadline {
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(sent as f64 / rate);
            if due > Instant::now() {
                tokio::time::sleep_until(due.min(deadline)).await;
                continue;
            }
        } else {
            producer.wait_for_buffer_space().await;
        }
        let at = Instant::now();
        let fut = producer.send(&topic, ProducerRecord::new(value.clone()));
        pending.push(fut.map(move |r| (at, r.map(|_| ()).map_err(|e| e.to_string()))));
        sent += 1;
        while let Some(Some((at, r))) = pending.next().now_or_never() {
            stats.on_ack(at, r);
        }
        if sent.is_multiple_of(256) {
            tokio::task::yield_now().await;
        }
    }
    while let Some((at, r)) = pending.next().await {
        stats.on_ack(at, r);
    }
    producer.close().await;
}

/// One line a second on stderr (hidden when stderr is not a terminal).
async fn show_progress(stats: Arc<Stats>, record_size: usize, deadline: Instant) {
    let bar = indicatif::ProgressBar::new_spinner();
    let mut last = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let acked = stats.acked.load(Ordering::Relaxed);
        let p99 = {
            let mut h = stats.interval.lock().expect("histogram lock");
            let p = h.value_at_quantile(0.99);
            h.reset();
            p
        };
        let n = acked - last;
        last = acked;
        let left = deadline.saturating_duration_since(Instant::now()).as_secs();
        bar.set_message(format!(
            "{n} records/s  {:.1} MB/s  p99 {:.2} ms  errors {}  ({left} s left)",
            n as f64 * record_size as f64 / 1e6,
            p99 as f64 / 1000.0,
            stats.errors.load(Ordering::Relaxed)
        ));
        bar.tick();
    }
}

fn summarize(stats: &Stats, record_size: usize) -> Summary {
    let seconds = stats.last_ack_us.load(Ordering::Relaxed).max(1) as f64 / 1e6;
    let records = stats.acked.load(Ordering::Relaxed);
    let h = stats.hist.lock().expect("histogram lock");
    let ms = |q: f64| if records == 0 { 0.0 } else { h.value_at_quantile(q) as f64 / 1000.0 };
    Summary {
        records,
        seconds,
        records_per_sec: records as f64 / seconds,
        mb_per_sec: records as f64 * record_size as f64 / 1e6 / seconds,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: if records == 0 { 0.0 } else { h.max() as f64 / 1000.0 },
        max_ack_gap_ms: stats.max_gap_us.load(Ordering::Relaxed) as f64 / 1000.0,
        errors: stats.errors.load(Ordering::Relaxed),
    }
}

fn print_text(s: &Summary, first_error: Option<&str>) {
    println!("records      {} in {:.1} s", s.records, s.seconds);
    println!("throughput   {:.0} records/s, {:.1} MB/s", s.records_per_sec, s.mb_per_sec);
    println!(
        "ack latency  p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        s.p50_ms, s.p99_ms, s.p999_ms, s.max_ms
    );
    println!("max ack gap  {:.1} ms", s.max_ack_gap_ms);
    match first_error {
        Some(e) => println!("errors       {} (first: {e})", s.errors),
        None => println!("errors       0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_has_the_contract_fields_and_measures_gaps() {
        let stats = Stats::new();
        let sent = Instant::now();
        stats.on_ack(sent, Ok(()));
        stats.on_ack(sent, Err("boom".into()));
        let s = summarize(&stats, 1024);
        assert_eq!((s.records, s.errors), (1, 1));
        let json = serde_json::to_value(&s).unwrap();
        for field in
            ["records_per_sec", "mb_per_sec", "p50_ms", "p99_ms", "p999_ms", "max_ms", "max_ack_gap_ms", "errors"]
        {
            assert!(json.get(field).is_some(), "missing {field} in {json}");
        }
        assert_eq!(stats.first_error.lock().unwrap().as_deref(), Some("boom"));
    }
}
