//! `Node::start`: the one entry point that the binary, the tests and the simulation
//! share. It opens the broker on an injected storage engine (segment log + sled in
//! production, see [`open_storage`]; the harness's memory engine in the simulation) and
//! serves gRPC until `shutdown` resolves.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use tidemark_broker::{Broker, BrokerConfig};
use tidemark_proto::v1::admin_server::AdminServer;
use tidemark_proto::v1::groups_server::GroupsServer;
use tidemark_proto::v1::raft_transport_server::RaftTransportServer;
use tidemark_proto::v1::tidemark_server::TidemarkServer;
use tidemark_raft::PeerPool;
use tidemark_storage::SharedEngine;
use tokio::task::JoinHandle;

use crate::admin_api::AdminApi;
use crate::auth::Auth;
use crate::client_api::ClientApi;
use crate::cluster::Identity;
use crate::config::{ConfigError, NodeConfig};
use crate::describe::Describer;
use crate::groups_api::GroupsApi;
use crate::raft_api::RaftApi;
use crate::tls::ServerTls;

/// The TLS configuration for a listener's next handshake (it changes when certificates
/// are rotated).
pub(crate) type TlsSource = Arc<dyn Fn() -> Arc<rustls::ServerConfig> + Send + Sync>;

/// Opens the production storage of a node's data directory: the Raft logs (all record
/// data) in append-only segment files, the small remaining state in sled. Blocking: it
/// replays the log index.
#[cfg(not(madsim))]
pub fn open_storage(
    config: &crate::NodeConfig,
) -> Result<tidemark_storage::SegmentedEngine<tidemark_storage::SledEngine>, tidemark_storage::StorageError> {
    let tree = tidemark_raft::log_store::LOG_TREE;
    tidemark_storage::SegmentedEngine::open_data_dir(&config.data_dir, tree, config.segment_bytes)
}

/// Large enough for Raft appends that carry several batches (the cluster listener), and
/// for fetch answers.
const MAX_MESSAGE_BYTES: usize = 256 << 20;
/// What a client request may hold beyond one batch of the largest allowed size (topic
/// name, framing). Larger requests are refused before their body is decoded.
const REQUEST_OVERHEAD_BYTES: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("starting the broker: {0}")]
    Broker(#[from] tidemark_broker::BrokerError),
    #[error("{0}")]
    Cluster(String),
    #[error("cannot listen on {addr} for /health, /ready and /metrics (metrics_listen): {message}")]
    Http { addr: String, message: String },
    #[error("TLS: {0}")]
    Tls(String),
}

/// A running node.
pub struct Node {
    pub broker: Arc<Broker>,
    server: JoinHandle<Result<(), String>>,
}

impl Node {
    /// Starts a node. Returns once its groups are open and its server tasks are running.
    ///
    /// The cluster listener comes up first and answers `Hello` only: while a new cluster
    /// forms, the nodes agree on its id through it (see `cluster.rs`). Then the broker
    /// starts, the internal transport opens to members of the cluster, and the client
    /// listener starts.
    pub async fn start(
        config: NodeConfig,
        engine: SharedEngine,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Node, NodeError> {
        config.validate()?;
        let addr = config.listen_addr()?;
        let peers = config.peer_map()?;
        let identity = Identity::new(config.id, config.client_address().to_string());
        let slot = Arc::new(OnceLock::new());
        let tls = config.tls_files().map(ServerTls::load).transpose().map_err(NodeError::Tls)?;
        let peer_tls = tls.as_ref().map(|t| t.peer_tls());
        let (stop_cluster, cluster) = match config.cluster_listen_addr()? {
            Some(at) => {
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let raft = RaftTransportServer::new(RaftApi { identity: identity.clone(), broker: slot.clone() })
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES);
                let router = tonic::transport::Server::builder().add_service(raft);
                let handshakes = tls.clone().map(|t| Arc::new(move || t.cluster_listener()) as TlsSource);
                let served = serve(router, at, handshakes, config.max_connections as usize, async {
                    let _ = stopped.await;
                });
                let task = tokio::spawn(async move {
                    served.await.map_err(|e| format!("serving the cluster listener on {at}: {e}"))
                });
                tracing::info!(node = config.id, %at, tls = tls.is_some(), "cluster listener started");
                (Some(stop), Some(task))
            }
            None => (None, None),
        };
        let mut shutdown = Box::pin(shutdown);
        let cluster_id = tokio::select! {
            id = crate::cluster::establish(&engine, &config, &identity, &peers, peer_tls.clone()) => id?,
            _ = &mut shutdown => return Err(NodeError::Cluster("stopped before the cluster formed".into())),
        };
        let broker_cfg = BrokerConfig {
            node_id: config.id,
            peers,
            cluster_id,
            client_address: config.client_address().to_string(),
            join: !config.join.is_empty(),
            timing: config.timing(),
            limits: config.limits(),
            producer_expiry: std::time::Duration::from_millis(config.producer_expiry_ms),
            retention_check: std::time::Duration::from_millis(config.retention_check_ms),
            checkpoints: tidemark_raft::CheckpointPolicy { entries: config.checkpoint_entries, ..Default::default() },
            leader_balance: config.leader_balance,
            replace_dead_after: (config.replace_dead_after_ms > 0)
                .then(|| std::time::Duration::from_millis(config.replace_dead_after_ms)),
            cluster_limits: tidemark_broker::ClusterLimits {
                max_topics: config.max_topics,
                max_partitions: config.max_partitions,
            },
            peer_tls: peer_tls.clone(),
        };
        let broker = Broker::start(broker_cfg, engine).await?;
        let _ = slot.set(broker.clone());
        let metrics = crate::metrics::Metrics::new();
        if !config.metrics_listen.is_empty() {
            let addr = config.metrics_listen.clone();
            let listener = tokio::net::TcpListener::bind(addr.as_str())
                .await
                .map_err(|e| NodeError::Http { addr: addr.clone(), message: e.to_string() })?;
            tokio::spawn(crate::http::serve(listener, Arc::downgrade(&broker), metrics.clone()));
            tracing::info!(%addr, "serving /health, /ready and /metrics");
        }
        let describer =
            Describer { broker: broker.clone(), clients: PeerPool::with_tls(config.id, "", peer_tls.clone()) };
        let rotation = tls.clone().map(|tls| {
            let pools = [broker.peer_pool(), describer.clients.clone()];
            tokio::spawn(tls.watch(move |peer| pools.iter().for_each(|p| p.set_tls(Some(peer.clone())))))
        });
        let handshakes = tls.map(|t| Arc::new(move || t.client_listener()) as TlsSource);
        let auth = Auth {
            broker: broker.clone(),
            require: config.require_auth,
            superusers: Arc::new(config.superusers.iter().cloned().collect()),
        };
        if !config.require_auth {
            tracing::warn!(
                "running OPEN: clients are not authenticated and may do anything, deleting topics included; \
                 start with --require-auth and TLS client certificates to enforce ACLs (docs/security.md)"
            );
        }
        let throttle = crate::quota::Throttle::new(broker.clone());
        let client = TidemarkServer::new(ClientApi {
            broker: broker.clone(),
            auth: auth.clone(),
            throttle: throttle.clone(),
            describer: describer.clone(),
            metrics,
        })
        .max_decoding_message_size(config.max_batch_bytes + REQUEST_OVERHEAD_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let admin = AdminServer::new(AdminApi { broker: broker.clone(), auth: auth.clone(), describer });
        let groups = GroupsServer::new(GroupsApi { broker: broker.clone(), auth, throttle });
        let b = broker.clone();
        // Raft groups stop first: their replication streams (inbound and outbound) live as
        // long as the groups do, and the cluster listener's graceful drain waits for every
        // stream; it stops last, as leaderships are handed off through it.
        let stop = async move {
            tokio::select! {
                _ = shutdown => {}
                _ = b.failed() => {}
            }
            b.shutdown().await;
        };
        let b = broker.clone();
        let (max_connections, max_requests) =
            (config.max_connections as usize, config.max_requests_per_connection as usize);
        let server = tokio::spawn(async move {
            let router = tonic::transport::Server::builder()
                .concurrency_limit_per_connection(max_requests)
                .add_service(client)
                .add_service(admin)
                .add_service(groups);
            let served = serve(router, addr, handshakes, max_connections, stop).await;
            b.shutdown().await;
            rotation.inspect(JoinHandle::abort);
            let cluster_served = match (stop_cluster, cluster) {
                (Some(stop), Some(task)) => {
                    let _ = stop.send(());
                    task.await.map_err(|e| format!("cluster listener task failed: {e}"))?
                }
                _ => Ok(()),
            };
            served.map_err(|e| format!("serving on {addr}: {e}"))?;
            cluster_served?;
            b.failure().map_or(Ok(()), Err)
        });
        tracing::info!(node = config.id, %addr, "tidemark node started");
        Ok(Node { broker, server })
    }

    /// Waits until the server stops (after `shutdown` resolved, or on a serve error).
    pub async fn wait(self) -> Result<(), String> {
        self.server.await.map_err(|e| format!("server task failed: {e}"))?
    }
}

/// Serves `router` on `addr` until `stop`, plain or with TLS, with at most
/// `max_connections` open (see listener.rs).
#[cfg(not(madsim))]
async fn serve(
    router: tonic::transport::server::Router,
    addr: std::net::SocketAddr,
    tls: Option<TlsSource>,
    max_connections: usize,
    stop: impl Future<Output = ()>,
) -> Result<(), String> {
    crate::listener::serve(router, addr, tls, max_connections, stop).await
}

/// The simulation runs without TLS (its network is not TCP) and without a connection cap.
#[cfg(madsim)]
async fn serve(
    router: tonic::transport::server::Router,
    addr: std::net::SocketAddr,
    tls: Option<TlsSource>,
    _max_connections: usize,
    stop: impl Future<Output = ()>,
) -> Result<(), String> {
    if tls.is_some() {
        return Err("TLS is not simulated".into());
    }
    router.serve_with_shutdown(addr, stop).await.map_err(|e| e.to_string())
}
