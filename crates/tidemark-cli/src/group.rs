//! `tidemark group create | list | describe | reset-offsets | delete`.

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tidemark_client::{ExpiredAction, GroupDescription, GroupMode, GroupSettings, ResetScope, StartPosition};

use crate::common::{print_json, print_table, ClientArgs, Format};

#[derive(Debug, clap::Subcommand)]
pub enum GroupCommand {
    /// Create a consumer group reading one or more topics.
    #[command(after_help = "Examples:\n  \
        tidemark group create billing --topic orders\n  \
        tidemark group create billing --topic orders --session-timeout-ms 30000\n\n\
        Partitioned groups (the default) give each partition to one member at a time; more\n\
        members share the partitions, and each group sees every record of its topics.\n\
        Shared groups (--mode shared) are queues: any member takes any record, so a group\n\
        scales past its partition count; consume them with `tidemark consume T --group G --shared`.\n\
        Consuming with --group creates a missing group with defaults, so this command is only\n\
        needed for non-default settings, e.g.:\n  \
        tidemark group create jobs --topic tasks --mode shared --lock-ms 10000 --max-attempts 3 \\\n    \
        --dead-letter-topic tasks-dlq\n  \
        tidemark group create alerts --topic alerts --mode shared --ttl-ms 60000 --expired drop\n\n\
        TTL (shared mode): a record not delivered in time is dropped or dead-lettered (reason\n\
        `expired`), as --expired says. Three TTLs apply and the shortest wins: the group's\n\
        --ttl-ms and the topic's --record-ttl-ms (both from the record batch's newest timestamp)\n\
        and the record's own `tidemark-ttl-ms` header (ms after the record's timestamp).")]
    Create(CreateArgs),
    /// List the consumer groups.
    #[command(after_help = "Examples:\n  tidemark group list\n  tidemark group list --format json")]
    List(ListArgs),
    /// Show a group's members, who owns which partition, committed offsets and lag.
    #[command(after_help = "Examples:\n  \
        tidemark group describe billing\n  \
        tidemark group describe billing --format json\n\n\
        LAG is the records written but not yet committed by the group. An owner shown as\n\
        `a -> b` is being handed over: a commits its progress, then b takes over. For a\n\
        shared group: SETTLED-BELOW (every record below is acknowledged, dead-lettered or\n\
        expired), IN-FLIGHT (leased to members now), EXPIRED (records past their TTL, dropped\n\
        or dead-lettered), DEAD-LETTERED (moved to the dead-letter topic, any reason) and LAG\n\
        (records not yet settled).")]
    Describe(DescribeArgs),
    /// Move a group's committed offsets to replay (or skip) records.
    #[command(after_help = "Examples:\n  \
        tidemark group reset-offsets billing --to-earliest      # replay everything retained\n  \
        tidemark group reset-offsets billing --to-offset 100\n  \
        tidemark group reset-offsets billing --to-timestamp 1700000000000\n\n\
        Applies to every partition of the group's topics. The group must have no live\n\
        members (stop its consumers first, or wait for their sessions to expire); the next\n\
        member to join starts reading from the new offsets.")]
    ResetOffsets(ResetArgs),
    /// Delete a group and its committed offsets.
    #[command(after_help = "Example:\n  tidemark group delete billing\n\n\
        The group must have no live members. Deleting cannot be undone: a group created\n\
        again under the name starts without committed offsets.")]
    Delete(DeleteArgs),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// Each partition belongs to one member at a time (Kafka consumer groups).
    #[default]
    Partitioned,
    /// Any member takes any record: leased for --lock-ms, acknowledged, redelivered when
    /// released or when its member dies, dead-lettered after --max-attempts.
    Shared,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ExpiredArg {
    /// Settle it without delivering it; `group describe` counts it under EXPIRED.
    Drop,
    /// Write it to the dead-letter topic with tidemark-dlq-reason `expired` (nothing is
    /// lost silently, hence the default).
    #[default]
    DeadLetter,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The group's name: 1-249 of ASCII letters, digits, '.', '_' and '-'.
    pub name: String,
    /// A topic the group reads (repeat for several).
    #[arg(long, required = true)]
    pub topic: Vec<String>,
    #[arg(long, value_enum, default_value_t)]
    pub mode: ModeArg,
    /// A member not heard from for this long is removed and its partitions move [default: 10000].
    #[arg(long)]
    pub session_timeout_ms: Option<u64>,
    /// How often members heartbeat; at most a third of the session timeout [default: 1000].
    #[arg(long)]
    pub heartbeat_interval_ms: Option<u64>,
    /// How long a member may take to commit and release a partition that moves to another
    /// member before it moves anyway [default: 30000].
    #[arg(long)]
    pub rebalance_timeout_ms: Option<u64>,
    /// Shared mode: how long a delivered record stays leased [default: 30000].
    #[arg(long)]
    pub lock_ms: Option<u64>,
    /// Shared mode: deliveries before a record is dead-lettered [default: 5].
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Shared mode: where records go after --max-attempts deliveries or when a member
    /// rejects them [default: <topic>.<group>.dlq, created on first use]. Each dead letter
    /// carries tidemark-dlq-reason, -attempts, -topic, -partition and -offset headers.
    #[arg(long)]
    pub dead_letter_topic: Option<String>,
    /// Shared mode: records older than this are not delivered (0: no limit); see --expired.
    #[arg(long)]
    pub ttl_ms: Option<u64>,
    /// Shared mode: what happens to a record past its TTL (group, topic or record header).
    #[arg(long, value_enum, default_value_t)]
    pub expired: ExpiredArg,
    /// Shared mode: unsettled leases one member may hold in one partition; a member at
    /// the limit gets no new records from it until it settles some [default: 500].
    #[arg(long)]
    pub max_in_flight: Option<u32>,
    /// json prints the new group as `group describe --format json` does.
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
#[command(group(clap::ArgGroup::new("to").required(true)))]
pub struct ResetArgs {
    pub name: String,
    /// The oldest retained record of each partition.
    #[arg(long, group = "to")]
    pub to_earliest: bool,
    /// The end of each partition (skip everything written so far).
    #[arg(long, group = "to")]
    pub to_latest: bool,
    /// This offset in every partition.
    #[arg(long, group = "to")]
    pub to_offset: Option<u64>,
    /// The first record at or after this time (ms since the epoch) in each partition.
    #[arg(long, group = "to")]
    pub to_timestamp: Option<i64>,
    /// Only this topic of the group's.
    #[arg(long)]
    pub topic: Option<String>,
    /// Only this partition (of --topic, or of each topic).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Show the new offsets without committing them.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    pub name: String,
    /// json prints {"deleted": NAME}.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(cmd: GroupCommand) -> anyhow::Result<()> {
    match cmd {
        GroupCommand::Create(a) => create(a).await,
        GroupCommand::List(a) => list(a).await,
        GroupCommand::Describe(a) => describe(a).await,
        GroupCommand::ResetOffsets(a) => reset(a).await,
        GroupCommand::Delete(a) => {
            a.client
                .client()?
                .admin()
                .delete_group(&a.name)
                .await
                .with_context(|| format!("deleting group {}", a.name))?;
            match a.format {
                Format::Json => print_json(&serde_json::json!({ "deleted": a.name })),
                Format::Text => {
                    eprintln!("Deleted group {}.", a.name);
                    Ok(())
                }
            }
        }
    }
}

async fn create(a: CreateArgs) -> anyhow::Result<()> {
    let ms = |v: Option<u64>| v.map(Duration::from_millis);
    let settings = GroupSettings {
        mode: match a.mode {
            ModeArg::Partitioned => GroupMode::Partitioned,
            ModeArg::Shared => GroupMode::Shared,
        },
        session_timeout: ms(a.session_timeout_ms),
        heartbeat_interval: ms(a.heartbeat_interval_ms),
        lock_duration: ms(a.lock_ms),
        max_delivery_attempts: a.max_attempts,
        redelivery_backoff: None,
        dead_letter_topic: a.dead_letter_topic,
        ttl: ms(a.ttl_ms),
        rebalance_timeout: ms(a.rebalance_timeout_ms),
        expired: Some(match a.expired {
            ExpiredArg::Drop => ExpiredAction::Drop,
            ExpiredArg::DeadLetter => ExpiredAction::DeadLetter,
        }),
        max_in_flight: a.max_in_flight,
    };
    let admin = a.client.client()?.admin();
    admin.create_group(&a.name, &a.topic, &settings).await.with_context(|| format!("creating group {}", a.name))?;
    if a.format == Format::Json {
        let d = admin.describe_group(&a.name).await.with_context(|| format!("describing group {}", a.name))?;
        return print_json(&describe_json(&d));
    }
    eprintln!("Created group {} reading {}.", a.name, a.topic.join(", "));
    Ok(())
}

async fn list(a: ListArgs) -> anyhow::Result<()> {
    let groups = a.client.client()?.admin().list_groups().await.context("listing groups")?;
    match a.format {
        Format::Json => {
            #[derive(Serialize)]
            struct Row<'a> {
                name: &'a str,
                mode: &'static str,
                members: u32,
                topics: &'a [String],
            }
            let rows: Vec<Row> = groups
                .iter()
                .map(|g| Row { name: &g.name, mode: mode_name(g.mode), members: g.members, topics: &g.topics })
                .collect();
            print_json(&rows)
        }
        Format::Text => {
            let rows: Vec<Vec<String>> = groups
                .iter()
                .map(|g| vec![g.name.clone(), mode_name(g.mode).into(), g.members.to_string(), g.topics.join(",")])
                .collect();
            print_table(&["GROUP", "MODE", "MEMBERS", "TOPICS"], &rows)
        }
    }
}

fn mode_name(m: GroupMode) -> &'static str {
    match m {
        GroupMode::Partitioned => "partitioned",
        GroupMode::Shared => "shared",
    }
}

/// `group describe --format json` (a stable contract: add, never rename).
#[derive(Serialize)]
struct DescribeJson<'a> {
    name: &'a str,
    group_id: u64,
    mode: &'static str,
    session_timeout_ms: Option<u128>,
    heartbeat_interval_ms: Option<u128>,
    topics: &'a [String],
    members: Vec<MemberJson<'a>>,
    partitions: Vec<PartitionJson<'a>>,
}

#[derive(Serialize)]
struct MemberJson<'a> {
    member_id: &'a str,
    client_id: &'a str,
    topics: &'a [String],
    partitions: usize,
}

#[derive(Serialize)]
struct PartitionJson<'a> {
    topic: &'a str,
    partition: u32,
    owner: Option<&'a str>,
    generation: u64,
    moving_to: Option<&'a str>,
    committed: Option<u64>,
    log_end_offset: Option<u64>,
    lag: Option<u64>,
    /// Shared groups: records leased to members now.
    in_flight: Option<u32>,
    /// Shared groups: records past their TTL (dropped or dead-lettered).
    expired: Option<u64>,
    /// Shared groups: records moved to the dead-letter topic.
    dead_lettered: Option<u64>,
}

fn describe_json(d: &GroupDescription) -> DescribeJson<'_> {
    let owned = |m: &str| d.partitions.iter().filter(|p| p.owner.as_deref() == Some(m)).count();
    DescribeJson {
        name: &d.name,
        group_id: d.group_id,
        mode: mode_name(d.settings.mode),
        session_timeout_ms: d.settings.session_timeout.map(|t| t.as_millis()),
        heartbeat_interval_ms: d.settings.heartbeat_interval.map(|t| t.as_millis()),
        topics: &d.topics,
        members: d
            .members
            .iter()
            .map(|m| MemberJson {
                member_id: &m.member_id,
                client_id: &m.client_id,
                topics: &m.topics,
                partitions: owned(&m.member_id),
            })
            .collect(),
        partitions: d
            .partitions
            .iter()
            .map(|p| PartitionJson {
                topic: &p.topic,
                partition: p.partition,
                owner: p.owner.as_deref(),
                generation: p.generation,
                moving_to: p.moving_to.as_deref(),
                committed: p.committed,
                log_end_offset: p.log_end_offset,
                lag: p.lag,
                in_flight: p.in_flight,
                expired: p.expired,
                dead_lettered: p.dead_lettered,
            })
            .collect(),
    }
}

async fn describe(a: DescribeArgs) -> anyhow::Result<()> {
    let admin = a.client.client()?.admin();
    let d = admin.describe_group(&a.name).await.with_context(|| format!("describing group {}", a.name))?;
    if a.format == Format::Json {
        return print_json(&describe_json(&d));
    }
    let dash = || "-".to_string();
    println!(
        "Group {} ({}), {} member(s), topics: {}",
        d.name,
        mode_name(d.settings.mode),
        d.members.len(),
        d.topics.join(", ")
    );
    let rows: Vec<Vec<String>> = d
        .partitions
        .iter()
        .map(|p| {
            let owner = match (&p.owner, &p.moving_to) {
                (Some(o), Some(to)) => format!("{o} -> {to}"),
                (Some(o), None) => o.clone(),
                _ => dash(),
            };
            let opt = |v: Option<u64>| v.map_or_else(dash, |v| v.to_string());
            let mut row = vec![p.topic.clone(), p.partition.to_string()];
            if d.settings.mode == GroupMode::Shared {
                row.extend([opt(p.committed), opt(p.in_flight.map(u64::from)), opt(p.expired), opt(p.dead_lettered)]);
            } else {
                row.extend([owner, opt(p.committed)]);
            }
            row.extend([opt(p.log_end_offset), opt(p.lag)]);
            row
        })
        .collect();
    let header: &[&str] = match d.settings.mode {
        GroupMode::Shared => {
            &["TOPIC", "PARTITION", "SETTLED-BELOW", "IN-FLIGHT", "EXPIRED", "DEAD-LETTERED", "LOG-END", "LAG"]
        }
        GroupMode::Partitioned => &["TOPIC", "PARTITION", "OWNER", "COMMITTED", "LOG-END", "LAG"],
    };
    print_table(header, &rows)
}

async fn reset(a: ResetArgs) -> anyhow::Result<()> {
    let to = match (a.to_earliest, a.to_latest, a.to_offset, a.to_timestamp) {
        (true, ..) => StartPosition::Earliest,
        (_, true, ..) => StartPosition::Latest,
        (_, _, Some(n), _) => StartPosition::Offset(n),
        (_, _, _, Some(ts)) => StartPosition::Timestamp(ts),
        _ => anyhow::bail!("say where to: --to-earliest, --to-latest, --to-offset N or --to-timestamp MS"),
    };
    let admin = a.client.client()?.admin();
    let scope = ResetScope { topic: a.topic.clone(), partition: a.partition, dry_run: a.dry_run };
    let done = admin
        .reset_offsets_with(&a.name, to, &scope)
        .await
        .with_context(|| format!("resetting offsets of {}", a.name))?;
    for r in done.iter().filter(|r| r.clamped_from.is_some()) {
        let asked = r.clamped_from.unwrap_or_default();
        eprintln!(
            "note: offset {asked} is outside the retained log of {}/{}; using {} instead",
            r.topic, r.partition, r.offset
        );
    }
    if a.dry_run {
        eprintln!("Dry run: nothing was changed. Run again without --dry-run to commit these offsets.");
    }
    match a.format {
        Format::Json => {
            #[derive(Serialize)]
            struct Row<'a> {
                topic: &'a str,
                partition: u32,
                offset: u64,
                #[serde(skip_serializing_if = "Option::is_none")]
                clamped_from: Option<u64>,
            }
            let rows: Vec<Row> = done
                .iter()
                .map(|r| Row {
                    topic: &r.topic,
                    partition: r.partition,
                    offset: r.offset,
                    clamped_from: r.clamped_from,
                })
                .collect();
            print_json(&rows)
        }
        Format::Text => {
            let rows: Vec<Vec<String>> =
                done.iter().map(|r| vec![r.topic.clone(), r.partition.to_string(), r.offset.to_string()]).collect();
            print_table(&["TOPIC", "PARTITION", "NEW-OFFSET"], &rows)
        }
    }
}
