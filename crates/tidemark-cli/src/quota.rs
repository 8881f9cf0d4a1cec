//! `tidemark quota set|remove|list`: rates per principal, enforced by slowing clients
//! down (never by failing them).

use anyhow::Context;
use serde::Serialize;
use tidemark_client::Quota;

use crate::common::{print_json, print_table, ClientArgs, Format};

#[derive(Debug, clap::Subcommand)]
pub enum QuotaCommand {
    /// Set a principal's quota (replacing its previous one).
    #[command(after_help = "Examples:\n  \
        tidemark quota set --principal User:bob --produce-bytes-per-sec 1048576\n  \
        tidemark quota set --principal 'User:*' --fetch-bytes-per-sec 10485760 --requests-per-sec 1000\n\n\
        Rates are per node, per second; a limit left out (or 0) is no limit. User:* applies to\n\
        every principal without a quota of its own. Without --require-auth every client is\n\
        User:ANONYMOUS (or User:<certificate name> with a client certificate). A client over\n\
        its quota gets its answers late (by as much as it is over, up to 5 s each), so its\n\
        rate drops to the quota without errors; other clients are not slowed.")]
    Set(SetArgs),
    /// Remove a principal's quota.
    Remove(RemoveArgs),
    /// List every quota.
    #[command(after_help = "JSON (one object per line): {\"principal\":\"User:bob\",\
        \"produce_bytes_per_sec\":1048576,\"fetch_bytes_per_sec\":0,\"requests_per_sec\":0}")]
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// User:<name>, or User:* for the default.
    #[arg(long)]
    pub principal: String,
    #[arg(long, default_value_t = 0)]
    pub produce_bytes_per_sec: u64,
    #[arg(long, default_value_t = 0)]
    pub fetch_bytes_per_sec: u64,
    #[arg(long, default_value_t = 0)]
    pub requests_per_sec: u64,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    #[arg(long)]
    pub principal: String,
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

#[derive(Serialize)]
struct Row<'a> {
    principal: &'a str,
    produce_bytes_per_sec: u64,
    fetch_bytes_per_sec: u64,
    requests_per_sec: u64,
}

pub async fn run(cmd: QuotaCommand) -> anyhow::Result<()> {
    match cmd {
        QuotaCommand::Set(a) => {
            let quota = Quota {
                principal: a.principal.clone(),
                produce_bytes_per_sec: a.produce_bytes_per_sec,
                fetch_bytes_per_sec: a.fetch_bytes_per_sec,
                requests_per_sec: a.requests_per_sec,
            };
            anyhow::ensure!(
                quota.produce_bytes_per_sec + quota.fetch_bytes_per_sec + quota.requests_per_sec > 0,
                "give at least one limit (--produce-bytes-per-sec, --fetch-bytes-per-sec, --requests-per-sec); \
                 `tidemark quota remove` removes a quota"
            );
            a.client.client()?.admin().set_quota(&quota).await.context("could not set the quota")?;
            eprintln!("Quota set for {}.", a.principal);
        }
        QuotaCommand::Remove(a) => {
            let admin = a.client.client()?.admin();
            let removed = admin.remove_quota(&a.principal).await.context("could not remove the quota")?;
            anyhow::ensure!(removed, "{} has no quota (see `tidemark quota list`)", a.principal);
            eprintln!("Quota removed for {}.", a.principal);
        }
        QuotaCommand::List(a) => {
            let quotas = a.client.client()?.admin().list_quotas().await.context("could not list the quotas")?;
            let rows: Vec<Row> = quotas
                .iter()
                .map(|q| Row {
                    principal: &q.principal,
                    produce_bytes_per_sec: q.produce_bytes_per_sec,
                    fetch_bytes_per_sec: q.fetch_bytes_per_sec,
                    requests_per_sec: q.requests_per_sec,
                })
                .collect();
            match a.format {
                Format::Json => rows.iter().try_for_each(print_json)?,
                Format::Text if rows.is_empty() => eprintln!("No quotas."),
                Format::Text => {
                    let limit = |n: u64| if n == 0 { "-".to_string() } else { n.to_string() };
                    let cells: Vec<Vec<String>> = rows
                        .iter()
                        .map(|r| {
                            vec![
                                r.principal.to_string(),
                                limit(r.produce_bytes_per_sec),
                                limit(r.fetch_bytes_per_sec),
                                limit(r.requests_per_sec),
                            ]
                        })
                        .collect();
                    print_table(&["PRINCIPAL", "PRODUCE B/S", "FETCH B/S", "REQUESTS/S"], &cells)?;
                }
            }
        }
    }
    Ok(())
}
