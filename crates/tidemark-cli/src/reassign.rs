//! `tidemark topic reassign`, `cluster add-node` and `cluster remove-node`: membership
//! changes, with progress while they run.

use std::time::{Duration, Instant};

use anyhow::Context;
use tidemark_client::{Admin, PartitionDescription};

use crate::common::{id_list, print_json, ClientArgs, Format};

#[derive(Debug, clap::Args)]
pub struct ReassignArgs {
    pub topic: String,
    /// The partition to move.
    #[arg(long)]
    pub partition: u32,
    /// Its new replicas, as many as it has now; the first is the preferred leader.
    #[arg(long, value_delimiter = ',', required = true)]
    pub replicas: Vec<u64>,
    /// Wait until the move is complete (exit 0) or ended elsewhere (non-zero), showing
    /// progress; without it the command returns once the move is recorded.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up waiting after this many seconds (the move goes on).
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Args)]
pub struct AddNodeArgs {
    /// The new node's id (as given to its `serve --id`).
    #[arg(long)]
    pub id: u64,
    /// Its cluster address (as given to its `serve --cluster-listen`).
    #[arg(long)]
    pub address: String,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn spinner(message: String) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar.with_finish(indicatif::ProgressFinish::AndClear)
}

pub async fn add_node(a: AddNodeArgs) -> anyhow::Result<()> {
    let admin = a.client.client()?.admin();
    let bar = spinner(format!("adding node {} at {}: it catches up with the metadata first", a.id, a.address));
    let voter = admin.add_node(a.id, &a.address).await.with_context(|| format!("could not add node {}", a.id))?;
    bar.finish_and_clear();
    let role = if voter { "voter" } else { "learner" };
    match a.format {
        Format::Json => print_json(&serde_json::json!({ "id": a.id, "address": a.address, "role": role })),
        Format::Text => {
            println!("Node {} is a member ({role}); new partitions are placed on it, and", a.id);
            println!("`tidemark topic reassign` moves existing ones.");
            Ok(())
        }
    }
}

pub async fn reassign(a: ReassignArgs) -> anyhow::Result<()> {
    let admin = a.client.client()?.admin();
    let what = || format!("could not reassign {}/{}", a.topic, a.partition);
    let d = admin.reassign_partition(&a.topic, a.partition, &a.replicas).await.with_context(what)?;
    let p = partition(&d.partitions, a.partition)?;
    let moving = !p.moving_to.is_empty();
    if a.wait && moving {
        wait_for_move(&admin, &a).await?;
    }
    let d = admin.describe_topic(&a.topic).await.with_context(what)?;
    let p = partition(&d.partitions, a.partition)?;
    match a.format {
        Format::Json => print_json(&serde_json::json!({
            "topic": a.topic,
            "partition": a.partition,
            "replicas": p.replicas,
            "moving_to": p.moving_to,
            "leader": p.leader.unwrap_or(0),
        })),
        Format::Text if !p.moving_to.is_empty() => {
            println!(
                "{}/{} is moving from {} to {}; follow it with `tidemark topic describe {}`.",
                a.topic,
                a.partition,
                id_list(&p.replicas),
                id_list(&p.moving_to),
                a.topic
            );
            Ok(())
        }
        Format::Text => {
            println!("{}/{} has replicas {}.", a.topic, a.partition, id_list(&p.replicas));
            Ok(())
        }
    }
}

fn partition(partitions: &[PartitionDescription], p: u32) -> anyhow::Result<&PartitionDescription> {
    partitions.iter().find(|d| d.partition == p).with_context(|| format!("partition {p} is not in the answer"))
}

/// Polls until the partition is no longer moving: done when it has the replicas asked
/// for, an error when it ended without them (the topic deleted, say) or the wait timed out.
async fn wait_for_move(admin: &Admin, a: &ReassignArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let bar = spinner(String::new());
    loop {
        let d = admin.describe_topic(&a.topic).await.context("could not follow the move")?;
        let p = partition(&d.partitions, a.partition)?;
        if p.moving_to.is_empty() {
            bar.finish_and_clear();
            if p.replicas != a.replicas {
                anyhow::bail!("the move ended elsewhere: {}/{} is on {}", a.topic, a.partition, id_list(&p.replicas));
            }
            return Ok(());
        }
        let pending: Vec<u64> = p.moving_to.iter().copied().filter(|n| !p.in_sync_replicas.contains(n)).collect();
        bar.set_message(match pending.is_empty() {
            true => format!("moving {}/{}: swapping the replicas", a.topic, a.partition),
            false => format!("moving {}/{}: node(s) {} catching up", a.topic, a.partition, id_list(&pending)),
        });
        if started.elapsed() >= Duration::from_secs(a.timeout_secs) {
            anyhow::bail!(
                "{}/{} is still moving after {} s; the move goes on: follow it with `tidemark topic describe {}`",
                a.topic,
                a.partition,
                a.timeout_secs,
                a.topic
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[derive(Debug, clap::Args)]
pub struct RemoveNodeArgs {
    /// The node to remove.
    pub id: u64,
    /// Wait until it has left (its partitions moved first), showing progress; without it
    /// the command starts the removal and returns (run it again to follow it).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up waiting after this many seconds (the removal goes on).
    #[arg(long, default_value_t = 1800)]
    pub timeout_secs: u64,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn remove_node(a: RemoveNodeArgs) -> anyhow::Result<()> {
    let admin = a.client.client()?.admin();
    let started = Instant::now();
    let bar = spinner(format!("removing node {}", a.id));
    let moving = loop {
        let moving = admin.remove_node(a.id).await.with_context(|| format!("could not remove node {}", a.id))?;
        match moving {
            Some(n) if a.wait => {
                bar.set_message(format!("removing node {}: {n} partition(s) still moving off it", a.id))
            }
            other => break other,
        }
        if started.elapsed() >= Duration::from_secs(a.timeout_secs) {
            anyhow::bail!(
                "node {} still holds partitions after {} s; the removal goes on (run this again to follow it)",
                a.id,
                a.timeout_secs
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    bar.finish_and_clear();
    match a.format {
        Format::Json => print_json(&serde_json::json!({
            "id": a.id,
            "removed": moving.is_none(),
            "partitions_moving": moving.unwrap_or(0),
        })),
        Format::Text => {
            match moving {
                None => println!("Node {} has left the cluster; its process can be stopped.", a.id),
                Some(n) => println!(
                    "Removing node {}: {n} partition(s) moving off it; run this again (or with --wait) to follow it.",
                    a.id
                ),
            }
            Ok(())
        }
    }
}
