//! `tidemark cluster status`.

use anyhow::Context;
use serde::Serialize;
use tidemark_client::ClusterStatus;

use crate::common::{print_json, print_table, ClientArgs, Format};

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Show the cluster's nodes, which are alive, which leads the metadata group, how many
    /// partitions each leads, and the partitions without a leader or under-replicated.
    #[command(after_help = "Examples:\n  \
        tidemark cluster status\n  \
        tidemark cluster status --bootstrap 10.0.0.1:9092 --format json\n\n\
        JSON: {\"nodes\":[{\"id\":1,\"address\":\"..\",\"cluster_address\":\"..\",\"alive\":true,\"voter\":true,\"leaders\":2}],\"metadata_leader\":1,\
        \"partitions\":{\"total\":6,\"leaderless\":0,\"under_replicated\":0}}\n\
        A metadata_leader of 0 means the cluster is electing one right now. Under-replicated:\n\
        some replica is down or behind (see `tidemark topic describe` for which).")]
    Status(StatusArgs),
    /// Add a node started with `tidemark serve --join`: it catches up with the metadata as
    /// a learner, then votes while the cluster has fewer than 3 (or, from five nodes, 5)
    /// voters. Returns once it is a member.
    #[command(after_help = "Example (a fourth node on this host):\n  \
        tidemark serve --id 4 --listen 127.0.0.1:9095 --cluster-listen 127.0.0.1:9195 \\\n      \
        --data-dir data/4 --join 127.0.0.1:9192\n  \
        tidemark cluster add-node --id 4 --address 127.0.0.1:9195\n\n\
        --address is the new node's cluster address (its --cluster-listen). New topics are\n\
        placed on it at once; move existing partitions with `tidemark topic reassign`.\n\
        JSON: {\"id\":4,\"address\":\"..\",\"role\":\"voter\"|\"learner\"}")]
    AddNode(crate::reassign::AddNodeArgs),
    /// Remove (decommission) a node: nothing new is placed on it, every partition it holds
    /// moves to the other nodes while serving, then it leaves the cluster.
    #[command(after_help = "Examples:\n  \
        tidemark cluster remove-node 3 --wait\n  \
        tidemark cluster remove-node 3          # start it; run again to follow it\n\n\
        Refused when fewer nodes than a topic's replication factor would remain. Safe to run\n\
        again after an interruption: it carries on where it was. A voter's place in the\n\
        metadata group goes to a learner, if there is one. Stop the node's process afterwards.\n\
        JSON: {\"id\":3,\"removed\":true,\"partitions_moving\":0}")]
    RemoveNode(crate::reassign::RemoveNodeArgs),
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Status(a) => status(a).await,
        ClusterCommand::AddNode(a) => crate::reassign::add_node(a).await,
        ClusterCommand::RemoveNode(a) => crate::reassign::remove_node(a).await,
    }
}

/// Partitions over every topic: how many, how many lack a leader or an in-sync replica,
/// and how many each node leads.
#[derive(Default, Serialize)]
struct PartitionHealth {
    total: usize,
    leaderless: usize,
    under_replicated: usize,
    #[serde(skip)]
    leaders: std::collections::BTreeMap<u64, usize>,
}

async fn partition_health(admin: &tidemark_client::Admin) -> anyhow::Result<PartitionHealth> {
    let mut h = PartitionHealth::default();
    for topic in admin.list_topics().await.context("could not list the topics")? {
        // A topic deleted meanwhile is simply not counted.
        let Ok(d) = admin.describe_topic(&topic).await else { continue };
        for p in &d.partitions {
            h.total += 1;
            match p.leader {
                Some(l) => *h.leaders.entry(l).or_default() += 1,
                None => h.leaderless += 1,
            }
            h.under_replicated += usize::from(p.under_replicated());
        }
    }
    Ok(h)
}

async fn status(a: StatusArgs) -> anyhow::Result<()> {
    let admin = a.client.client()?.admin();
    let status = admin.cluster_status().await.context("could not read the cluster status")?;
    let health = partition_health(&admin).await?;
    match a.format {
        Format::Json => {
            let mut json = StatusJson::from(&status);
            for n in &mut json.nodes {
                n.leaders = health.leaders.get(&n.id).copied().unwrap_or(0);
            }
            json.partitions = Some(&health);
            print_json(&json)
        }
        Format::Text => {
            let rows: Vec<Vec<String>> = status
                .nodes
                .iter()
                .map(|n| {
                    let role = match (status.metadata_leader == Some(n.id), n.voter) {
                        (true, _) => "metadata leader",
                        (false, true) => "voter",
                        (false, false) => "learner",
                    };
                    let alive = if n.alive { "yes" } else { "NO" };
                    let leads = health.leaders.get(&n.id).copied().unwrap_or(0).to_string();
                    let address = if n.address.is_empty() { "(not yet known)" } else { n.address.as_str() };
                    let row = [&n.id.to_string(), address, &n.cluster_address, alive, &leads, role];
                    row.map(str::to_string).to_vec()
                })
                .collect();
            print_table(&["NODE", "ADDRESS", "CLUSTER ADDRESS", "ALIVE", "LEADS", "ROLE"], &rows)?;
            println!(
                "{} partition(s): {} without a leader, {} under-replicated.",
                health.total, health.leaderless, health.under_replicated
            );
            if status.metadata_leader.is_none() {
                println!(
                    "No metadata leader right now: the cluster is electing one (or lacks a majority of live nodes)."
                );
            }
            Ok(())
        }
    }
}

/// The `cluster status --format json` shape (a stable contract: add, never rename).
#[derive(Serialize)]
struct StatusJson<'a> {
    nodes: Vec<NodeJson<'a>>,
    /// 0 while there is none.
    metadata_leader: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    partitions: Option<&'a PartitionHealth>,
}

#[derive(Serialize)]
struct NodeJson<'a> {
    id: u64,
    /// For clients; empty until the node has published it.
    address: &'a str,
    /// Between nodes.
    cluster_address: &'a str,
    alive: bool,
    /// Votes on metadata (else a learner).
    voter: bool,
    /// Partitions this node leads.
    leaders: usize,
}

impl<'a> From<&'a ClusterStatus> for StatusJson<'a> {
    fn from(s: &'a ClusterStatus) -> Self {
        StatusJson {
            nodes: s
                .nodes
                .iter()
                .map(|n| NodeJson {
                    id: n.id,
                    address: &n.address,
                    cluster_address: &n.cluster_address,
                    alive: n.alive,
                    voter: n.voter,
                    leaders: 0,
                })
                .collect(),
            metadata_leader: s.metadata_leader.unwrap_or(0),
            partitions: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_client::NodeStatus;

    #[test]
    fn status_json_has_the_contract_shape() {
        let s = ClusterStatus {
            nodes: vec![NodeStatus {
                id: 1,
                address: "127.0.0.1:9092".into(),
                alive: true,
                cluster_address: "127.0.0.1:9192".into(),
                voter: true,
            }],
            metadata_leader: Some(1),
        };
        let mut json = StatusJson::from(&s);
        json.nodes[0].leaders = 2;
        let health = PartitionHealth { total: 3, leaderless: 1, under_replicated: 1, ..Default::default() };
        json.partitions = Some(&health);
        assert_eq!(
            serde_json::to_string(&json).unwrap(),
            r#"{"nodes":[{"id":1,"address":"127.0.0.1:9092","cluster_address":"127.0.0.1:9192","alive":true,"voter":true,"leaders":2}],"metadata_leader":1,"partitions":{"total":3,"leaderless":1,"under_replicated":1}}"#
        );
    }
}
