//! `tidemark topic create | list | describe | alter | delete`.

use anyhow::Context;
use serde::Serialize;
use std::time::Duration;

use tidemark_client::{Admin, TopicDescription, TopicSettings};

use crate::common::{id_list, print_json, print_table, ClientArgs, Format};

#[derive(Debug, clap::Subcommand)]
pub enum TopicCommand {
    /// Create a topic with P partitions, each replicated on R nodes.
    #[command(after_help = "Examples:\n  \
        tidemark topic create orders --partitions 3 --replication-factor 3\n  \
        tidemark topic create audit --partitions 1 --retention-ms 604800000   # keep 7 days\n  \
        tidemark topic create alerts --record-ttl-ms 60000   # shared groups: deliver within 1 min\n\n\
        Returns once every partition has elected a leader, so you can produce right away.")]
    Create(CreateArgs),
    /// List the topics, one name per line.
    #[command(after_help = "Examples:\n  tidemark topic list\n  tidemark topic list --format json")]
    List(ListArgs),
    /// Show a topic's partitions: leader, replicas, in-sync replicas, log start and end
    /// offsets, bytes kept.
    #[command(after_help = "Examples:\n  \
        tidemark topic describe orders\n  \
        tidemark topic describe orders --format json\n\n\
        JSON: {\"name\":..,\"partitions\":[{\"partition\":0,\"leader\":1,\"replicas\":[1,2,3],\
        \"log_start_offset\":0,\"log_end_offset\":N,\"retained_bytes\":B,\"in_sync_replicas\":[1,2,3],\
        \"under_replicated\":false,\"moving_to\":[]}],\"record_ttl_ms\":0,\"replication_factor\":3,\"retention_ms\":0,\
        \"retention_bytes\":0}\n\
        A leader of 0 means the partition is electing one right now. IN SYNC lists the replicas\n\
        caught up with the leader; fewer than REPLICAS means the partition is under-replicated\n\
        (a replica is down or behind). LOG START moves forward as retention removes the oldest\n\
        batches; reads below it get OffsetOutOfRange.")]
    Describe(DescribeArgs),
    /// Change a topic's retention or record TTL; settings not given stay as they are.
    #[command(after_help = "Examples:\n  \
        tidemark topic alter audit --retention-ms 86400000     # keep 1 day from now on\n  \
        tidemark topic alter logs --retention-bytes 1073741824  # at most 1 GiB per partition\n  \
        tidemark topic alter logs --retention-ms 0              # keep forever again\n\n\
        Lower limits take effect on the partition leaders' next retention pass (every 5 s by\n\
        default): the oldest whole batches past the limit are removed on every replica.")]
    Alter(AlterArgs),
    /// Delete a topic and all its records.
    #[command(after_help = "Example:\n  tidemark topic delete orders")]
    Delete(DeleteArgs),
    /// Move one partition to other nodes (as many as it has now), while it serves.
    #[command(after_help = "Examples:\n  \
        tidemark topic reassign orders --partition 0 --replicas 1,2,4 --wait\n  \
        tidemark topic reassign orders --partition 0 --replicas 1,2,4   # returns at once\n\n\
        New replicas join the partition's Raft group as learners and copy its data while it\n\
        goes on serving; once they have caught up, one joint membership change swaps them in,\n\
        and the replicas that left delete their copy. Every replica must be a member of the\n\
        cluster (tidemark cluster add-node). Without --wait the command returns at once;\n\
        `topic describe` shows REPLICAS as OLD -> NEW until the move completes.\n\n\
        JSON: {\"topic\":..,\"partition\":0,\"replicas\":[1,2,4],\"moving_to\":[],\"leader\":1}")]
    Reassign(crate::reassign::ReassignArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The topic's name: 1-249 of ASCII letters, digits, '.', '_' and '-'.
    pub name: String,
    /// How many partitions (the unit of parallelism and ordering).
    #[arg(long, short = 'p', default_value_t = 1)]
    pub partitions: u32,
    /// On how many nodes each partition is kept [default: 3, or the number of live nodes if fewer].
    #[arg(long, short = 'r')]
    pub replication_factor: Option<u32>,
    /// Delete batches appended more than this many milliseconds ago (0: keep forever;
    /// otherwise at least 1000). Checked every 5 s; whole batches go.
    #[arg(long, default_value_t = 0)]
    pub retention_ms: i64,
    /// Delete the oldest batches while a partition holds more than this many bytes (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub retention_bytes: u64,
    /// Shared groups do not deliver records older than this many milliseconds (0: no TTL);
    /// each group drops or dead-letters them (`group create --expired`). A group's --ttl-ms
    /// and a record's `tidemark-ttl-ms` header apply too: the shortest wins.
    #[arg(long, default_value_t = 0)]
    pub record_ttl_ms: u64,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    pub name: String,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Args)]
pub struct AlterArgs {
    pub name: String,
    /// Delete batches appended more than this many milliseconds ago (0: keep forever;
    /// otherwise at least 1000).
    #[arg(long)]
    pub retention_ms: Option<i64>,
    /// Delete the oldest batches while a partition holds more than this many bytes (0: no limit).
    #[arg(long)]
    pub retention_bytes: Option<u64>,
    /// Shared groups do not deliver records older than this many milliseconds (0: no TTL).
    #[arg(long)]
    pub record_ttl_ms: Option<u64>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    pub name: String,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(cmd: TopicCommand) -> anyhow::Result<()> {
    match cmd {
        TopicCommand::Create(a) => create(a).await,
        TopicCommand::List(a) => list(a).await,
        TopicCommand::Describe(a) => describe(a).await,
        TopicCommand::Alter(a) => alter(a).await,
        TopicCommand::Delete(a) => delete(a).await,
        TopicCommand::Reassign(a) => crate::reassign::reassign(a).await,
    }
}

async fn create(a: CreateArgs) -> anyhow::Result<()> {
    let admin = a.client.client()?.admin();
    let rf = match a.replication_factor {
        Some(rf) => rf,
        None => default_replication_factor(&admin).await?,
    };
    let settings = TopicSettings {
        retention_ms: a.retention_ms,
        retention_bytes: a.retention_bytes,
        record_ttl: (a.record_ttl_ms > 0).then(|| Duration::from_millis(a.record_ttl_ms)),
    };
    let d = admin
        .create_topic_with(&a.name, a.partitions, rf, settings)
        .await
        .with_context(|| format!("could not create topic {:?}", a.name))?;
    match a.format {
        Format::Json => print_json(&DescribeJson::from(&d)),
        Format::Text => {
            println!("Created topic {:?}: {} partition(s), replication factor {}.", d.name, d.partitions.len(), rf);
            print_partitions(&d)
        }
    }
}

/// Three copies, as Kafka and Redpanda recommend, unless fewer nodes are alive (a one-node
/// dev cluster must still be able to create topics without extra flags).
async fn default_replication_factor(admin: &Admin) -> anyhow::Result<u32> {
    let status = admin.cluster_status().await.context("could not read the cluster's size")?;
    let alive = status.nodes.iter().filter(|n| n.alive).count() as u32;
    Ok(alive.clamp(1, 3))
}

async fn list(a: ListArgs) -> anyhow::Result<()> {
    let names = a.client.client()?.admin().list_topics().await.context("could not list topics")?;
    match a.format {
        Format::Json => print_json(&serde_json::json!({ "topics": names })),
        Format::Text => {
            if names.is_empty() {
                eprintln!("No topics yet. Create one with: tidemark topic create NAME --partitions 3");
            }
            for n in names {
                println!("{n}");
            }
            Ok(())
        }
    }
}

async fn describe(a: DescribeArgs) -> anyhow::Result<()> {
    let d = a
        .client
        .client()?
        .admin()
        .describe_topic(&a.name)
        .await
        .with_context(|| format!("could not describe topic {:?}", a.name))?;
    match a.format {
        Format::Json => print_json(&DescribeJson::from(&d)),
        Format::Text => {
            let retention = retention_text(&d);
            let ttl = match d.record_ttl_ms {
                0 => String::new(),
                ms => format!(", record TTL {ms} ms"),
            };
            println!(
                "Topic {:?}: {} partition(s), replication factor {}, retention {}{ttl}.",
                d.name,
                d.partitions.len(),
                d.replication_factor,
                retention
            );
            print_partitions(&d)
        }
    }
}

async fn alter(a: AlterArgs) -> anyhow::Result<()> {
    if a.retention_ms.is_none() && a.retention_bytes.is_none() && a.record_ttl_ms.is_none() {
        anyhow::bail!("nothing to change: give --retention-ms, --retention-bytes or --record-ttl-ms");
    }
    let admin = a.client.client()?.admin();
    let what = || format!("could not alter topic {:?}", a.name);
    let current = admin.describe_topic(&a.name).await.with_context(what)?;
    let ttl_ms = a.record_ttl_ms.unwrap_or(current.record_ttl_ms.max(0) as u64);
    let settings = TopicSettings {
        retention_ms: a.retention_ms.unwrap_or(current.retention_ms),
        retention_bytes: a.retention_bytes.unwrap_or(current.retention_bytes),
        record_ttl: (ttl_ms > 0).then(|| Duration::from_millis(ttl_ms)),
    };
    let d = admin.alter_topic(&a.name, settings).await.with_context(what)?;
    match a.format {
        Format::Json => print_json(&DescribeJson::from(&d)),
        Format::Text => {
            println!("Altered topic {:?}: retention {}.", d.name, retention_text(&d));
            Ok(())
        }
    }
}

fn retention_text(d: &TopicDescription) -> String {
    match (d.retention_ms, d.retention_bytes) {
        (0, 0) => "forever".to_string(),
        (ms, 0) => format!("{ms} ms"),
        (0, b) => format!("{b} bytes per partition"),
        (ms, b) => format!("{ms} ms or {b} bytes per partition"),
    }
}

async fn delete(a: DeleteArgs) -> anyhow::Result<()> {
    let admin = a.client.client()?.admin();
    admin.delete_topic(&a.name).await.with_context(|| format!("could not delete topic {:?}", a.name))?;
    match a.format {
        Format::Json => print_json(&serde_json::json!({ "deleted": a.name })),
        Format::Text => {
            println!("Deleted topic {:?}.", a.name);
            Ok(())
        }
    }
}

fn print_partitions(d: &TopicDescription) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = d
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                p.leader.map_or("(electing)".to_string(), |l| l.to_string()),
                match p.moving_to.is_empty() {
                    true => id_list(&p.replicas),
                    false => format!("{} -> {}", id_list(&p.replicas), id_list(&p.moving_to)),
                },
                if p.in_sync_replicas.is_empty() { "-".to_string() } else { id_list(&p.in_sync_replicas) },
                p.log_start_offset.to_string(),
                p.log_end_offset.to_string(),
                p.retained_bytes.to_string(),
            ]
        })
        .collect();
    print_table(&["PARTITION", "LEADER", "REPLICAS", "IN SYNC", "LOG START", "LOG END", "BYTES"], &rows)?;
    let under = d.partitions.iter().filter(|p| p.under_replicated()).count();
    if under > 0 {
        eprintln!("{under} of {} partition(s) under-replicated.", d.partitions.len());
    }
    Ok(())
}

/// The `topic describe --format json` shape (a stable contract: add, never rename).
#[derive(Serialize)]
struct DescribeJson<'a> {
    name: &'a str,
    partitions: Vec<PartitionJson<'a>>,
    /// Shared groups do not deliver records older than this (0: no topic TTL).
    record_ttl_ms: i64,
    replication_factor: u32,
    /// 0: keep forever.
    retention_ms: i64,
    /// Per partition; 0: no size limit.
    retention_bytes: u64,
}

#[derive(Serialize)]
struct PartitionJson<'a> {
    partition: u32,
    /// 0 while the partition has no leader.
    leader: u64,
    replicas: &'a [u64],
    log_start_offset: u64,
    log_end_offset: u64,
    /// Bytes of batches kept from the log start to the end.
    retained_bytes: u64,
    /// Replicas caught up with the leader (empty when unknown).
    in_sync_replicas: &'a [u64],
    under_replicated: bool,
    /// Where a move in progress goes (empty: not moving).
    moving_to: &'a [u64],
}

impl<'a> From<&'a TopicDescription> for DescribeJson<'a> {
    fn from(d: &'a TopicDescription) -> Self {
        let partitions = d
            .partitions
            .iter()
            .map(|p| PartitionJson {
                partition: p.partition,
                leader: p.leader.unwrap_or(0),
                replicas: &p.replicas,
                log_start_offset: p.log_start_offset,
                log_end_offset: p.log_end_offset,
                retained_bytes: p.retained_bytes,
                in_sync_replicas: &p.in_sync_replicas,
                under_replicated: p.under_replicated(),
                moving_to: &p.moving_to,
            })
            .collect();
        DescribeJson {
            name: &d.name,
            partitions,
            record_ttl_ms: d.record_ttl_ms,
            replication_factor: d.replication_factor,
            retention_ms: d.retention_ms,
            retention_bytes: d.retention_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_client::PartitionDescription;

    #[test]
    fn describe_json_has_the_contract_shape() {
        let d = TopicDescription {
            name: "orders".into(),
            partitions: vec![PartitionDescription {
                partition: 0,
                leader: Some(1),
                replicas: vec![1, 2, 3],
                log_start_offset: 0,
                log_end_offset: 42,
                retained_bytes: 4096,
                in_sync_replicas: vec![1, 3],
                moving_to: vec![],
            }],
            replication_factor: 3,
            retention_ms: 0,
            retention_bytes: 0,
            record_ttl_ms: 60_000,
        };
        let json = serde_json::to_string(&DescribeJson::from(&d)).unwrap();
        assert_eq!(
            json,
            r#"{"name":"orders","partitions":[{"partition":0,"leader":1,"replicas":[1,2,3],"log_start_offset":0,"log_end_offset":42,"retained_bytes":4096,"in_sync_replicas":[1,3],"under_replicated":true,"moving_to":[]}],"record_ttl_ms":60000,"replication_factor":3,"retention_ms":0,"retention_bytes":0}"#
        );
    }
}
