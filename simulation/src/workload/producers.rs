//! Producers writing keyed records to every topic and partition, each value naming its
//! producer and sequence number, each outcome recorded.

use std::time::Duration;

use futures::future::join_all;
use madsim::rand::{thread_rng, Rng};
use tidemark_client::{Client, ClientConfig, ProducerConfig, ProducerRecord};

use super::history::{record_value, Outcome, ProducerInfo, Send};
use super::{BoxFuture, Workload, WorkloadCtx};

/// Whether the main producers are idempotent (the SDK's default). The scenario also runs
/// one plain producer, so the retry path without sequence numbers stays exercised.
pub const IDEMPOTENT_PRODUCERS: bool = true;

/// How the simulation's clients talk to the cluster: shorter timeouts than the defaults so
/// a request stuck behind a clogged link is retried within the run.
pub fn client_config(bootstrap: &[String]) -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_secs(3),
        operation_timeout: Duration::from_secs(20),
        ..ClientConfig::new(bootstrap.iter().cloned())
    }
}

/// A plain producer keeps order across retries only with one batch in flight; an
/// idempotent one keeps it with any window (the server rejects out-of-order sequences).
pub fn producer_config(idempotent: bool, delivery_timeout: Duration) -> ProducerConfig {
    ProducerConfig {
        max_in_flight: if idempotent { 5 } else { 1 },
        idempotent,
        delivery_timeout,
        linger: Duration::from_millis(2),
        ..ProducerConfig::default()
    }
}

/// `count` producers with ids `first_id..`, sending bursts of records until stopped.
pub struct Producers {
    pub first_id: u32,
    pub count: u32,
    pub idempotent: bool,
}

impl Workload for Producers {
    fn name(&self) -> &'static str {
        "producers"
    }

    fn run(&self, ctx: WorkloadCtx) -> BoxFuture {
        {
            let mut h = ctx.recorder.lock();
            for id in self.first_id..self.first_id + self.count {
                h.producers.push(ProducerInfo { id, idempotent: self.idempotent });
            }
        }
        let runs: Vec<_> = (self.first_id..self.first_id + self.count)
            .map(|id| produce_loop(id, self.idempotent, ctx.clone()))
            .collect();
        Box::pin(async move {
            join_all(runs).await;
        })
    }
}

/// One producer: bursts of 1..=8 records, each to a random topic and partition, then a
/// short pause. Each burst is awaited before the next so the outcomes are all recorded.
async fn produce_loop(id: u32, idempotent: bool, ctx: WorkloadCtx) {
    let client = Client::new(client_config(&ctx.bootstrap)).expect("client config is valid");
    let producer =
        client.producer(producer_config(idempotent, Duration::from_secs(8))).expect("producer config is valid");
    let mut seq = 0u64;
    while !ctx.stop.is_stopped() {
        let burst = thread_rng().gen_range(1..=8);
        let mut sends = Vec::new();
        for _ in 0..burst {
            seq += 1;
            let topic = &ctx.topics[thread_rng().gen_range(0..ctx.topics.len())];
            let partition = thread_rng().gen_range(0..topic.partitions);
            let record = ProducerRecord::new(record_value(id, seq)).key(format!("k{}", seq % 13)).partition(partition);
            let fut = producer.send(&topic.name, record);
            let name = topic.name.clone();
            sends.push(async move { (seq, name, partition, fut.await) });
        }
        for (seq, topic, partition, result) in join_all(sends).await {
            record_send(&ctx, id, seq, topic, partition, result);
        }
        let pause = thread_rng().gen_range(0..100);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    producer.close().await;
    ctx.trace.event(format!("p{id} closed after s{seq}"));
}

/// Records one outcome in the history and the trace.
pub fn record_send(
    ctx: &WorkloadCtx,
    producer: u32,
    seq: u64,
    topic: String,
    partition: u32,
    result: tidemark_client::Result<tidemark_client::RecordMetadata>,
) {
    let outcome = match result {
        Ok(md) if md.partition == partition => Outcome::Acked { offset: md.offset },
        Ok(md) => Outcome::InFlight { error: format!("acknowledged on partition {} instead", md.partition) },
        Err(e) => Outcome::InFlight { error: e.to_string() },
    };
    match &outcome {
        Outcome::Acked { offset } => ctx.trace.event(format!("p{producer} s{seq} {topic}/{partition} acked@{offset}")),
        Outcome::InFlight { error } => {
            tracing::debug!(producer, seq, %error, "send not acknowledged");
            ctx.trace.event(format!("p{producer} s{seq} {topic}/{partition} failed"))
        }
    }
    ctx.recorder.lock().sends.push(Send { producer, seq, topic, partition, outcome });
}
