//! `tidemark`: run nodes (`serve`, `dev`) and use a cluster (`topic`, `produce`,
//! `consume`, `cluster`). Client commands are thin layers over the Rust SDK, so what the
//! CLI can do, a program can do the same way.
//!
//! Output discipline: data goes to stdout (tables, JSON, records), everything else —
//! logs, progress, errors — to stderr, so pipes see only data.

mod acks;
mod acl;
mod bench;
mod cluster;
mod common;
mod consume;
mod consume_group;
mod dev;
mod group;
mod produce;
mod quota;
mod reassign;
mod serve;
mod topic;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "tidemark",
    version,
    about = "Tidemark: a replicated, partitioned event log",
    after_help = "Start here:\n  \
        tidemark dev                                        # a local 3-node cluster on 127.0.0.1:9092-9094\n  \
        tidemark topic create orders --partitions 3         # in another terminal\n  \
        echo hello | tidemark produce orders\n  \
        tidemark consume orders --from-beginning\n\n\
        Client commands find the cluster through --bootstrap HOST:PORT (or TIDEMARK_BOOTSTRAP),\n\
        default 127.0.0.1:9092. Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) for more."
)]
struct Cli {
    /// How log lines on stderr look: text for people, or json (one object per line, for
    /// log collectors). Also TIDEMARK_LOG_FORMAT.
    #[arg(long, global = true, value_enum, default_value_t, env = "TIDEMARK_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one node of a cluster.
    Serve(Box<serve::ServeArgs>),
    /// Start a local cluster in one command (for development and trying things out).
    #[command(after_help = "Examples:\n  \
        tidemark dev                  # 3 nodes, bootstrap 127.0.0.1:9092, Ctrl-C stops them\n  \
        tidemark dev --nodes 1 --data-dir ./dev-data")]
    Dev(dev::DevArgs),
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Write records read from standard input, one per line.
    Produce(produce::ProduceArgs),
    /// Print records of a topic.
    Consume(consume::ConsumeArgs),
    /// Create, list, describe, reset and delete consumer groups.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Inspect the cluster.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Grant and revoke access (ACLs, enforced by nodes started with --require-auth).
    #[command(subcommand)]
    Acl(acl::AclCommand),
    /// Set and list quotas: per-principal rates, enforced by slowing clients down.
    #[command(subcommand)]
    Quota(quota::QuotaCommand),
    /// Load generators that measure the cluster (bounded in time; they stop by themselves).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.command, cli.log_format);
    let result = match cli.command {
        Command::Serve(a) => serve::run(*a).await,
        Command::Dev(a) => dev::run(a).await,
        Command::Topic(c) => topic::run(c).await,
        Command::Produce(a) => produce::run(a).await,
        Command::Consume(a) => consume::run(a).await,
        Command::Group(c) => group::run(c).await,
        Command::Cluster(c) => cluster::run(c).await,
        Command::Acl(c) => acl::run(c).await,
        Command::Quota(c) => quota::run(c).await,
        Command::Bench(c) => bench::run(c).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`... | head`) is how a reader says "enough": not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; RUST_LOG overrides. Nodes say what they do (info); client commands
/// stay quiet unless something is wrong (warn), so their stdout/stderr stay readable.
fn init_logging(command: &Command, format: LogFormat) {
    let default = match command {
        // openraft warns per group on every retry to a peer that is down; the transport
        // says it once per outage instead (RUST_LOG=info,openraft=warn shows them all).
        Command::Serve(_) | Command::Dev(_) => "info,openraft=error",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => logs.json().with_current_span(false).try_init(),
    };
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_contract_flags() {
        let cli = Cli::try_parse_from([
            "tidemark",
            "consume",
            "orders",
            "--from-beginning",
            "--partition",
            "1",
            "--max-messages",
            "5",
            "--timeout-ms",
            "100",
            "--format",
            "json",
            "--bootstrap",
            "a:1,b:2",
        ])
        .unwrap();
        let Command::Consume(c) = cli.command else { panic!("consume") };
        assert_eq!(c.client.bootstrap, vec!["a:1", "b:2"]);
        assert!(c.from_beginning && c.max_messages == Some(5) && c.format == common::Format::Json);
        assert!(Cli::try_parse_from(["tidemark", "consume", "t", "--from-beginning", "--offset", "3"]).is_err());
        assert!(Cli::try_parse_from(["tidemark", "consume", "t", "--group", "g", "--partition", "1"]).is_err());
        assert!(Cli::try_parse_from(["tidemark", "group", "reset-offsets", "g"]).is_err(), "a target is required");
        let two = ["tidemark", "group", "reset-offsets", "g", "--to-earliest", "--to-offset", "1"];
        assert!(Cli::try_parse_from(two).is_err(), "one target only");
        assert!(Cli::try_parse_from(["tidemark", "group", "create", "g"]).is_err(), "--topic is required");
        let cli = Cli::try_parse_from([
            "tidemark",
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ])
        .unwrap();
        let Command::Topic(topic::TopicCommand::Create(c)) = cli.command else { panic!("create") };
        assert_eq!((c.partitions, c.replication_factor), (3, Some(3)));
        for args in [
            &["tidemark", "topic", "list"][..],
            &["tidemark", "topic", "describe", "t", "--format", "json"],
            &["tidemark", "topic", "delete", "t"],
            &["tidemark", "produce", "t", "--key", "k", "--partition", "0", "--format", "json"],
            &["tidemark", "cluster", "status", "--format", "json"],
            &["tidemark", "consume", "t", "--group", "g", "--ack", "none", "--max-messages", "3", "--format", "json"],
            &["tidemark", "consume", "t", "--group", "g", "--shared", "--ack", "auto", "--timeout-ms", "100"],
            &["tidemark", "group", "create", "g", "--topic", "t", "--mode", "partitioned"],
            &[
                "tidemark",
                "group",
                "create",
                "g",
                "--topic",
                "t",
                "--mode",
                "shared",
                "--lock-ms",
                "5",
                "--max-attempts",
                "3",
                "--dead-letter-topic",
                "dlq",
                "--ttl-ms",
                "9",
                "--expired",
                "drop",
                "--max-in-flight",
                "10",
            ],
            &["tidemark", "group", "list"],
            &["tidemark", "group", "describe", "g", "--format", "json"],
            &["tidemark", "group", "reset-offsets", "g", "--to-earliest"],
            &["tidemark", "group", "reset-offsets", "g", "--to-latest"],
            &["tidemark", "group", "reset-offsets", "g", "--to-offset", "5"],
            &["tidemark", "group", "reset-offsets", "g", "--to-timestamp", "1700000000000"],
            &["tidemark", "group", "delete", "g"],
            &["tidemark", "dev", "--nodes", "3"],
            &["tidemark", "bench", "produce", "--topic", "t", "--rate", "2000", "--linger-ms", "0", "--no-idempotent"],
            &["tidemark", "bench", "consume", "--topic", "t", "--consumers", "4", "--prefill", "1000"],
            &["tidemark", "bench", "e2e", "--topic", "t", "--rate", "2000", "--duration", "5", "--record-size", "64"],
            &["tidemark", "serve", "--id", "1", "--listen", "127.0.0.1:9092", "--data-dir", "d", "--peers", "1=a:1"],
        ] {
            Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
    }
}
