//! `tidemark consume TOPIC --group G`: consumes as a member of a partitioned group,
//! commits what it printed, and leaves the group on exit (also on Ctrl-C) so its
//! partitions move to the other members at once.

use std::time::Duration;

use anyhow::Context;
use tidemark_client::{ErrorCode, GroupConsumerConfig, StartPosition};
use tokio::time::Instant;

use crate::consume::{print_records, AckArg, ConsumeArgs};

pub async fn run(a: ConsumeArgs, group: String) -> anyhow::Result<()> {
    if a.shared {
        anyhow::bail!(
            "shared (queue-style) group consumption is not supported yet; drop --shared to consume group \
             {group:?} as a partitioned group (each member reads whole partitions)"
        );
    }
    let client = a.client.client()?;
    let mut config = GroupConsumerConfig::new(group.clone(), [a.topic.clone()]);
    config.auto_commit = a.ack == AckArg::Auto;
    config.client_id = "tidemark-cli".into();
    config.start = StartPosition::Earliest;
    let mut consumer = client.group_consumer(config).await.map_err(|e| match e.code() {
        Some(ErrorCode::UnknownTopic) => {
            anyhow::anyhow!("topic {:?} does not exist (see `tidemark topic list`)", a.topic)
        }
        _ => anyhow::Error::new(e).context(format!("could not join group {group:?} on topic {:?}", a.topic)),
    })?;
    let max = a.max_messages.unwrap_or(u64::MAX);
    let idle = (a.timeout_ms > 0).then(|| Duration::from_millis(a.timeout_ms));
    let (mut printed, mut last_record) = (0u64, Instant::now());
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while printed < max {
        let wait = match idle {
            Some(idle) => match idle.checked_sub(last_record.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => break,
            },
            None => Duration::from_secs(3600),
        };
        let left = usize::try_from(max - printed).unwrap_or(usize::MAX);
        let records = tokio::select! {
            biased;
            _ = &mut ctrl_c => break,
            r = consumer.poll_up_to(wait, left) => r.with_context(|| format!("could not read topic {:?}", a.topic))?,
        };
        if records.is_empty() {
            continue;
        }
        last_record = Instant::now();
        print_records(&records, a.format)?;
        printed += records.len() as u64;
    }
    consumer.close().await.with_context(|| format!("leaving group {group:?}"))?;
    eprintln!("Consumed {printed} record(s).");
    Ok(())
}
