//! A partitioned-group worker: run several copies and the group splits the partitions
//! among them; stop one (Ctrl-C) and its partitions move to the others after a commit.
//!
//! ```text
//! cargo run -p tidemark-client --example partitioned_worker -- [BOOTSTRAP] [TOPIC] [GROUP]
//! ```
//! Defaults: 127.0.0.1:9092, topic `orders`, group `billing`. Exits after 10 s without records.

use std::error::Error;
use std::time::Duration;

use tidemark_client::{Client, ClientConfig, GroupConsumerConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let group = args.next().unwrap_or_else(|| "billing".into());

    let client = Client::new(ClientConfig::new([bootstrap]))?;
    // Joins (creating the group with defaults if needed); offsets auto-commit every 5 s,
    // before a partition is handed to another member, and on close.
    let mut member = client.group_consumer(GroupConsumerConfig::new(&group, [&topic])).await?;
    println!("joined {group} as {}", member.member_id());
    let mut idle = 0;
    while idle < 10 {
        tokio::select! {
            biased;
            _ = tokio::signal::ctrl_c() => break,
            batch = member.poll(Duration::from_secs(1)) => {
                let records = batch?;
                idle = if records.is_empty() { idle + 1 } else { 0 };
                for r in records {
                    println!("{}/{}@{}: {}", r.topic, r.partition, r.offset, String::from_utf8_lossy(&r.value));
                }
            }
        }
    }
    // Commits what was handed out, then leaves: the partitions move without redelivery.
    member.close().await?;
    Ok(())
}
