//! `tidemark produce`: one record per stdin line, through the SDK's batched, pipelined
//! producer (lines are sent as they are read; nothing waits per line).

use anyhow::Context;
use serde::Serialize;
use tidemark_client::{ClientError, ErrorCode, ProducerConfig, ProducerRecord, RecordMetadata};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::acks::{Acks, Delivery};
use crate::common::{print_json, ClientArgs, Format};

/// Send one record per line of standard input.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    echo 'hello' | tidemark produce orders\n  \
    seq 1 1000 | tidemark produce orders --key customer-7\n  \
    tidemark produce orders --partition 2 --format json < events.txt\n  \
    tidemark produce orders --header source=import --header batch=7 < events.txt\n\n\
    Each line (without its line ending) becomes one record's value. At the end it prints how\n\
    many records were acknowledged (with --format json: {\"acknowledged\":N,\"failed\":M}) and\n\
    exits non-zero if any record failed. Records with the same key go to the same partition,\n\
    in order; without --key or --partition records are spread over the partitions.")]
pub struct ProduceArgs {
    /// The topic to write to (it must exist: see `tidemark topic create`).
    pub topic: String,
    /// The key of every record (it also picks the partition, unless --partition is given).
    #[arg(long, short = 'k')]
    pub key: Option<String>,
    /// Write every record to this partition.
    #[arg(long, short = 'p')]
    pub partition: Option<u32>,
    /// A header on every record, KEY=VALUE (repeat for more; `consume --print-headers`
    /// shows them).
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Exactly-once writes (the default): a retried batch is never written twice.
    #[arg(long, overrides_with = "no_idempotent")]
    pub idempotent: bool,
    /// Turn idempotence off: a retry after a lost answer may write a batch twice.
    #[arg(long, overrides_with = "idempotent")]
    pub no_idempotent: bool,
    /// With idempotence: a stable producer name. Starting a new producer with the same
    /// name fences the older one (its writes fail with ProducerFenced).
    #[arg(long, conflicts_with = "no_idempotent")]
    pub producer_name: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Counts outcomes and keeps the first few distinct errors to show.
#[derive(Default)]
struct Tally {
    acknowledged: u64,
    failed: u64,
    errors: Vec<(String, u64)>,
}

impl Tally {
    fn add(&mut self, res: Result<RecordMetadata, ClientError>) {
        match res {
            Ok(_) => self.acknowledged += 1,
            Err(e) => {
                self.failed += 1;
                let msg = e.to_string();
                if let Some((_, n)) = self.errors.iter_mut().find(|(m, _)| *m == msg) {
                    *n += 1;
                } else if self.errors.len() < 5 {
                    self.errors.push((msg, 1));
                }
            }
        }
    }
}

#[derive(Serialize)]
struct Summary {
    acknowledged: u64,
    failed: u64,
}

pub async fn run(a: ProduceArgs) -> anyhow::Result<()> {
    let client = a.client.client()?;
    // Fail before reading stdin if the topic or partition does not exist.
    let partitions = client.partition_count(&a.topic).await.map_err(|e| match e.code() {
        Some(ErrorCode::UnknownTopic) => anyhow::anyhow!(
            "topic {:?} does not exist; create it first: tidemark topic create {} --partitions 3",
            a.topic,
            a.topic
        ),
        _ => anyhow::Error::new(e).context(format!("could not look up topic {:?}", a.topic)),
    })?;
    if let Some(p) = a.partition.filter(|&p| p >= partitions) {
        anyhow::bail!("topic {:?} has partitions 0..{partitions}; there is no partition {p}", a.topic);
    }
    let config = ProducerConfig {
        idempotent: !a.no_idempotent,
        producer_name: a.producer_name.clone(),
        ..ProducerConfig::default()
    };
    let producer = client.producer(config)?;
    let acks = Acks::spawn(Tally::default(), |tally, (), res: Delivery| tally.add(res));
    let counter = crate::common::record_counter("sent", std::io::IsTerminal::is_terminal(&std::io::stdin()));
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    loop {
        line.clear();
        if stdin.read_until(b'\n', &mut line).await.context("could not read standard input")? == 0 {
            break;
        }
        let value = strip_line_ending(&line).to_vec();
        let mut record = ProducerRecord::new(value);
        if let Some(k) = &a.key {
            record = record.key(k.clone());
        }
        if let Some(p) = a.partition {
            record = record.partition(p);
        }
        for (k, v) in &a.headers {
            record = record.header(k.clone(), v.clone().into_bytes());
        }
        producer.wait_for_buffer_space().await;
        acks.push((), producer.send(&a.topic, record));
        counter.inc(1);
    }
    producer.close().await;
    drop(counter);
    let tally = acks.finish().await;
    report(&a, &tally)
}

/// `KEY=VALUE`, split at the first `=` (the value may hold more).
fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE (example: --header source=import)")),
    }
}

fn strip_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn report(a: &ProduceArgs, tally: &Tally) -> anyhow::Result<()> {
    for (msg, n) in &tally.errors {
        eprintln!("error ({n} record(s)): {msg}");
    }
    match a.format {
        Format::Json => print_json(&Summary { acknowledged: tally.acknowledged, failed: tally.failed })?,
        Format::Text if tally.failed == 0 => println!("Acknowledged {} records.", tally.acknowledged),
        Format::Text => println!("Acknowledged {} records; {} failed.", tally.acknowledged, tally.failed),
    }
    if tally.failed > 0 {
        anyhow::bail!(
            "{} of {} records were not acknowledged (see the errors above)",
            tally.failed,
            tally.failed + tally.acknowledged
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_unix_and_windows_line_endings_only() {
        assert_eq!(strip_line_ending(b"abc\n"), b"abc");
        assert_eq!(strip_line_ending(b"abc\r\n"), b"abc");
        assert_eq!(strip_line_ending(b"abc"), b"abc");
        assert_eq!(strip_line_ending(b" a b \n"), b" a b ");
        assert_eq!(strip_line_ending(b"\n"), b"");
    }

    #[test]
    fn tally_groups_errors() {
        let mut t = Tally::default();
        t.add(Ok(RecordMetadata { partition: 0, offset: 0 }));
        t.add(Err(ClientError::Closed));
        t.add(Err(ClientError::Closed));
        assert_eq!((t.acknowledged, t.failed, t.errors.len(), t.errors[0].1), (1, 2, 1, 2));
    }
}
