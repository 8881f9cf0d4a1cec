//! `tidemark serve`: runs one node on sled storage until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tidemark_server::{Node, NodeConfig};

/// Run one Tidemark node.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  # A three-node cluster (run each line in its own terminal or host). Clients use
  # --listen; nodes replicate over --cluster-listen, and --peers lists those:
  tidemark serve --id 1 --listen 127.0.0.1:9092 --cluster-listen 127.0.0.1:9192 \\
      --data-dir /var/lib/tidemark/1 --peers 1=127.0.0.1:9192,2=127.0.0.1:9193,3=127.0.0.1:9194
  tidemark serve --id 2 --listen 127.0.0.1:9093 --cluster-listen 127.0.0.1:9193 \\
      --data-dir /var/lib/tidemark/2 --peers ...
  # A fourth node joining that cluster, then added from any host:
  tidemark serve --id 4 --listen 127.0.0.1:9095 --cluster-listen 127.0.0.1:9195 \\
      --data-dir /var/lib/tidemark/4 --join 127.0.0.1:9192
  tidemark cluster add-node --id 4 --address 127.0.0.1:9195
  # From a file, with settings overridden by the environment (listening on every
  # interface, clients are told the name they can reach):
  TIDEMARK_LISTEN=0.0.0.0:9092 TIDEMARK_ADVERTISE=node1.example:9092 tidemark serve --config node.toml

The first start of fresh nodes forms the cluster, once all of them are up (each waits,
saying for whom); restarting a node on its data dir rejoins it, and a node started on
an empty data dir rejoins the cluster its peers belong to. Settings: --config FILE, then TIDEMARK_* variables, then flags.")]
pub struct ServeArgs {
    /// This node's id (1, 2, 3, ...), unique in the cluster.
    #[arg(long, env = "TIDEMARK_ID")]
    pub id: Option<u64>,
    /// Address to listen on for clients, HOST:PORT (an IP host).
    #[arg(long, env = "TIDEMARK_LISTEN")]
    pub listen: Option<String>,
    /// The client address this node tells clients to use, HOST:PORT (a name allowed).
    /// Default: --listen. Set it behind NAT, in containers, or with a 0.0.0.0 listener.
    #[arg(long, env = "TIDEMARK_ADVERTISE")]
    pub advertise: Option<String>,
    /// Address to listen on for the other nodes (Raft replication, never served to
    /// clients), HOST:PORT. Required with --peers.
    #[arg(long, env = "TIDEMARK_CLUSTER_LISTEN")]
    pub cluster_listen: Option<String>,
    /// Join a running cluster through the member whose cluster address this is: the node
    /// learns the cluster's id from it and waits, serving nothing, until
    /// `tidemark cluster add-node --id N --address CLUSTER_LISTEN` adds it. Not with --peers.
    #[arg(long, env = "TIDEMARK_JOIN")]
    pub join: Option<String>,
    /// The cluster's id. Default: learned from the peers, or drawn when a new cluster
    /// forms; kept in the data dir. Set the same value on every node to form a new cluster
    /// without waiting for all of them; a node whose data belongs to another cluster then
    /// refuses to start.
    #[arg(long, env = "TIDEMARK_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// Directory for this node's data (created if missing).
    #[arg(long, env = "TIDEMARK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Every voter of the cluster, this node included, by cluster address (their
    /// --cluster-listen): 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT. Leave out for a single node.
    #[arg(long, env = "TIDEMARK_PEERS")]
    pub peers: Option<String>,
    /// How long a partition remembers an idle idempotent producer, in ms (default one
    /// day). A producer idle for longer must register again.
    #[arg(long, env = "TIDEMARK_PRODUCER_EXPIRY_MS")]
    pub producer_expiry_ms: Option<u64>,
    /// How often partition leaders enforce retention and every group snapshots and purges
    /// its log, in ms (default 5000; 100 to 30000). Data past retention is gone within
    /// about this long.
    #[arg(long, env = "TIDEMARK_RETENTION_CHECK_MS")]
    pub retention_check_ms: Option<u64>,
    /// Checkpoint each state machine after this many applied entries (default 8192): a
    /// restart re-applies at most this many per group.
    #[arg(long, env = "TIDEMARK_CHECKPOINT_ENTRIES")]
    pub checkpoint_entries: Option<u64>,
    /// Size at which record-log segment files roll, in bytes (default 64 MiB; 1 MiB to
    /// 1 GiB). Disk use runs up to a few segments above what retention keeps.
    #[arg(long, env = "TIDEMARK_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    /// Raft heartbeat interval, in ms (default 100).
    #[arg(long, env = "TIDEMARK_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Shortest election timeout, in ms (default 500; at least three heartbeats). A
    /// leader's failure is noticed after about this long.
    #[arg(long, env = "TIDEMARK_ELECTION_TIMEOUT_MIN_MS")]
    pub election_timeout_min_ms: Option<u64>,
    /// Longest election timeout, in ms (default 1000; above the shortest).
    #[arg(long, env = "TIDEMARK_ELECTION_TIMEOUT_MAX_MS")]
    pub election_timeout_max_ms: Option<u64>,
    /// Largest batch a producer may send, in bytes (default 4 MiB; at most 64 MiB).
    #[arg(long, env = "TIDEMARK_MAX_BATCH_BYTES")]
    pub max_batch_bytes: Option<usize>,
    /// Largest single record, in bytes (default 1 MiB; at most the batch limit).
    #[arg(long, env = "TIDEMARK_MAX_RECORD_BYTES")]
    pub max_record_bytes: Option<usize>,
    /// HOST:PORT for HTTP: GET /health (the process and its storage work), GET /ready
    /// (caught up with the cluster and serving) and GET /metrics (Prometheus). Off by
    /// default.
    #[arg(long, env = "TIDEMARK_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Hand partition leaderships back to their preferred replicas after a node returns
    /// (default true; false keeps leaders where elections put them).
    #[arg(long, env = "TIDEMARK_LEADER_BALANCE")]
    pub leader_balance: Option<bool>,
    /// Replace a node dead for this many ms (at least 10000): its partitions get new
    /// replicas on the other nodes and it leaves the cluster (like `cluster remove-node`).
    /// Default 0: never, as a slow reboot would otherwise be replaced needlessly.
    #[arg(long, env = "TIDEMARK_REPLACE_DEAD_AFTER_MS")]
    pub replace_dead_after_ms: Option<u64>,
    /// Most topics the cluster may hold (default 1000). Set it alike on every node: the
    /// metadata leader checks it.
    #[arg(long, env = "TIDEMARK_MAX_TOPICS")]
    pub max_topics: Option<u32>,
    /// Most partitions over all topics (default 500). Each is a Raft group with its own
    /// heartbeats on every replica; raise it on machines with more cores. Set it alike on
    /// every node.
    #[arg(long, env = "TIDEMARK_MAX_PARTITIONS")]
    pub max_partitions: Option<u32>,
    /// PEM certificate chain this node presents to clients and to the other nodes (with
    /// both the serverAuth and clientAuth uses; its names must match --advertise and
    /// --cluster-listen hosts). Turns TLS on for both listeners. `tidemark dev --tls`
    /// shows how such certificates look.
    #[arg(long, env = "TIDEMARK_TLS_CERT")]
    pub tls_cert: Option<String>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "TIDEMARK_TLS_KEY")]
    pub tls_key: Option<String>,
    /// PEM CA certificate(s) that signed the node certificates, and the client
    /// certificates when --tls-client-auth asks for them. Required with TLS in a cluster:
    /// nodes accept each other only with certificates from it. The three files are re-read
    /// every 5 s, so certificates rotate without a restart.
    #[arg(long, env = "TIDEMARK_TLS_CA")]
    pub tls_ca: Option<String>,
    /// Whether clients must show a certificate signed by --tls-ca: none (default),
    /// optional or required (mutual TLS).
    #[arg(long, env = "TIDEMARK_TLS_CLIENT_AUTH", value_name = "none|optional|required")]
    pub tls_client_auth: Option<tidemark_server::tls::ClientAuth>,
    /// Refuse clients without a TLS client certificate and enforce ACLs (`tidemark acl`):
    /// a client is User:<common name of its certificate>. Needs --tls-client-auth
    /// required (or optional). Without it the node runs open and says so in its log.
    #[arg(long, env = "TIDEMARK_REQUIRE_AUTH")]
    pub require_auth: bool,
    /// A principal allowed everything under --require-auth, e.g. User:admin (repeat the
    /// flag, or comma-separate in TIDEMARK_SUPERUSERS). Set it alike on every node.
    #[arg(long = "superuser", env = "TIDEMARK_SUPERUSERS", value_delimiter = ',')]
    pub superusers: Vec<String>,
    /// Most connections open at once on each listener (default 10000); a connection over
    /// the limit is closed at once, and the node logs it.
    #[arg(long, env = "TIDEMARK_MAX_CONNECTIONS")]
    pub max_connections: Option<u32>,
    /// Most requests one client connection may have in progress (default 1000); more wait
    /// their turn.
    #[arg(long, env = "TIDEMARK_MAX_REQUESTS_PER_CONNECTION")]
    pub max_requests_per_connection: Option<u32>,
    /// A TOML config file (keys as in deploy/node.example.toml).
    #[arg(long, env = "TIDEMARK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (file, then environment, then flags) as TOML
    /// and exit without starting the node.
    #[arg(long)]
    pub print_config: bool,
}

impl ServeArgs {
    /// The effective configuration: file, then environment and flags (clap merged those).
    pub fn node_config(&self) -> anyhow::Result<NodeConfig> {
        let mut c = match &self.config {
            Some(path) => NodeConfig::from_file(path)?,
            None => NodeConfig::default(),
        };
        if let Some(id) = self.id {
            c.id = id;
        }
        if let Some(listen) = &self.listen {
            c.listen = listen.clone();
        }
        if let Some(addr) = &self.advertise {
            c.advertise = addr.clone();
        }
        if let Some(addr) = &self.cluster_listen {
            c.cluster_listen = addr.clone();
        }
        if let Some(member) = &self.join {
            c.join = member.clone();
        }
        if let Some(id) = &self.cluster_id {
            c.cluster_id = id.clone();
        }
        if let Some(dir) = &self.data_dir {
            c.data_dir = dir.clone();
        }
        if let Some(peers) = &self.peers {
            c.peers = peers.clone();
        }
        if let Some(ms) = self.producer_expiry_ms {
            c.producer_expiry_ms = ms;
        }
        if let Some(ms) = self.retention_check_ms {
            c.retention_check_ms = ms;
        }
        if let Some(n) = self.checkpoint_entries {
            c.checkpoint_entries = n;
        }
        if let Some(n) = self.segment_bytes {
            c.segment_bytes = n;
        }
        if let Some(ms) = self.heartbeat_ms {
            c.heartbeat_ms = ms;
        }
        if let Some(ms) = self.election_timeout_min_ms {
            c.election_timeout_min_ms = ms;
        }
        if let Some(ms) = self.election_timeout_max_ms {
            c.election_timeout_max_ms = ms;
        }
        if let Some(n) = self.max_batch_bytes {
            c.max_batch_bytes = n;
        }
        if let Some(n) = self.max_record_bytes {
            c.max_record_bytes = n;
        }
        if let Some(n) = self.max_topics {
            c.max_topics = n;
        }
        if let Some(n) = self.max_partitions {
            c.max_partitions = n;
        }
        if let Some(ms) = self.replace_dead_after_ms {
            c.replace_dead_after_ms = ms;
        }
        if let Some(on) = self.leader_balance {
            c.leader_balance = on;
        }
        if let Some(addr) = &self.metrics_listen {
            c.metrics_listen = addr.clone();
        }
        if let Some(path) = &self.tls_cert {
            c.tls_cert = path.clone();
        }
        if let Some(path) = &self.tls_key {
            c.tls_key = path.clone();
        }
        if let Some(path) = &self.tls_ca {
            c.tls_ca = path.clone();
        }
        if let Some(auth) = self.tls_client_auth {
            c.tls_client_auth = auth;
        }
        if let Some(n) = self.max_connections {
            c.max_connections = n;
        }
        if let Some(n) = self.max_requests_per_connection {
            c.max_requests_per_connection = n;
        }
        if self.require_auth {
            c.require_auth = true;
        }
        if !self.superusers.is_empty() {
            c.superusers = self.superusers.clone();
        }
        c.validate()?;
        Ok(c)
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.node_config()?;
    if args.print_config {
        print!("{}", config.to_toml()?);
        return Ok(());
    }
    let node = start_node(config).await?;
    node.wait().await.map_err(anyhow::Error::msg)
}

/// Opens the node's storage in its data dir and starts the node; it stops on Ctrl-C / SIGTERM.
pub async fn start_node(config: NodeConfig) -> anyhow::Result<Node> {
    check_port_free(&config.listen, "--listen")?;
    if !config.cluster_listen.is_empty() {
        check_port_free(&config.cluster_listen, "--cluster-listen")?;
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let engine = tidemark_server::open_storage(&config)
        .with_context(|| format!("cannot open storage in {} (is another node using it?)", config.data_dir.display()))?;
    let node = Node::start(config.clone(), Arc::new(engine), shutdown_signal()).await?;
    let tls = if config.tls_cert.is_empty() { "plaintext" } else { "TLS" };
    eprintln!(
        "tidemark node {} listening on {} ({tls}; data in {})",
        config.id,
        config.listen,
        config.data_dir.display()
    );
    Ok(node)
}

/// Fails early, with a hint, when the listen port is taken.
fn check_port_free(listen: &str, flag: &str) -> anyhow::Result<()> {
    std::net::TcpListener::bind(listen)
        .map(drop)
        .with_context(|| format!("cannot listen on {listen}: is another process using it? choose another {flag}"))
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            biased;
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
