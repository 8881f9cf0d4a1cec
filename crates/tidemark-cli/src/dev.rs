//! `tidemark dev`: a local cluster in one command, every node in this process on
//! 127.0.0.1, each with its own sled directory. Ctrl-C stops them all.

use std::path::PathBuf;

use tidemark_server::tls::ClientAuth;
use tidemark_server::NodeConfig;

use tidemark_server::dev_certs::{DevTls, CLIENT_NAME};

/// Start a local cluster of N nodes on 127.0.0.1 (Ctrl-C stops it).
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  tidemark dev                       # three nodes on 127.0.0.1:9092-9094 for clients and
                                     # 127.0.0.1:9192-9194 between nodes, fresh temp data
  tidemark dev --data-dir ./dev-data # keep the data across runs
  tidemark dev --nodes 1 --base-port 7000
  tidemark dev --tls                 # mutual TLS with a throwaway CA; prints the client settings

Then, in another terminal:
  tidemark topic create orders --partitions 3 --replication-factor 3
  tidemark cluster status")]
pub struct DevArgs {
    /// How many nodes (1 to 9).
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Where the nodes keep their data (default: a fresh temporary directory, removed on exit).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// First port; node i serves clients on base-port + i - 1, and the other nodes on
    /// base-port + 100 + i - 1.
    #[arg(long, default_value_t = 9092)]
    pub base_port: u16,
    /// Mutual TLS on every listener and --require-auth, with a throwaway CA and
    /// certificates made in DATA_DIR/tls (kept with a kept --data-dir). Clients need the
    /// printed TIDEMARK_TLS_* settings: their certificate is User:admin, a superuser.
    #[arg(long)]
    pub tls: bool,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    anyhow::ensure!((1..=9).contains(&args.nodes), "--nodes must be between 1 and 9");
    let (root, temporary) = match &args.data_dir {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("tidemark-dev-{}", std::process::id())), true),
    };
    anyhow::ensure!(args.base_port as u64 + 100 + args.nodes <= 65_536, "--base-port is too high");
    let addr = |i: u64| format!("127.0.0.1:{}", args.base_port as u64 + i - 1);
    let cluster_addr = |i: u64| format!("127.0.0.1:{}", args.base_port as u64 + 100 + i - 1);
    let peers: Vec<String> = (1..=args.nodes).map(|i| format!("{i}={}", cluster_addr(i))).collect();
    let tls =
        args.tls.then(|| DevTls::ensure(&root.join("tls"), args.nodes)).transpose().map_err(anyhow::Error::msg)?;
    let path = |p: PathBuf| p.display().to_string();
    let configs = (1..=args.nodes).map(|i| NodeConfig {
        id: i,
        listen: addr(i),
        cluster_listen: if args.nodes > 1 { cluster_addr(i) } else { String::new() },
        data_dir: root.join(format!("node-{i}")),
        peers: peers.join(","),
        tls_cert: tls.as_ref().map(|t| path(t.node_cert(i))).unwrap_or_default(),
        tls_key: tls.as_ref().map(|t| path(t.node_key(i))).unwrap_or_default(),
        tls_ca: tls.as_ref().map(|t| path(t.ca())).unwrap_or_default(),
        tls_client_auth: if tls.is_some() { ClientAuth::Required } else { ClientAuth::None },
        require_auth: tls.is_some(),
        superusers: if tls.is_some() { vec![format!("User:{CLIENT_NAME}")] } else { Vec::new() },
        ..NodeConfig::default()
    });
    // Together: a new cluster forms once every node answers on its cluster address.
    let nodes = futures::future::try_join_all(configs.map(crate::serve::start_node)).await?;
    let bootstrap: Vec<String> = (1..=args.nodes).map(addr).collect();
    // "Up" means every node has caught up with the cluster's metadata (after a restart on
    // old data that takes a moment), so a script's first command gets a true answer.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while nodes.iter().any(|n| n.broker.ensure_ready().is_err()) {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the nodes did not agree on a metadata leader within 30 s; see the log above"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    println!("tidemark dev cluster of {} node(s) is up; data in {}", args.nodes, root.display());
    println!("bootstrap: {}", bootstrap.join(","));
    if let Some(tls) = &tls {
        println!(
            "mutual TLS and --require-auth: clients need a certificate from the dev CA; this one is \
             User:{CLIENT_NAME}, a superuser (grant others access with `tidemark acl add`). In your shell:"
        );
        println!(
            "  export TIDEMARK_TLS_CA={} TIDEMARK_TLS_CERT={} TIDEMARK_TLS_KEY={}",
            tls.ca().display(),
            tls.client_cert().display(),
            tls.client_key().display()
        );
    }
    println!("try: tidemark topic create demo --partitions 3 --replication-factor {}", args.nodes.min(3));
    println!("press Ctrl-C to stop");
    for node in nodes {
        if let Err(e) = node.wait().await {
            eprintln!("{e}");
        }
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&root);
    }
    println!("stopped");
    Ok(())
}
