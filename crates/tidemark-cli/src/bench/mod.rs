//! `tidemark bench`: bounded load generators that report what a user feels — throughput,
//! latency percentiles (HDR histogram), the longest stall and errors — against whatever
//! `--bootstrap` names. Each runs for `--duration` seconds (or less) and stops by itself.
//!
//! The benches share [`stats`]: one recorder, one progress line, one summary contract.

mod produce;
mod stats;

use tidemark_client::{Client, ErrorCode};

pub use produce::ProduceBench;

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

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Produce(a) => produce::run(a).await,
    }
}

/// Creates the topic unless it exists (its existing shape is then kept, whatever the flags say).
async fn ensure_topic(client: &Client, topic: &str, partitions: u32, replication_factor: u32) -> anyhow::Result<()> {
    let admin = client.admin();
    match admin.create_topic(topic, partitions, replication_factor, 0, 0).await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(ErrorCode::TopicExists) => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("could not create topic {topic:?}"))),
    }
}
