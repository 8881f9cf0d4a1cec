//! `tidemark consume`: prints records of a topic until enough arrived or it went quiet.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tidemark_client::{ConsumerConfig, ConsumerRecord, ErrorCode, StartPosition};
use tokio::time::Instant;

use crate::common::{ClientArgs, Format};

/// Print records of a topic.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    tidemark consume orders --from-beginning\n  \
    tidemark consume orders --partition 0 --offset 100 --max-messages 10 --format json\n  \
    tidemark consume orders --timeout-ms 0          # follow new records until Ctrl-C\n\n\
    Starts at the end of each partition (only new records) unless --from-beginning or\n\
    --offset is given. Text prints each record's value on its own line; JSON prints one\n\
    object per line: {\"partition\":0,\"offset\":5,\"key\":null,\"value\":\"..\",\"timestamp_ms\":..}.\n\
    Records are in order within a partition; partitions are interleaved.\n\n\
    Consumer groups:\n  \
    tidemark consume orders --group billing                 # run it several times: they share the partitions\n  \
    tidemark consume orders --group billing --max-messages 10 --format json\n\n\
    With --group the group's committed offsets say where to start (the oldest record when it\n\
    never committed), records printed are committed (--ack auto; --ack none commits nothing),\n\
    and exiting commits and leaves the group so its partitions move at once. A missing group\n\
    is created with default settings (see `tidemark group create --help`). With --shared the\n\
    group is a queue: members share records, not partitions.")]
pub struct ConsumeArgs {
    /// The topic to read.
    pub topic: String,
    /// Start at the oldest retained record of each partition.
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,
    /// Start at this offset (in every partition read, or in --partition).
    #[arg(long)]
    pub offset: Option<u64>,
    /// Read only this partition (default: all of them).
    #[arg(long, short = 'p')]
    pub partition: Option<u32>,
    /// Consume as a member of this consumer group: members share the partitions and the
    /// group's progress is committed.
    #[arg(long, short = 'g', conflicts_with_all = ["offset", "partition"])]
    pub group: Option<String>,
    /// Join the group as a shared (queue-style) consumer: records of every partition are
    /// leased to one member at a time and acknowledged when printed.
    #[arg(long, requires = "group")]
    pub shared: bool,
    /// With --group: `auto` commits the records printed (every 5 s and on exit; with
    /// --shared each printed record is acknowledged); `none` commits (acknowledges)
    /// nothing, so the group will read them again.
    #[arg(long, value_enum, default_value_t)]
    pub ack: AckArg,
    /// Exit after printing this many records.
    #[arg(long, short = 'n')]
    pub max_messages: Option<u64>,
    /// Exit when no new record arrived for this many milliseconds (0: never; stop with Ctrl-C).
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Text output: print each record's headers before its value, `KEY=VALUE,...` then a
    /// tab (`NO_HEADERS` when it has none). JSON output always includes them.
    #[arg(long)]
    pub print_headers: bool,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// How a group consumer acknowledges what it printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AckArg {
    /// Commit (shared: acknowledge) printed records.
    #[default]
    Auto,
    /// Commit nothing; shared: leased records are released on exit (or when their lock expires).
    None,
}

/// One record in `--format json` (a stable contract: add, never rename).
#[derive(Serialize)]
struct RecordJson {
    partition: u32,
    offset: u64,
    /// `null` when the record has no key; UTF-8 (invalid bytes replaced) otherwise.
    key: Option<String>,
    value: String,
    timestamp_ms: i64,
    /// Shared groups only: how many times this record has been delivered, this time included.
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery_count: Option<u32>,
    /// In order; left out when the record has none. Values are UTF-8 (invalid bytes
    /// replaced), like `value`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    headers: Vec<HeaderJson>,
}

#[derive(Serialize)]
struct HeaderJson {
    key: String,
    value: String,
}

impl From<&ConsumerRecord> for RecordJson {
    fn from(r: &ConsumerRecord) -> Self {
        RecordJson {
            partition: r.partition,
            offset: r.offset,
            key: r.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
            value: String::from_utf8_lossy(&r.value).into_owned(),
            timestamp_ms: r.timestamp_ms,
            delivery_count: None,
            headers: r
                .headers
                .iter()
                .map(|h| HeaderJson { key: h.key.clone(), value: String::from_utf8_lossy(&h.value).into_owned() })
                .collect(),
        }
    }
}

pub async fn run(a: ConsumeArgs) -> anyhow::Result<()> {
    if let Some(group) = a.group.clone() {
        return crate::consume_group::run(a, group).await;
    }
    let client = a.client.client()?;
    let start = match (a.from_beginning, a.offset) {
        (true, _) => StartPosition::Earliest,
        (false, Some(o)) => StartPosition::Offset(o),
        (false, None) => StartPosition::Latest,
    };
    let partitions = a.partition.map(|p| vec![p]);
    let mut consumer = client
        .consumer(&a.topic, partitions, start, ConsumerConfig::default())
        .await
        .map_err(|e| start_error(e, &a.topic, "could not start reading topic"))?;
    let max = a.max_messages.unwrap_or(u64::MAX);
    let idle = (a.timeout_ms > 0).then(|| Duration::from_millis(a.timeout_ms));
    let mut printed = 0u64;
    let mut last_record = Instant::now();
    let counter = crate::common::record_counter("read", std::io::IsTerminal::is_terminal(&std::io::stdout()));
    // Ctrl-C ends the run like the idle timeout does: with the summary, exit code 0.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while printed < max {
        let Some(wait) = idle_wait(idle, last_record) else { break };
        let records = tokio::select! {
            biased;
            _ = &mut ctrl_c => break,
            r = consumer.poll(wait) => r.with_context(|| format!("could not read topic {:?}", a.topic))?,
        };
        if records.is_empty() {
            continue;
        }
        last_record = Instant::now();
        let take = records.len().min((max - printed) as usize);
        print_records(&records[..take], a.format, a.print_headers)?;
        printed += take as u64;
        counter.inc(take as u64);
    }
    drop(counter);
    eprintln!("Consumed {printed} record(s).");
    Ok(())
}

/// How long the next poll may wait: the rest of the `--timeout-ms` idle time since the
/// last record (`None`: it is used up, stop), or an hour without a timeout.
pub fn idle_wait(idle: Option<Duration>, last_record: Instant) -> Option<Duration> {
    match idle {
        Some(idle) => idle.checked_sub(last_record.elapsed()).filter(|left| !left.is_zero()),
        None => Some(Duration::from_secs(3600)),
    }
}

/// Why reading could not start, with a hint for the common case of a missing topic.
pub fn start_error(e: tidemark_client::ClientError, topic: &str, doing: &str) -> anyhow::Error {
    match e.code() {
        Some(ErrorCode::UnknownTopic) => anyhow::anyhow!("topic {topic:?} does not exist (see `tidemark topic list`)"),
        _ => anyhow::Error::new(e).context(format!("{doing} {topic:?}")),
    }
}

/// Prints records to stdout in `format` (text: the value, after its headers when
/// `headers`; JSON: one object per line).
pub fn print_records(records: &[ConsumerRecord], format: Format, headers: bool) -> anyhow::Result<()> {
    print_counted(records.iter().map(|r| (r, None)), format, headers)
}

/// Like [`print_records`], with each record's delivery count (shared groups) in the JSON.
pub fn print_counted<'a>(
    records: impl IntoIterator<Item = (&'a ConsumerRecord, Option<u32>)>,
    format: Format,
    headers: bool,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for (r, delivery_count) in records {
        match format {
            Format::Json => {
                serde_json::to_writer(&mut out, &RecordJson { delivery_count, ..RecordJson::from(r) })?;
                writeln!(out)?;
            }
            Format::Text => {
                if headers {
                    write_headers(&mut out, r)?;
                }
                out.write_all(&r.value)?;
                writeln!(out)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// `KEY=VALUE,KEY=VALUE` and a tab, as Kafka's console consumer prints them.
fn write_headers(out: &mut impl Write, r: &ConsumerRecord) -> std::io::Result<()> {
    if r.headers.is_empty() {
        out.write_all(b"NO_HEADERS")?;
    }
    for (i, h) in r.headers.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        write!(out, "{}=", h.key)?;
        out.write_all(&h.value)?;
    }
    out.write_all(b"\t")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn json_record_has_the_contract_shape() {
        let r = ConsumerRecord {
            topic: "t".into(),
            partition: 1,
            offset: 5,
            key: None,
            value: Bytes::from_static(b"hi \xff"),
            headers: vec![],
            timestamp_ms: 1700000000000,
        };
        assert_eq!(
            serde_json::to_string(&RecordJson::from(&r)).unwrap(),
            r#"{"partition":1,"offset":5,"key":null,"value":"hi �","timestamp_ms":1700000000000}"#
        );
        let r = ConsumerRecord { key: Some(Bytes::from_static(b"k")), ..r };
        assert!(serde_json::to_string(&RecordJson::from(&r)).unwrap().contains(r#""key":"k""#));
    }
}
