//! `tidemark bench`: bounded load generators that report what a user feels — throughput,
//! latency percentiles (HDR histogram), the longest stall and errors — against whatever
//! `--bootstrap` names. Each runs for `--duration` seconds (or less) and stops by itself.
//!
//! ```text
//! produce  producers ──send──▶ cluster            latency = send → ack
//! consume  [prefill] ─▶ cluster ──poll──▶ K consumers  latency = one poll call
//! e2e      producer ──▶ cluster ──▶ tailing consumer   latency = send → receive
//!                                  (stamp in the value)
//! ```
//!
//! All three share [`stats`]: one recorder, one progress line, one summary contract.

mod consume;
mod e2e;
mod produce;
mod stats;

use tidemark_client::{Client, ErrorCode};

pub use consume::ConsumeBench;
pub use e2e::E2eBench;
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
    /// Measure publish-to-receive latency at a fixed produce rate.
    #[command(after_help = "Examples:\n  \
        tidemark bench e2e --topic e2e --rate 2000 --duration 20\n  \
        tidemark bench e2e --topic e2e --rate 500 --duration 10 --format json\n\n\
        A consumer tails every partition from the end (positioned before the first send), then\n\
        one producer sends --rate records/s. Each value starts with this run's id and its send\n\
        time, so the consumer measures send-to-receive latency per record on the same clock\n\
        (records of other writers are ignored). After --duration the producer stops and the\n\
        consumer waits up to 10 s for the rest; an acknowledged record never received counts\n\
        as an error. max_ack_gap_ms is the longest interval between two received records.")]
    E2e(E2eBench),
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Produce(a) => produce::run(a).await,
        BenchCommand::Consume(a) => consume::run(a).await,
        BenchCommand::E2e(a) => e2e::run(a).await,
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
