//! `tidemark consume TOPIC --group G [--shared]`: consumes as a member of a partitioned
//! group (commits what it printed) or of a shared group (acknowledges what it printed),
//! and leaves the group on exit (also on Ctrl-C) so the others take over at once.

use std::time::Duration;

use anyhow::Context;
use tidemark_client::{GroupConsumerConfig, StartPosition};
use tokio::time::Instant;

use crate::consume::{idle_wait, print_counted, print_records, start_error, AckArg, ConsumeArgs};

pub async fn run(a: ConsumeArgs, group: String) -> anyhow::Result<()> {
    if a.shared {
        return run_shared(a, group).await;
    }
    let client = a.client.client()?;
    let mut config = GroupConsumerConfig::new(group.clone(), [a.topic.clone()]);
    config.auto_commit = a.ack == AckArg::Auto;
    config.client_id = "tidemark-cli".into();
    config.start = StartPosition::Earliest;
    let mut consumer = client
        .group_consumer(config)
        .await
        .map_err(|e| start_error(e, &a.topic, &format!("could not join group {group:?} on topic")))?;
    let max = a.max_messages.unwrap_or(u64::MAX);
    let idle = (a.timeout_ms > 0).then(|| Duration::from_millis(a.timeout_ms));
    let (mut printed, mut last_record) = (0u64, Instant::now());
    let counter = crate::common::record_counter("read", std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while printed < max {
        let Some(wait) = idle_wait(idle, last_record) else { break };
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
        if let Err(e) = print_records(&records, a.format, a.print_headers) {
            // Most often a closed pipe (`| head`): leave the group anyway, or this member
            // would hold its partitions until its session expired.
            let _ = consumer.close().await;
            return Err(e);
        }
        printed += records.len() as u64;
        counter.inc(records.len() as u64);
    }
    drop(counter);
    consumer.close().await.with_context(|| format!("leaving group {group:?}"))?;
    eprintln!("Consumed {printed} record(s).");
    Ok(())
}

/// `--shared`: records are leased from every partition; printed ones are acknowledged
/// (`--ack auto`) or released for redelivery on exit (`--ack none`).
async fn run_shared(a: ConsumeArgs, group: String) -> anyhow::Result<()> {
    let client = a.client.client()?;
    let mut config = GroupConsumerConfig::new(group.clone(), [a.topic.clone()]);
    config.auto_commit = false;
    config.client_id = "tidemark-cli".into();
    let mut consumer = client
        .shared_consumer(config)
        .await
        .map_err(|e| start_error(e, &a.topic, &format!("could not join shared group {group:?} on topic")))?;
    let max = a.max_messages.unwrap_or(u64::MAX);
    let idle = (a.timeout_ms > 0).then(|| Duration::from_millis(a.timeout_ms));
    let (mut printed, mut last_record) = (0u64, Instant::now());
    let counter = crate::common::record_counter("read", std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while printed < max {
        let Some(wait) = idle_wait(idle, last_record) else { break };
        let records = tokio::select! {
            biased;
            _ = &mut ctrl_c => break,
            r = consumer.poll_up_to(wait, u32::try_from(max - printed).unwrap_or(500).min(500)) => {
                r.with_context(|| format!("could not read topic {:?}", a.topic))?
            }
        };
        if records.is_empty() {
            continue;
        }
        last_record = Instant::now();
        let take = records.len().min(usize::try_from(max - printed).unwrap_or(usize::MAX));
        let counted = records[..take].iter().map(|r| (&r.record, Some(r.delivery_count)));
        if let Err(e) = print_counted(counted, a.format, a.print_headers) {
            // As above: leave (releasing every lease) rather than hold them until expiry.
            let _ = consumer.close().await;
            return Err(e);
        }
        printed += take as u64;
        counter.inc(take as u64);
        // With --ack none printed records stay leased until exit, then are released:
        // releasing them now would hand them straight back to this loop.
        for (i, r) in records.iter().enumerate() {
            match (i < take, a.ack) {
                (true, AckArg::Auto) => consumer.ack(&r.record),
                (true, AckArg::None) => {}
                (false, _) => consumer.release(&r.record),
            }
        }
    }
    drop(counter);
    consumer.close().await.with_context(|| format!("leaving group {group:?}"))?;
    eprintln!("Consumed {printed} record(s).");
    Ok(())
}
