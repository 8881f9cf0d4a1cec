//! Node configuration: one struct with defaults and `validate()`. Sources, lowest first:
//! a TOML file, then `TIDEMARK_*` environment variables, then command-line flags (the
//! CLI applies the last two, which clap merges, over what the file gave).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tidemark_types::{BatchLimits, NodeId};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("config file {path} is not valid TOML for a Tidemark node: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting `{field}`: {message}")]
    Invalid { field: &'static str, message: String },
}

fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field, message: message.into() }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id, unique in the cluster, from 1.
    pub id: NodeId,
    /// Where clients connect: HOST:PORT.
    pub listen: String,
    /// The client address this node publishes (what clients are told to connect to):
    /// HOST:PORT, a name allowed. Empty (the default): `listen`. Set it when clients reach
    /// the node by another address (containers, NAT, `0.0.0.0` listeners).
    pub advertise: String,
    /// Where the other nodes connect for replication (the internal Raft transport, never
    /// served to clients): HOST:PORT. Required with peers; a single node needs none.
    pub cluster_listen: String,
    /// The cluster address of any member of an existing cluster, to join it: the node
    /// waits, serving nothing, until `tidemark cluster add-node` adds it. Not with `peers`.
    pub join: String,
    /// The cluster this node belongs to. Empty (the default): learned from the peers, or
    /// drawn at random when a new cluster forms; it is kept in the data directory.
    pub cluster_id: String,
    /// The data directory (sled database).
    pub data_dir: PathBuf,
    /// Every voter, this node included, by cluster address (its `cluster_listen`):
    /// `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT`.
    pub peers: String,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Largest batch a producer may send.
    pub max_batch_bytes: usize,
    /// Largest single record (key + value + headers).
    pub max_record_bytes: usize,
    /// How long a partition remembers an idle idempotent producer (its sequence numbers
    /// for deduplication). Default one day, like Kafka's producer.id.expiration.ms.
    pub producer_expiry_ms: u64,
    /// How often partition leaders enforce retention and every group snapshots and
    /// purges its log: data past retention is gone within about this long.
    pub retention_check_ms: u64,
    /// A state machine checkpoints after this many applied entries, so a restart
    /// re-applies at most this many (or 64 MiB of commands, whichever comes first).
    pub checkpoint_entries: u64,
    /// Segment files of the record log roll at this size. Space comes back a segment at a
    /// time, so disk use runs up to a few segments above what retention keeps.
    pub segment_bytes: u64,
    /// HOST:PORT for the HTTP endpoints /health, /ready and /metrics (empty: none).
    pub metrics_listen: String,
    /// Hand partition leaderships back to their preferred replicas after a node returns.
    pub leader_balance: bool,
    /// Most topics the cluster may hold (checked by the metadata leader: set it alike on
    /// every node).
    pub max_topics: u32,
    /// Most partitions, over all topics, the cluster may hold. Each is a Raft group with
    /// its own heartbeats on every replica: on a 2-core machine 1,000 idle partitions used
    /// both cores, so the default is 500.
    pub max_partitions: u32,
    /// Replace a node dead for this many ms: its partitions get new replicas on the other
    /// nodes and it leaves the cluster (0, the default: never; at least 10000).
    pub replace_dead_after_ms: u64,
    /// PEM certificate chain the node presents on both listeners, and to the other nodes
    /// as its client certificate (so it needs both the serverAuth and clientAuth uses).
    /// Empty (the default): no TLS anywhere.
    pub tls_cert: String,
    /// PEM private key of `tls_cert`.
    pub tls_key: String,
    /// PEM CA certificate(s): verifies the other nodes' certificates on the cluster
    /// listener (always, with TLS and a cluster), and client certificates per
    /// `tls_client_auth`. The three files are re-read every 5 s: rotate them in place.
    pub tls_ca: String,
    /// Whether clients must present a certificate signed by `tls_ca`: none (the default),
    /// optional or required.
    pub tls_client_auth: crate::tls::ClientAuth,
    /// Refuse unauthenticated clients and enforce ACLs (`tidemark acl`): a client is
    /// `User:<common name>` of its TLS client certificate, so this needs `tls_client_auth`
    /// optional or required. Off (the default): every client may do anything.
    pub require_auth: bool,
    /// Principals allowed everything with `require_auth` (`User:admin`); set them alike on
    /// every node.
    pub superusers: Vec<String>,
    /// Most connections open at once on each listener; one more is closed at once.
    pub max_connections: u32,
    /// Most requests one client connection has in progress at once; more wait their turn.
    pub max_requests_per_connection: u32,
}

impl Default for NodeConfig {
    fn default() -> Self {
        let limits = BatchLimits::default();
        let timing = tidemark_raft::RaftTiming::default();
        NodeConfig {
            id: 0,
            listen: "127.0.0.1:9092".into(),
            advertise: String::new(),
            cluster_listen: String::new(),
            cluster_id: String::new(),
            join: String::new(),
            data_dir: PathBuf::from("./tidemark-data"),
            peers: String::new(),
            heartbeat_ms: timing.heartbeat_ms,
            election_timeout_min_ms: timing.election_min_ms,
            election_timeout_max_ms: timing.election_max_ms,
            max_batch_bytes: limits.max_batch_bytes,
            max_record_bytes: limits.max_record_bytes,
            producer_expiry_ms: tidemark_broker::DEFAULT_PRODUCER_EXPIRY.as_millis() as u64,
            retention_check_ms: tidemark_broker::DEFAULT_RETENTION_CHECK.as_millis() as u64,
            checkpoint_entries: tidemark_raft::CheckpointPolicy::default().entries,
            segment_bytes: tidemark_storage::segment::DEFAULT_SEGMENT_BYTES,
            metrics_listen: String::new(),
            leader_balance: true,
            replace_dead_after_ms: 0,
            max_topics: tidemark_broker::ClusterLimits::default().max_topics,
            max_partitions: tidemark_broker::ClusterLimits::default().max_partitions,
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_ca: String::new(),
            tls_client_auth: crate::tls::ClientAuth::None,
            require_auth: false,
            superusers: Vec::new(),
            max_connections: 10_000,
            max_requests_per_connection: 1_000,
        }
    }
}

/// Parses `1=HOST:PORT,2=HOST:PORT`.
pub fn parse_peers(s: &str) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    let mut peers = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| invalid("peers", format!("{part:?} is not ID=HOST:PORT (example: 1=127.0.0.1:9092)")))?;
        let id: NodeId =
            id.trim().parse().map_err(|_| invalid("peers", format!("{id:?} is not a node id (1, 2, ...)")))?;
        if id == 0 {
            return Err(invalid("peers", "node ids start at 1"));
        }
        if peers.insert(id, addr.trim().to_string()).is_some() {
            return Err(invalid("peers", format!("node {id} is listed twice")));
        }
    }
    Ok(peers)
}

impl NodeConfig {
    pub fn from_file(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.into(), message: e.to_string() })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })
    }

    /// The configuration as a TOML file would give it (what `serve --print-config` shows).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| invalid("config", e.to_string()))
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen
            .parse()
            .map_err(|_| invalid("listen", format!("{:?} is not HOST:PORT with an IP host", self.listen)))
    }

    /// The client address this node publishes.
    pub fn client_address(&self) -> &str {
        if self.advertise.is_empty() {
            &self.listen
        } else {
            &self.advertise
        }
    }

    /// Where the cluster listener binds, if there is one.
    pub fn cluster_listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.cluster_listen.is_empty() {
            return Ok(None);
        }
        let addr = self.cluster_listen.parse().map_err(|_| {
            invalid("cluster_listen", format!("{:?} is not HOST:PORT with an IP host", self.cluster_listen))
        })?;
        Ok(Some(addr))
    }

    pub fn peer_map(&self) -> Result<BTreeMap<NodeId, String>, ConfigError> {
        let mut peers = parse_peers(&self.peers)?;
        if peers.is_empty() {
            // A single node on its own (a cluster of one), or one joining a cluster.
            let own = if self.cluster_listen.is_empty() { &self.listen } else { &self.cluster_listen };
            peers.insert(self.id, own.clone());
        }
        Ok(peers)
    }

    pub fn limits(&self) -> BatchLimits {
        BatchLimits { max_batch_bytes: self.max_batch_bytes, max_record_bytes: self.max_record_bytes }
    }

    pub fn timing(&self) -> tidemark_raft::RaftTiming {
        tidemark_raft::RaftTiming {
            heartbeat_ms: self.heartbeat_ms,
            election_min_ms: self.election_timeout_min_ms,
            election_max_ms: self.election_timeout_max_ms,
        }
    }

    /// The TLS files, if TLS is on.
    pub fn tls_files(&self) -> Option<crate::tls::TlsFiles> {
        (!self.tls_cert.is_empty()).then(|| crate::tls::TlsFiles {
            cert: self.tls_cert.clone().into(),
            key: self.tls_key.clone().into(),
            ca: (!self.tls_ca.is_empty()).then(|| self.tls_ca.clone().into()),
            client_auth: self.tls_client_auth,
        })
    }

    fn validate_tls(&self) -> Result<(), ConfigError> {
        use crate::tls::ClientAuth;
        if self.tls_cert.is_empty() != self.tls_key.is_empty() {
            return Err(invalid("tls_cert", "--tls-cert and --tls-key go together: give both or neither"));
        }
        if self.tls_cert.is_empty() && (!self.tls_ca.is_empty() || self.tls_client_auth != ClientAuth::None) {
            return Err(invalid(
                "tls_cert",
                "--tls-ca and --tls-client-auth need TLS on: give the node's --tls-cert and --tls-key too",
            ));
        }
        if self.tls_client_auth != ClientAuth::None && self.tls_ca.is_empty() {
            return Err(invalid("tls_ca", "--tls-client-auth verifies client certificates against --tls-ca: set it"));
        }
        if self.require_auth && self.tls_client_auth == ClientAuth::None {
            return Err(invalid(
                "require_auth",
                "clients prove who they are with TLS client certificates: set --tls-client-auth required \
                 (or optional) with --tls-cert, --tls-key and --tls-ca",
            ));
        }
        if let Some(bad) = self.superusers.iter().find(|u| u.strip_prefix("User:").is_none_or(str::is_empty)) {
            return Err(invalid("superusers", format!("{bad:?} is not User:<name> (for example User:admin)")));
        }
        let clustered = self.peer_map().is_ok_and(|p| p.len() > 1) || !self.join.is_empty();
        if !self.tls_cert.is_empty() && clustered && self.tls_ca.is_empty() {
            return Err(invalid(
                "tls_ca",
                "with TLS, nodes prove who they are to each other with certificates from the cluster CA: \
                 set --tls-ca to the CA that signed every node's certificate",
            ));
        }
        Ok(())
    }

    /// Checks every setting and says what to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(invalid("id", "set a node id of 1 or more (--id)"));
        }
        self.listen_addr()?;
        let peers = self.peer_map()?;
        if !peers.contains_key(&self.id) {
            return Err(invalid("peers", format!("this node ({}) must be in the list of peers", self.id)));
        }
        let cluster = self.cluster_listen_addr()?;
        if !self.join.is_empty() && !self.peers.is_empty() {
            return Err(invalid(
                "join",
                "give --peers to form a new cluster or --join to join a running one, not both",
            ));
        }
        if cluster.is_none() && (peers.len() > 1 || !self.join.is_empty()) {
            return Err(invalid(
                "cluster_listen",
                "set --cluster-listen HOST:PORT: where the other nodes reach this one for replication \
                 (a port of its own, not --listen; --peers lists these addresses)",
            ));
        }
        if cluster.is_some_and(|c| self.listen_addr().is_ok_and(|l| l == c)) {
            return Err(invalid(
                "cluster_listen",
                "must differ from listen: clients never reach the internal transport",
            ));
        }
        let unspecified = self.listen_addr().is_ok_and(|a| a.ip().is_unspecified());
        if self.advertise.is_empty() && unspecified {
            return Err(invalid(
                "advertise",
                format!("listen is {}, which clients cannot connect to: set --advertise HOST:PORT", self.listen),
            ));
        }
        if !self.advertise.is_empty()
            && self.advertise.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(invalid("advertise", format!("{:?} is not HOST:PORT", self.advertise)));
        }
        if !self.cluster_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            || self.cluster_id.len() > 64
        {
            return Err(invalid("cluster_id", "use up to 64 letters, digits, '-' and '_'"));
        }
        if self.heartbeat_ms == 0 || self.election_timeout_min_ms < self.heartbeat_ms.saturating_mul(3) {
            return Err(invalid("election_timeout_min_ms", "must be at least three heartbeats"));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(invalid("election_timeout_max_ms", "must be greater than election_timeout_min_ms"));
        }
        if self.max_record_bytes == 0 || self.max_record_bytes > self.max_batch_bytes {
            return Err(invalid("max_record_bytes", "must be positive and at most max_batch_bytes"));
        }
        if self.producer_expiry_ms < 60_000 || self.producer_expiry_ms > i64::MAX as u64 {
            return Err(invalid(
                "producer_expiry_ms",
                "must be at least 60000 (one minute): a producer retrying for longer than this would be \
                 refused as unknown",
            ));
        }
        if !(100..=30_000).contains(&self.retention_check_ms) {
            return Err(invalid(
                "retention_check_ms",
                "must be 100 to 30000: retention is promised within 30 s of its limit",
            ));
        }
        if !(1 << 20..=1 << 30).contains(&self.segment_bytes) {
            return Err(invalid("segment_bytes", "must be 1 MiB to 1 GiB (1048576 to 1073741824)"));
        }
        if self.checkpoint_entries == 0 {
            return Err(invalid("checkpoint_entries", "must be at least 1"));
        }
        if !self.metrics_listen.is_empty() && self.metrics_listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "metrics_listen",
                format!("{:?} is not HOST:PORT with an IP host (or leave it empty)", self.metrics_listen),
            ));
        }
        if self.max_connections == 0 || self.max_requests_per_connection == 0 {
            return Err(invalid(
                "max_connections",
                "max_connections and max_requests_per_connection must be at least 1",
            ));
        }
        if self.max_topics == 0 || self.max_partitions == 0 {
            return Err(invalid("max_partitions", "max_topics and max_partitions must be at least 1"));
        }
        if self.replace_dead_after_ms != 0 && self.replace_dead_after_ms < 10_000 {
            return Err(invalid(
                "replace_dead_after_ms",
                "must be 0 (never) or at least 10000: a restarting node must not be replaced",
            ));
        }
        if self.max_batch_bytes > 64 << 20 {
            return Err(invalid("max_batch_bytes", "must be at most 64 MiB"));
        }
        self.validate_tls()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_errors_say_what_to_do() {
        let p = parse_peers("1=127.0.0.1:1, 2=127.0.0.1:2").unwrap();
        assert_eq!(p[&2], "127.0.0.1:2");
        assert!(parse_peers("1:127.0.0.1:1").unwrap_err().to_string().contains("ID=HOST:PORT"));
        assert!(parse_peers("1=a,1=b").unwrap_err().to_string().contains("twice"));
        assert!(parse_peers("0=a").is_err());
    }

    #[test]
    fn validate_catches_mistakes() {
        let mut c = NodeConfig { id: 1, peers: "1=127.0.0.1:9092".into(), ..Default::default() };
        c.validate().unwrap();
        c.id = 2;
        assert!(c.validate().unwrap_err().to_string().contains("must be in the list"));
        c.id = 0;
        assert!(c.validate().is_err());
        let c = NodeConfig { id: 1, election_timeout_max_ms: 10, ..Default::default() };
        assert!(c.validate().is_err());
    }

    #[test]
    fn a_cluster_needs_a_cluster_listener_of_its_own() {
        let peers = "1=127.0.0.1:9192,2=127.0.0.1:9193".to_string();
        let mut c = NodeConfig { id: 1, peers, ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("--cluster-listen"));
        c.cluster_listen = c.listen.clone();
        assert!(c.validate().unwrap_err().to_string().contains("must differ from listen"));
        c.cluster_listen = "127.0.0.1:9192".into();
        c.validate().unwrap();
        c.listen = "0.0.0.0:9092".into();
        assert!(c.validate().unwrap_err().to_string().contains("--advertise"));
        c.advertise = "node-1.example:9092".into();
        c.validate().unwrap();
        assert_eq!(c.client_address(), "node-1.example:9092");
        c.advertise = "nope".into();
        assert!(c.validate().unwrap_err().to_string().contains("not HOST:PORT"));
        c.advertise = String::new();
        c.listen = "127.0.0.1:9092".into();
        c.cluster_id = "not/an id".into();
        assert!(c.validate().unwrap_err().to_string().contains("cluster_id"));
        let joining = NodeConfig { id: 4, join: "127.0.0.1:9192".into(), ..Default::default() };
        assert!(joining.validate().unwrap_err().to_string().contains("--cluster-listen"));
        let joining = NodeConfig { cluster_listen: "127.0.0.1:9195".into(), ..joining };
        joining.validate().unwrap();
        let both = NodeConfig { peers: "4=127.0.0.1:9195".into(), ..joining };
        assert!(both.validate().unwrap_err().to_string().contains("not both"));
        // A single node forms a cluster of one and needs no cluster listener.
        NodeConfig { id: 1, ..Default::default() }.validate().unwrap();
    }

    #[test]
    fn tls_settings_go_together() {
        let peers = "1=127.0.0.1:9192,2=127.0.0.1:9193".to_string();
        let c = NodeConfig { id: 1, peers, cluster_listen: "127.0.0.1:9192".into(), ..Default::default() };
        let with_cert = NodeConfig { tls_cert: "n.pem".into(), ..c.clone() };
        assert!(with_cert.validate().unwrap_err().to_string().contains("go together"));
        let with_pair = NodeConfig { tls_key: "n.key".into(), ..with_cert };
        assert!(with_pair.validate().unwrap_err().to_string().contains("cluster CA"), "a cluster needs the CA");
        let ok = NodeConfig { tls_ca: "ca.pem".into(), ..with_pair.clone() };
        ok.validate().unwrap();
        assert_eq!(ok.tls_files().unwrap().ca.as_deref(), Some(std::path::Path::new("ca.pem")));
        let auth = NodeConfig { tls_client_auth: crate::tls::ClientAuth::Required, ..with_pair };
        assert!(auth.validate().unwrap_err().to_string().contains("--tls-ca"));
        let ca_only = NodeConfig { tls_ca: "ca.pem".into(), ..c };
        assert!(ca_only.validate().unwrap_err().to_string().contains("need TLS on"));
        assert!(ca_only.tls_files().is_none());
        let parsed: NodeConfig = toml::from_str("tls_client_auth = \"optional\"").unwrap();
        assert_eq!(parsed.tls_client_auth, crate::tls::ClientAuth::Optional);
    }

    #[test]
    fn toml_file_round_trips_and_rejects_unknown_keys() {
        let c: NodeConfig =
            toml::from_str("id = 3\nlisten = \"127.0.0.1:9000\"\npeers = \"3=127.0.0.1:9000\"").unwrap();
        assert_eq!((c.id, c.heartbeat_ms), (3, 100));
        assert!(toml::from_str::<NodeConfig>("idd = 3").is_err());
        let printed = c.to_toml().unwrap();
        assert_eq!(toml::from_str::<NodeConfig>(&printed).unwrap(), c, "what --print-config shows reads back");
    }
}
