//! Writes numbered order events to a topic, exactly once, and waits for every ack.
//!
//! ```text
//! tidemark dev                                   # in another terminal
//! cargo run -p tidemark-client --example producer -- [BOOTSTRAP] [TOPIC] [COUNT]
//! ```
//! Defaults: 127.0.0.1:9092, topic `orders` (created with 3 partitions, RF 3), 1000 records.

use std::error::Error;

use futures::future::join_all;
use tidemark_client::{Client, ClientConfig, ErrorCode, ProducerConfig, ProducerRecord};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let count: u32 = args.next().map_or(Ok(1000), |n| n.parse())?;

    let client = Client::new(ClientConfig::new([bootstrap]))?;
    match client.admin().create_topic(&topic, 3, 3, 0, 0).await {
        Err(e) if e.code() != Some(ErrorCode::TopicExists) => return Err(e.into()),
        _ => {}
    }
    // Idempotent by default: a retried batch (timeout, failover) is never written twice.
    let producer = client.producer(ProducerConfig::default())?;
    let acks: Vec<_> = (0..count)
        .map(|i| {
            // Same key, same partition: one customer's orders stay in order.
            let record = ProducerRecord::new(format!("order #{i}")).key(format!("customer-{}", i % 10));
            producer.send(&topic, record)
        })
        .collect();
    let mut failed = 0;
    for ack in join_all(acks).await {
        if let Err(e) = ack {
            failed += 1;
            eprintln!("not written: {e}");
        }
    }
    producer.close().await;
    println!("{} of {count} records acknowledged on {topic}", count - failed);
    Ok(())
}
