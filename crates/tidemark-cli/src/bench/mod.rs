//! `tidemark bench`: bounded load generators that report what a user feels — throughput,
//! latency percentiles (HDR histogram), the longest stall and errors — against whatever
//! `--bootstrap` names. Each runs for `--duration` seconds (or less) and stops by itself.
//!
//! ```text
//! produce  producers ──send──▶ cluster            latency = send → ack
//! consume  [prefill] ─▶ cluster ──poll──▶ K consumers  latency = one poll call
//! ```
//!
//! Both share [`stats`]: one recorder, one progress line, one summary contract.

mod consume;
mod produce;
mod stats;

use tidemark_client::{Client, ErrorCode};

pub use consume::ConsumeBench;
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
    /// Measure how fast K consumers read a topic from its beginning.
    #[command(after_help = "Examples:\n  \
        tidemark bench consume --topic cbench --prefill 200000 --duration 30\n  \
        tidemark bench consume --topic cbench --consumers 4 --prefill 200000 --format json\n\n\
        Consumer i of K reads the partitions p with p % K == i, from the earliest offset.\n\
        --prefill N first writes records until the topic holds at least N (creating it if\n\
        needed), so the bench needs nothing set up beforehand. Reading stops when every record\n\
        that was in the topic at the start has been read (\"stopped all_read\") or at\n\
        --duration (\"stopped duration\"), whichever comes first.\n\n\
        Latency here is the duration of one poll call that returned records (one sample per\n\
        call, not per record): how long a reader waits for its next chunk. The gap\n\
        (max_ack_gap_ms) is the longest interval in which no consumer received any record.")]
    Consume(ConsumeBench),
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Produce(a) => produce::run(a).await,
        BenchCommand::Consume(a) => consume::run(a).await,
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
