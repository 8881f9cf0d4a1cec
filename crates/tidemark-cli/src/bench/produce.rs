//! `tidemark bench produce`: producers send as fast as they are acknowledged (or at
//! `--rate`); latency is send → acknowledgement, per record.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use tidemark_client::{ProducerConfig, ProducerRecord};
use tokio::time::Instant;

use super::stats::{print_text, show_progress, Stats};
use crate::acks::{Acks, Delivery};
use crate::common::{print_json, ClientArgs, Format};

#[derive(Debug, clap::Args)]
pub struct ProduceBench {
    /// The topic to write (created with --partitions and --replication-factor if missing).
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

pub async fn run(a: ProduceBench) -> anyhow::Result<()> {
    anyhow::ensure!(a.producers > 0 && a.duration > 0, "--producers and --duration must be at least 1");
    anyhow::ensure!(a.record_size > 0, "--record-size must be at least 1 byte");
    let client = a.client.client()?;
    super::ensure_topic(&client, &a.topic, a.partitions, a.replication_factor).await?;
    let stats = Arc::new(Stats::new());
    let deadline = stats.start + Duration::from_secs(a.duration);
    let value = Bytes::from(vec![b'x'; a.record_size]);
    let per_producer_rate = a.rate.map(|r| (r as f64 / a.producers as f64).max(0.001));
    let config = ProducerConfig {
        idempotent: !a.no_idempotent,
        linger: Duration::from_millis(a.linger_ms),
        ..ProducerConfig::default()
    };
    let mut tasks = Vec::new();
    for _ in 0..a.producers {
        let producer = client.producer(config.clone())?;
        let (stats, value, topic) = (stats.clone(), value.clone(), a.topic.clone());
        tasks.push(tokio::spawn(run_producer(producer, topic, value, per_producer_rate, deadline, stats)));
    }
    let progress = tokio::spawn(show_progress(stats.clone(), deadline, String::new));
    for t in tasks {
        t.await.context("a producer task panicked")?;
    }
    progress.abort();
    let summary = stats.summarize(None);
    match a.format {
        Format::Json => print_json(&summary)?,
        Format::Text => print_text(&summary, "ack latency", stats.first_error().as_deref()),
    }
    Ok(())
}

/// Books one acknowledgement (or failure) of a record sent at `sent`.
fn on_ack(stats: &Stats, sent: Instant, bytes: usize, result: Result<(), String>) {
    match result {
        Ok(()) => stats.record(sent.elapsed().as_micros() as u64, 1, bytes as u64),
        Err(e) => stats.error(1, e),
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
    let size = value.len();
    let acks = Acks::spawn(stats, move |stats, at: Instant, r: Delivery| {
        on_ack(stats, at, size, r.map(|_| ()).map_err(|e| e.to_string()))
    });
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
        acks.push(at, producer.send(&topic, ProducerRecord::new(value.clone())));
        sent += 1;
        if sent.is_multiple_of(256) {
            tokio::task::yield_now().await;
        }
    }
    acks.finish().await;
    producer.close().await;
}
