//! `tidemark cluster status`.

use anyhow::Context;
use serde::Serialize;
use tidemark_client::ClusterStatus;

use crate::common::{print_json, print_table, ClientArgs, Format};

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Show the cluster's nodes, which are alive, and which leads the metadata group.
    #[command(after_help = "Examples:\n  \
        tidemark cluster status\n  \
        tidemark cluster status --bootstrap 10.0.0.1:9092 --format json\n\n\
        JSON: {\"nodes\":[{\"id\":1,\"address\":\"..\",\"alive\":true}],\"metadata_leader\":1}\n\
        A metadata_leader of 0 means the cluster is electing one right now.")]
    Status(StatusArgs),
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
    }
}

async fn status(a: StatusArgs) -> anyhow::Result<()> {
    let status = a.client.client()?.admin().cluster_status().await.context("could not read the cluster status")?;
    match a.format {
        Format::Json => print_json(&StatusJson::from(&status)),
        Format::Text => {
            let rows: Vec<Vec<String>> = status
                .nodes
                .iter()
                .map(|n| {
                    let role = if status.metadata_leader == Some(n.id) { "metadata leader" } else { "" };
                    let alive = if n.alive { "yes" } else { "NO" };
                    vec![n.id.to_string(), n.address.clone(), alive.to_string(), role.to_string()]
                })
                .collect();
            print_table(&["NODE", "ADDRESS", "ALIVE", "ROLE"], &rows)?;
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
}

#[derive(Serialize)]
struct NodeJson<'a> {
    id: u64,
    address: &'a str,
    alive: bool,
}

impl<'a> From<&'a ClusterStatus> for StatusJson<'a> {
    fn from(s: &'a ClusterStatus) -> Self {
        StatusJson {
            nodes: s.nodes.iter().map(|n| NodeJson { id: n.id, address: &n.address, alive: n.alive }).collect(),
            metadata_leader: s.metadata_leader.unwrap_or(0),
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
            nodes: vec![NodeStatus { id: 1, address: "127.0.0.1:9092".into(), alive: true }],
            metadata_leader: Some(1),
        };
        assert_eq!(
            serde_json::to_string(&StatusJson::from(&s)).unwrap(),
            r#"{"nodes":[{"id":1,"address":"127.0.0.1:9092","alive":true}],"metadata_leader":1}"#
        );
    }
}
