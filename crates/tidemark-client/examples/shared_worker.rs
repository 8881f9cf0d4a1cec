//! A shared-group (queue) worker: any number of copies take records from any partition.
//! Each record is leased; acknowledge it, release it (try again later) or reject it (to
//! the dead-letter topic `<topic>.<group>.dlq`). A lease that expires comes back.
//!
//! ```text
//! tidemark group create jobs --topic orders --mode shared --max-attempts 3
//! cargo run -p tidemark-client --example shared_worker -- [BOOTSTRAP] [TOPIC] [GROUP]
//! ```
//! Defaults: 127.0.0.1:9092, topic `orders`, group `jobs`. Exits after 10 s without records.

use std::error::Error;
use std::time::Duration;

use tidemark_client::{Client, ClientConfig, GroupConsumerConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let group = args.next().unwrap_or_else(|| "jobs".into());

    let client = Client::new(ClientConfig::new([bootstrap]))?;
    let mut worker = client.shared_consumer(GroupConsumerConfig::new(&group, [&topic])).await?;
    let mut idle = 0;
    while idle < 10 {
        let leased = worker.poll(Duration::from_secs(1)).await?;
        idle = if leased.is_empty() { idle + 1 } else { 0 };
        for job in leased {
            let text = String::from_utf8_lossy(&job.record.value).into_owned();
            if text.contains("poison") {
                // Never retried: goes straight to the dead-letter topic with its history.
                worker.reject(&job.record);
            } else {
                println!("{} (attempt {})", text, job.delivery_count);
                worker.ack(&job.record);
            }
        }
    }
    // Sends the outstanding acks and leaves the group.
    worker.close().await?;
    Ok(())
}
