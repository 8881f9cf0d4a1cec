//! Readers: consumers tailing the topics while faults run, the full read of every
//! partition after heal, and the liveness probe.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use tidemark_client::{Client, ConsumerConfig, ProducerRecord, StartPosition};
use tokio::time::Instant;

use super::history::{record_value, ProducerInfo, Read};
use super::producers::{client_config, producer_config, record_send};
use super::{BoxFuture, TopicSpec, Workload, WorkloadCtx};

/// How long one `poll(300ms)` may take before the tailer gives up on its consumer.
const POLL_BOUND: Duration = Duration::from_secs(30);

/// `count` consumers, each tailing one topic (round robin) from the beginning.
pub struct Tailers {
    pub count: u32,
}

impl Workload for Tailers {
    fn name(&self) -> &'static str {
        "tailers"
    }

    fn run(&self, ctx: WorkloadCtx) -> BoxFuture {
        let runs: Vec<_> = (0..self.count)
            .map(|i| {
                let topic = ctx.topics[i as usize % ctx.topics.len()].name.clone();
                tail(format!("consumer-{i}"), topic, ctx.clone())
            })
            .collect();
        Box::pin(async move {
            join_all(runs).await;
        })
    }
}

/// Reads `topic` until stopped, recording every record it is shown. A failed poll keeps
/// the consumer (positions survive); a consumer that cannot start is retried.
async fn tail(reader: String, topic: String, ctx: WorkloadCtx) {
    let client = Client::new(client_config(&ctx.bootstrap)).expect("client config is valid");
    let mut consumer = None;
    while !ctx.stop.is_stopped() {
        let Some(c) = consumer.as_mut() else {
            match client.consumer(&topic, None, StartPosition::Earliest, ConsumerConfig::default()).await {
                Ok(c) => consumer = Some(c),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
            continue;
        };
        // A poll must return within its timeout; a generous bound keeps a hung SDK call
        // from hanging the run, and the trace records it.
        let Ok(polled) = tokio::time::timeout(POLL_BOUND, c.poll(Duration::from_millis(300))).await else {
            let note = format!("{reader}: Consumer::poll(300ms) did not return within {POLL_BOUND:?}");
            ctx.trace.event(&note);
            ctx.recorder.lock().anomalies.push(note);
            consumer = None;
            continue;
        };
        match polled {
            Ok(records) => {
                let mut h = ctx.recorder.lock();
                for r in records {
                    let value = String::from_utf8_lossy(&r.value).into_owned();
                    h.reads.push(Read {
                        reader: reader.clone(),
                        topic: topic.clone(),
                        partition: r.partition,
                        offset: r.offset,
                        value,
                    });
                }
            }
            Err(e) => {
                tracing::debug!(%reader, error = %e, "poll failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    ctx.trace.event(format!("{reader} stopped"));
}

/// Reads every partition of every topic from the beginning to its end, within `limit`.
pub async fn read_final(
    bootstrap: &[String],
    topics: &[TopicSpec],
    limit: Duration,
) -> Result<BTreeMap<(String, u32), Vec<Read>>, String> {
    let client = Client::new(client_config(bootstrap)).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + limit;
    let mut log = BTreeMap::new();
    for topic in topics {
        for p in 0..topic.partitions {
            log.insert((topic.name.clone(), p), Vec::new());
        }
        let mut consumer = loop {
            match client.consumer(&topic.name, None, StartPosition::Earliest, ConsumerConfig::default()).await {
                Ok(c) => break c,
                Err(e) if Instant::now() >= deadline => return Err(format!("{}: consumer: {e}", topic.name)),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        loop {
            let done = (0..topic.partitions).all(|p| {
                let end = consumer.log_end_offset(p).unwrap_or(u64::MAX);
                consumer.position(p).is_some_and(|pos| pos >= end)
            });
            if done {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} not read to its end within {limit:?}: at {:?}",
                    topic.name,
                    consumer.positions()
                ));
            }
            let records = consumer.poll(Duration::from_millis(500)).await.unwrap_or_default();
            for r in records {
                let value = String::from_utf8_lossy(&r.value).into_owned();
                let read = Read {
                    reader: "final".into(),
                    topic: topic.name.clone(),
                    partition: r.partition,
                    offset: r.offset,
                    value,
                };
                log.entry((topic.name.clone(), r.partition)).or_default().push(read);
            }
        }
    }
    Ok(log)
}

pub use super::history::PROBE_PRODUCER;

/// Liveness probe: one record to every partition, each waited for up to `bound`.
/// Returns, per partition, how long its write took or why it failed.
pub async fn probe(ctx: &WorkloadCtx, bound: Duration) -> Vec<(String, u32, Result<Duration, String>)> {
    ctx.recorder.lock().producers.push(ProducerInfo { id: PROBE_PRODUCER, idempotent: false });
    let client = Client::new(client_config(&ctx.bootstrap)).expect("client config is valid");
    let producer = client.producer(producer_config(false, bound)).expect("producer config is valid");
    let start = Instant::now();
    let mut seq = 0;
    let mut sends = Vec::new();
    for topic in &ctx.topics {
        for p in 0..topic.partitions {
            seq += 1;
            let fut = producer.send(&topic.name, ProducerRecord::new(record_value(PROBE_PRODUCER, seq)).partition(p));
            let name = topic.name.clone();
            sends.push(async move { (seq, name, p, fut.await, start.elapsed()) });
        }
    }
    let mut results = Vec::new();
    for (seq, topic, p, result, took) in join_all(sends).await {
        let verdict = result.as_ref().map(|_| took).map_err(|e| e.to_string());
        record_send(ctx, PROBE_PRODUCER, seq, topic.clone(), p, result);
        results.push((topic, p, verdict));
    }
    producer.close().await;
    results
}
