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
use crate::client_api::ClientApi;
use crate::cluster::Identity;
use crate::config::{ConfigError, NodeConfig};
use crate::describe::Describer;
use crate::groups_api::GroupsApi;
use crate::raft_api::RaftApi;

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
        let (stop_cluster, cluster) = match config.cluster_listen_addr()? {
            Some(at) => {
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let raft = RaftTransportServer::new(RaftApi { identity: identity.clone(), broker: slot.clone() })
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES);
                let served = tonic::transport::Server::builder().add_service(raft).serve_with_shutdown(at, async {
                    let _ = stopped.await;
                });
                let task = tokio::spawn(async move {
                    served.await.map_err(|e| format!("serving the cluster listener on {at}: {e}"))
                });
                tracing::info!(node = config.id, %at, "cluster listener started");
                (Some(stop), Some(task))
            }
            None => (None, None),
        };
        let mut shutdown = Box::pin(shutdown);
        let cluster_id = tokio::select! {
            id = crate::cluster::establish(&engine, &config, &identity, &peers) => id?,
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
        let describer = Describer { broker: broker.clone(), clients: PeerPool::new(config.id, "") };
        let client = TidemarkServer::new(ClientApi { broker: broker.clone(), describer: describer.clone(), metrics })
            .max_decoding_message_size(config.max_batch_bytes + REQUEST_OVERHEAD_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let admin = AdminServer::new(AdminApi { broker: broker.clone(), describer });
        let groups = GroupsServer::new(GroupsApi { broker: broker.clone() });
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
        let server = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(client)
                .add_service(admin)
                .add_service(groups)
                .serve_with_shutdown(addr, stop)
                .await;
            b.shutdown().await;
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
