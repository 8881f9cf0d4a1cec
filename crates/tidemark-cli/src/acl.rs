//! `tidemark acl add|remove|list`: access control lists, enforced by nodes started with
//! `--require-auth`.

use anyhow::Context;
use serde::Serialize;
use tidemark_client::{Acl, AclOperation, AclResource};

use crate::common::{print_json, print_table, ClientArgs, Format};

#[derive(Debug, clap::Subcommand)]
pub enum AclCommand {
    /// Allow (or, with --deny, forbid) a principal an operation on a resource.
    #[command(after_help = "Examples:\n  \
        tidemark acl add --principal User:bob --topic orders --operation write\n  \
        tidemark acl add --principal User:bob --topic orders- --prefix --operation read\n  \
        tidemark acl add --principal User:bob --group billing --operation read\n  \
        tidemark acl add --principal 'User:*' --topic secrets --operation all --deny\n  \
        tidemark acl add --principal User:ops --cluster --operation alter\n\n\
        A principal is User:<common name of the client's TLS certificate>; User:* is everyone\n\
        authenticated. A deny wins over any allow; without a matching allow, a request is\n\
        refused with PERMISSION_DENIED. Read, write, alter and delete include describe.\n\
        Consuming in a group needs read on the group and on its topics; a named producer\n\
        needs write on --producer NAME. ACLs apply on nodes started with --require-auth;\n\
        superusers (serve --superuser) and the nodes themselves need none.")]
    Add(AclArgs),
    /// Remove a binding (the same flags as it was added with).
    #[command(after_help = "Example:\n  tidemark acl remove --principal User:bob --topic orders --operation write")]
    Remove(AclArgs),
    /// List every binding.
    #[command(after_help = "JSON (one object per line): {\"principal\":\"User:bob\",\"resource\":\"topic\",\
        \"name\":\"orders\",\"prefix\":false,\"operation\":\"write\",\"permission\":\"allow\"}")]
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("resource").required(true))]
pub struct AclArgs {
    /// Who: User:<name>, or User:* for every authenticated principal.
    #[arg(long)]
    pub principal: String,
    /// A topic (or, with --prefix, every topic whose name starts with it; * for all).
    #[arg(long, group = "resource")]
    pub topic: Option<String>,
    /// A consumer group (or a group-name prefix with --prefix; * for all).
    #[arg(long, group = "resource")]
    pub group: Option<String>,
    /// A named idempotent producer (or a prefix with --prefix; * for all).
    #[arg(long, group = "resource")]
    pub producer: Option<String>,
    /// The cluster: its status (describe), membership and ACLs (alter).
    #[arg(long, group = "resource")]
    pub cluster: bool,
    /// The name is a prefix.
    #[arg(long)]
    pub prefix: bool,
    #[arg(long, value_enum)]
    pub operation: OperationArg,
    /// Forbid instead of allow.
    #[arg(long)]
    pub deny: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OperationArg {
    Describe,
    Read,
    Write,
    Create,
    Alter,
    Delete,
    All,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl AclArgs {
    fn acl(&self) -> Acl {
        let (resource, name) = match (&self.topic, &self.group, &self.producer) {
            (Some(t), _, _) => (AclResource::Topic, t.clone()),
            (_, Some(g), _) => (AclResource::Group, g.clone()),
            (_, _, Some(p)) => (AclResource::Producer, p.clone()),
            _ => (AclResource::Cluster, "cluster".to_string()),
        };
        let operation = match self.operation {
            OperationArg::Describe => AclOperation::Describe,
            OperationArg::Read => AclOperation::Read,
            OperationArg::Write => AclOperation::Write,
            OperationArg::Create => AclOperation::Create,
            OperationArg::Alter => AclOperation::Alter,
            OperationArg::Delete => AclOperation::Delete,
            OperationArg::All => AclOperation::All,
        };
        Acl { principal: self.principal.clone(), resource, name, prefix: self.prefix, operation, deny: self.deny }
    }
}

#[derive(Serialize)]
struct Row {
    principal: String,
    resource: String,
    name: String,
    prefix: bool,
    operation: String,
    permission: &'static str,
}

fn row(a: &Acl) -> Row {
    Row {
        principal: a.principal.clone(),
        resource: format!("{:?}", a.resource).to_lowercase(),
        name: a.name.clone(),
        prefix: a.prefix,
        operation: format!("{:?}", a.operation).to_lowercase(),
        permission: if a.deny { "deny" } else { "allow" },
    }
}

pub async fn run(cmd: AclCommand) -> anyhow::Result<()> {
    match cmd {
        AclCommand::Add(a) => {
            let acl = a.acl();
            a.client.client()?.admin().add_acl(&acl).await.context("could not add the ACL")?;
            eprintln!("Added: {}", sentence(&acl));
        }
        AclCommand::Remove(a) => {
            let acl = a.acl();
            let removed = a.client.client()?.admin().remove_acl(&acl).await.context("could not remove the ACL")?;
            anyhow::ensure!(removed, "no such ACL: {} (see `tidemark acl list`)", sentence(&acl));
            eprintln!("Removed: {}", sentence(&acl));
        }
        AclCommand::List(a) => {
            let acls = a.client.client()?.admin().list_acls().await.context("could not list the ACLs")?;
            let rows: Vec<Row> = acls.iter().map(row).collect();
            match a.format {
                Format::Json => rows.iter().try_for_each(print_json)?,
                Format::Text if rows.is_empty() => eprintln!("No ACLs."),
                Format::Text => {
                    let cells = rows
                        .iter()
                        .map(|r| {
                            let name = if r.prefix { format!("{}*", r.name) } else { r.name.clone() };
                            vec![
                                r.permission.into(),
                                r.principal.clone(),
                                r.operation.clone(),
                                r.resource.clone(),
                                name,
                            ]
                        })
                        .collect::<Vec<_>>();
                    print_table(&["PERMISSION", "PRINCIPAL", "OPERATION", "RESOURCE", "NAME"], &cells)?;
                }
            }
        }
    }
    Ok(())
}

fn sentence(a: &Acl) -> String {
    let r = row(a);
    let name = if r.prefix { format!("names starting with {:?}", r.name) } else { format!("{:?}", r.name) };
    format!("{} {} {} on {} {}", r.permission, r.principal, r.operation, r.resource, name)
}
