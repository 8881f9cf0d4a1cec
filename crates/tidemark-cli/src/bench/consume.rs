//! `tidemark bench consume`: K consumers read a topic from the earliest offset as fast as
//! the cluster serves it.
//!
//! ```text
//! [--prefill N] producer ─▶ topic holds ≥ N records
//! describe topic ─▶ end offsets = the finish line
//! member i ◀─ partitions p % K == i ─ poll, poll, ... until caught up or --duration
//!   (--group G: K members of partitioned group G share the partitions the server assigns;
//!    --shared: K members of shared group G lease records from any partition and ack them)
//! ```
//!
//! A member is a [`Member`]: a consumer over a fixed share of the partitions, or a member
//! of a group. The reading loop, the finish line and the statistics are the same for all.
//! Group members cannot see each other's progress, so in group modes "all read" means the
//! members together received as many records as the topic held at the start.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use tidemark_client::{
    Client, ClientError, Consumer, ConsumerConfig, ConsumerRecord, ErrorCode, GroupConsumer, GroupConsumerConfig,
    PartitionId, ProducerConfig, ProducerRecord, SharedConsumer, StartPosition,
};
use tokio::time::Instant;

use super::stats::{print_text, show_progress, Stats};
use crate::acks::{Acks, Delivery};
use crate::common::{print_json, ClientArgs, Format};

/// Bytes the prefill producer may have unacknowledged.
const PREFILL_BUFFER_BYTES: usize = 16 << 20;

#[derive(Debug, clap::Args)]
pub struct ConsumeBench {
    /// The topic to read (created by --prefill if missing).
    #[arg(long, default_value = "bench")]
    pub topic: String,
    /// Consumers reading in parallel. Without --group consumer i reads the partitions p
    /// with p % K == i, so K may not exceed the partition count.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Read as the members of this consumer group (created with defaults if missing).
    /// Use a new name per run: a group resumes from its committed offsets, so a second
    /// run would find nothing left to read (or `tidemark group reset-offsets G --to-earliest`).
    #[arg(long, value_name = "G")]
    pub group: Option<String>,
    /// With --group: a shared (queue) group; members lease records from any partition and
    /// acknowledge every one, and K may exceed the partition count.
    #[arg(long, requires = "group")]
    pub shared: bool,
    /// Longest time to read, in seconds (it stops earlier once everything is read).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// First make sure the topic holds at least N records, producing the missing ones.
    #[arg(long, value_name = "N")]
    pub prefill: Option<u64>,
    /// Bytes of each prefilled record's value.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Partitions, if --prefill has to create the topic (default: the larger of 3 and --consumers).
    #[arg(long)]
    pub partitions: Option<u32>,
    /// Replication factor, if --prefill has to create the topic.
    #[arg(long, default_value_t = 3)]
    pub replication_factor: u32,
    /// text for people; json prints one summary object on stdout for scripts.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(a: ConsumeBench) -> anyhow::Result<()> {
    anyhow::ensure!(a.consumers > 0 && a.duration > 0, "--consumers and --duration must be at least 1");
    anyhow::ensure!(a.record_size > 0, "--record-size must be at least 1 byte");
    let client = a.client.client()?;
    if let Some(n) = a.prefill {
        let partitions = a.partitions.unwrap_or((a.consumers as u32).max(3));
        super::ensure_topic(&client, &a.topic, partitions, a.replication_factor).await?;
        prefill(&client, &a.topic, n, a.record_size).await?;
    }
    let finish = end_offsets(&client, &a.topic).await?;
    let members = open_members(&client, &a, &finish).await?;
    let stats = Arc::new(Stats::new());
    let deadline = stats.start + Duration::from_secs(a.duration);
    let tasks: Vec<_> =
        members.into_iter().map(|m| tokio::spawn(read_until(m, finish.clone(), deadline, stats.clone()))).collect();
    let progress = tokio::spawn(show_progress(stats.clone(), deadline, String::new));
    let mut all_read = true;
    for t in tasks {
        all_read &= t.await.context("a consumer task panicked")?;
    }
    progress.abort();
    let summary = stats.summarize(Some(if all_read { "all_read" } else { "duration" }));
    match a.format {
        Format::Json => print_json(&summary)?,
        Format::Text => print_text(&summary, "poll latency", stats.first_error().as_deref()),
    }
    Ok(())
}

/// The bench's readers: fixed shares of the partitions, or members of `--group`.
async fn open_members(
    client: &Client,
    a: &ConsumeBench,
    finish: &BTreeMap<PartitionId, Finish>,
) -> anyhow::Result<Vec<Member>> {
    let mut members = Vec::new();
    let Some(group) = &a.group else {
        for share in split_partitions(finish.len() as u32, a.consumers)? {
            members.push(Member::open(client, &a.topic, share).await?);
        }
        return Ok(members);
    };
    let total: u64 = finish.values().map(|f| f.end - f.start).sum();
    for i in 0..a.consumers {
        let mut config = GroupConsumerConfig::new(group.clone(), [a.topic.clone()]);
        config.client_id = format!("bench-{i}");
        let what = || format!("member {i} could not join group {group:?}");
        let member = if a.shared {
            Member::Shared(client.shared_consumer(config).await.with_context(what)?, total)
        } else {
            Member::Group(client.group_consumer(config).await.with_context(what)?, total)
        };
        members.push(member);
    }
    Ok(members)
}

/// Consumer `i` of `consumers` gets the partitions `p` with `p % consumers == i`: each
/// partition is read by exactly one consumer and shares differ by at most one partition.
fn split_partitions(partitions: u32, consumers: usize) -> anyhow::Result<Vec<Vec<PartitionId>>> {
    anyhow::ensure!(
        consumers as u64 <= partitions as u64,
        "--consumers {consumers} but the topic has {partitions} partition(s): each partition is read by one \
         consumer, so the extra consumers would have nothing to do (use a topic with more partitions)"
    );
    Ok((0..consumers).map(|i| (0..partitions).filter(|p| *p as usize % consumers == i).collect()).collect())
}

/// Where a partition's records began and ended when the bench started.
#[derive(Debug, Clone, Copy)]
struct Finish {
    start: u64,
    end: u64,
}

/// The log range of every partition: records below its end are what "all read" means.
async fn end_offsets(client: &Client, topic: &str) -> anyhow::Result<BTreeMap<PartitionId, Finish>> {
    let desc = client.admin().describe_topic(topic).await.map_err(|e| {
        let hint =
            if e.code() == Some(ErrorCode::UnknownTopic) { " (pass --prefill N to create and fill it)" } else { "" };
        anyhow::Error::new(e).context(format!("could not describe topic {topic:?}{hint}"))
    })?;
    let held: u64 = desc.partitions.iter().map(|p| p.log_end_offset.saturating_sub(p.log_start_offset)).sum();
    anyhow::ensure!(held > 0, "topic {topic:?} holds no records; pass --prefill N to write some first");
    Ok(desc
        .partitions
        .iter()
        .map(|p| (p.partition, Finish { start: p.log_start_offset, end: p.log_end_offset }))
        .collect())
}

/// Produces records until the topic holds at least `want`, spread evenly over the
/// partitions (explicitly, so every consumer's share is the same size).
async fn prefill(client: &Client, topic: &str, want: u64, record_size: usize) -> anyhow::Result<()> {
    let desc = client.admin().describe_topic(topic).await.with_context(|| format!("could not describe {topic:?}"))?;
    let held: u64 = desc.partitions.iter().map(|p| p.log_end_offset.saturating_sub(p.log_start_offset)).sum();
    if held >= want {
        return Ok(());
    }
    let missing = want - held;
    let partitions = desc.partitions.len().max(1) as u64;
    // A smaller buffer than the SDK's 64 MiB, which lets records queue longer than the
    // delivery timeout on a slow or busy cluster; not much smaller: at 4 MiB (four 1 MiB
    // batches) the producer could not pipeline and wrote about 1200 records/s.
    let config = ProducerConfig { max_buffered_bytes: PREFILL_BUFFER_BYTES, ..ProducerConfig::default() };
    let producer = client.producer(config).context("could not start the prefill producer")?;
    let bar = indicatif::ProgressBar::new(missing).with_message(format!("prefilling {topic}"));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} records ({per_sec}, {eta} left)")
            .expect("valid progress template"),
    );
    let value = Bytes::from(vec![b'x'; record_size]);
    let acks = Acks::spawn((bar.clone(), 0u64, None), |(bar, failed, first_error), (), r: Delivery| match r {
        Ok(_) => bar.inc(1),
        Err(e) => {
            *failed += 1;
            first_error.get_or_insert(e.to_string());
        }
    });
    for i in 0..missing {
        producer.wait_for_buffer_space().await;
        let record = ProducerRecord::new(value.clone()).partition((i % partitions) as PartitionId);
        acks.push((), producer.send(topic, record));
        if (i + 1).is_multiple_of(256) {
            tokio::task::yield_now().await;
        }
    }
    let (_, failed, first_error): (_, u64, Option<String>) = acks.finish().await;
    producer.close().await;
    bar.finish_and_clear();
    anyhow::ensure!(
        failed == 0,
        "prefill: {failed} of {missing} records were not written (first error: {})",
        first_error.unwrap_or_default()
    );
    eprintln!("prefill: wrote {missing} records of {record_size} bytes to {topic} (it held {held})");
    Ok(())
}

/// One reader of the bench: each variant says how it is opened, how it polls and when it
/// has read its part of the finish line.
enum Member {
    /// A plain consumer over a fixed share of the partitions.
    Assigned(Consumer),
    /// A member of a partitioned group; done when the members together read `.1` records.
    Group(GroupConsumer, u64),
    /// A member of a shared group (acknowledges what it gets at its next poll); done when
    /// the members together read `.1` records.
    Shared(SharedConsumer, u64),
}

impl Member {
    async fn open(client: &Client, topic: &str, partitions: Vec<PartitionId>) -> anyhow::Result<Member> {
        let listed = format!("{partitions:?}");
        let consumer = client
            .consumer(topic, Some(partitions), StartPosition::Earliest, ConsumerConfig::default())
            .await
            .with_context(|| format!("could not start a consumer of {topic:?} partitions {listed}"))?;
        Ok(Member::Assigned(consumer))
    }

    async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        match self {
            Member::Assigned(c) => c.poll(timeout).await,
            Member::Group(c, _) => c.poll(timeout).await,
            Member::Shared(c, _) => Ok(c.poll(timeout).await?.into_iter().map(|r| r.record).collect()),
        }
    }

    /// True once this member's part of the finish line is read (`read`: records all
    /// members have received so far).
    fn caught_up(&self, finish: &BTreeMap<PartitionId, Finish>, read: u64) -> bool {
        match self {
            Member::Assigned(c) => c.positions().iter().all(|(p, pos)| finish.get(p).is_none_or(|f| *pos >= f.end)),
            Member::Group(_, total) | Member::Shared(_, total) => read >= *total,
        }
    }

    /// Leaves the group (committing or acknowledging what was read).
    async fn close(self) -> Result<(), ClientError> {
        match self {
            Member::Assigned(_) => Ok(()),
            Member::Group(c, _) => c.close().await,
            Member::Shared(c, _) => c.close().await,
        }
    }
}

/// Polls until the member has read up to `finish` (true) or `deadline` passes (false).
/// One latency sample per poll call that returned records.
async fn read_until(m: Member, finish: BTreeMap<PartitionId, Finish>, deadline: Instant, stats: Arc<Stats>) -> bool {
    let (m, all_read) = read_loop(m, &finish, deadline, &stats).await;
    if let Err(e) = m.close().await {
        stats.error(1, format!("leaving the group: {e}"));
    }
    all_read
}

async fn read_loop(
    mut m: Member,
    finish: &BTreeMap<PartitionId, Finish>,
    deadline: Instant,
    stats: &Stats,
) -> (Member, bool) {
    loop {
        if m.caught_up(finish, stats.records.load(std::sync::atomic::Ordering::Relaxed)) {
            return (m, true);
        }
        let now = Instant::now();
        if now >= deadline {
            return (m, false);
        }
        match m.poll((deadline - now).min(Duration::from_millis(500))).await {
            Ok(records) if records.is_empty() => {}
            Ok(records) => {
                let bytes: usize = records.iter().map(|r| r.value.len() + r.key.as_ref().map_or(0, |k| k.len())).sum();
                stats.record(now.elapsed().as_micros() as u64, records.len() as u64, bytes as u64);
            }
            Err(e) => {
                stats.error(1, e.to_string());
                // The SDK already retried what it could; do not spin on a lasting failure.
                tokio::time::sleep_until((Instant::now() + Duration::from_millis(100)).min(deadline)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_split_round_robin_each_read_once() {
        assert_eq!(split_partitions(3, 1).unwrap(), vec![vec![0, 1, 2]]);
        assert_eq!(split_partitions(8, 3).unwrap(), vec![vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]]);
        assert_eq!(split_partitions(4, 4).unwrap(), vec![vec![0], vec![1], vec![2], vec![3]]);
        let mut all: Vec<_> = split_partitions(12, 5).unwrap().concat();
        all.sort();
        assert_eq!(all, (0..12).collect::<Vec<_>>());
    }

    #[test]
    fn more_consumers_than_partitions_is_refused_with_a_reason() {
        let err = split_partitions(3, 4).unwrap_err().to_string();
        assert!(err.contains("--consumers 4") && err.contains("3 partition"), "{err}");
    }
}
