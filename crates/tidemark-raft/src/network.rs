//! The client half of the one internal transport: every group on this node reaches a
//! peer through one shared gRPC channel to that peer (HTTP/2 multiplexes the groups),
//! naming its group in each request. Never a channel per RPC or per group.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tidemark_proto::tls::ClientTls;
use tidemark_proto::v1::raft_transport_client::RaftTransportClient;
use tidemark_proto::v1::{HelloRequest, HelloResponse, RaftRequest, RaftRpc};
use tidemark_types::{GroupId, NodeId};
use tonic::transport::Channel;

use crate::types::{Snapshot, TypeConfig, Vote};

/// One lazily connected channel per peer node's cluster listener, shared by every group.
///
/// Every request it sends is stamped with this node's id and its cluster id, which the
/// receiver checks (tidemark-server's raft_api): a node of another cluster, or a stale
/// node of a wiped one, cannot deliver a vote, an append or a snapshot.
#[derive(Default)]
pub struct PeerPool {
    node: NodeId,
    cluster_id: String,
    peers: Mutex<HashMap<NodeId, (String, Channel)>>,
    /// TLS for new channels (None: plaintext); replaced when certificates are rotated.
    tls: Mutex<Option<ClientTls>>,
    /// Whether each peer answered the last request sent to it. With a peer down, every
    /// group retries it several times a second; this logs one line when it goes away and
    /// one when it is back (openraft's per-group warnings: RUST_LOG=openraft=warn).
    reachable: Mutex<HashMap<NodeId, bool>>,
}

/// Whether a failed request reached the peer: the transport's own refusals are
/// `FailedPrecondition` (see tidemark-server's raft_api); anything else, and a timeout,
/// means the peer itself did not answer.
fn peer_answered(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::FailedPrecondition
}

impl PeerPool {
    /// A pool that sends as `node` of cluster `cluster_id` (empty while it has none: only
    /// [`PeerPool::hello`] is answered then).
    pub fn new(node: NodeId, cluster_id: impl Into<String>) -> Arc<PeerPool> {
        Arc::new(PeerPool { node, cluster_id: cluster_id.into(), ..Default::default() })
    }

    /// Like [`PeerPool::new`], with TLS (this node's certificate as its client identity).
    pub fn with_tls(node: NodeId, cluster_id: impl Into<String>, tls: Option<ClientTls>) -> Arc<PeerPool> {
        Arc::new(PeerPool { node, cluster_id: cluster_id.into(), tls: Mutex::new(tls), ..Default::default() })
    }

    /// New TLS material (a rotated certificate): channels made from now on use it, and
    /// the cached ones are dropped, so every peer is reached with it from its next request
    /// (requests under way finish on the connection they started on).
    pub fn set_tls(&self, tls: Option<ClientTls>) {
        *self.tls.lock().unwrap_or_else(|e| e.into_inner()) = tls;
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// A request to `group`, stamped with who sends it.
    pub(crate) fn request(&self, group: GroupId, rpc: RaftRpc, payload: Vec<u8>) -> RaftRequest {
        RaftRequest {
            group,
            rpc: rpc as i32,
            payload: payload.into(),
            cluster_id: self.cluster_id.clone(),
            from: self.node,
        }
    }

    /// Sends one request to `node` at (cluster) address `addr` and returns the answer's
    /// payload, within `ttl`.
    pub async fn call(
        &self,
        node: NodeId,
        addr: &str,
        group: GroupId,
        rpc: RaftRpc,
        payload: Vec<u8>,
        ttl: Duration,
    ) -> Result<Vec<u8>, String> {
        let channel = self.channel(node, addr)?;
        let request = self.request(group, rpc, payload);
        let outcome = tokio::time::timeout(ttl, RaftTransportClient::new(channel).call(request)).await;
        match outcome {
            Ok(Ok(reply)) => Ok(reply.into_inner().payload.to_vec()),
            Ok(Err(status)) => Err(format!("{}: {}", status.code(), status.message())),
            Err(_) => Err(format!("no answer within {ttl:?}")),
        }
    }

    /// Asks `node` at (cluster) address `addr` who it is, within `ttl`.
    pub async fn hello(&self, node: NodeId, addr: &str, ttl: Duration) -> Result<HelloResponse, String> {
        let channel = self.channel(node, addr)?;
        let request = HelloRequest { from: self.node, cluster_id: self.cluster_id.clone() };
        let outcome = tokio::time::timeout(ttl, RaftTransportClient::new(channel).hello(request)).await;
        match outcome {
            Ok(Ok(reply)) => Ok(reply.into_inner()),
            Ok(Err(status)) => Err(format!("{}: {}", status.code(), status.message())),
            Err(_) => Err(format!("no answer within {ttl:?}")),
        }
    }

    /// Passes on the outcome of a request to `node` (Err: it timed out, with why), as a
    /// reply or an error message, recording whether the peer answered.
    pub(crate) fn observe<T>(
        &self,
        node: NodeId,
        outcome: Result<Result<T, tonic::Status>, String>,
    ) -> Result<T, String> {
        match outcome {
            Ok(Ok(reply)) => {
                self.answered(node, Ok(()));
                Ok(reply)
            }
            Ok(Err(status)) => {
                let message = format!("{}: {}", status.code(), status.message());
                self.answered(node, if peer_answered(&status) { Ok(()) } else { Err(&message) });
                Err(message)
            }
            Err(message) => {
                self.answered(node, Err(&message));
                Err(message)
            }
        }
    }

    /// Records whether `node` answered; logs only when that changes.
    fn answered(&self, node: NodeId, outcome: Result<(), &str>) {
        let now = outcome.is_ok();
        let before = self.reachable.lock().unwrap_or_else(|e| e.into_inner()).insert(node, now);
        match (before, outcome) {
            (Some(true) | None, Err(error)) => {
                tracing::warn!(node, error, "peer unreachable; its groups retry with backoff (one line per outage)")
            }
            (Some(false), Ok(())) => tracing::info!(node, "peer reachable again"),
            _ => {}
        }
    }

    /// The channel to `node` at `addr`, made once and reused; a changed address replaces it.
    pub fn channel(&self, node: NodeId, addr: &str) -> Result<Channel, String> {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((a, ch)) = peers.get(&node) {
            if a == addr {
                return Ok(ch.clone());
            }
        }
        let tls = self.tls.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let endpoint = ClientTls::endpoint(tls.as_ref(), addr)
            .map_err(|e| format!("bad address {addr:?} for node {node}: {e}"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true);
        let ch = endpoint.connect_lazy();
        peers.insert(node, (addr.to_string(), ch.clone()));
        Ok(ch)
    }
}

/// Makes the per-target clients openraft asks for, all for one group.
pub struct NetworkFactory {
    group: GroupId,
    pool: Arc<PeerPool>,
}

impl NetworkFactory {
    pub fn new(group: GroupId, pool: Arc<PeerPool>) -> Self {
        NetworkFactory { group, pool }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = GroupNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> GroupNetwork {
        GroupNetwork { group: self.group, target, addr: node.addr.clone(), pool: self.pool.clone() }
    }
}

/// One group's view of one peer.
pub struct GroupNetwork {
    group: GroupId,
    target: NodeId,
    /// Asked of the pool per request (a map lookup), so a rotated certificate or a moved
    /// peer takes effect without openraft recreating this client.
    addr: String,
    pool: Arc<PeerPool>,
}

#[derive(Debug, thiserror::Error)]
#[error("raft transport to node {target}: {message}")]
struct TransportError {
    target: NodeId,
    message: String,
}

impl GroupNetwork {
    /// Sends one request and decodes the reply. Every failure, remote ones included, is
    /// reported as "unreachable" so openraft backs off and retries.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: RaftRpc,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, TransportError> {
        let err = |message: String| TransportError { target: self.target, message };
        let channel = self.pool.channel(self.target, &self.addr).map_err(err)?;
        let payload = bincode::serialize(req).map_err(|e| err(format!("encode: {e}")))?;
        let request = self.pool.request(self.group, rpc, payload);
        let mut client =
            RaftTransportClient::new(channel).max_decoding_message_size(256 << 20).max_encoding_message_size(256 << 20);
        let outcome = tokio::time::timeout(ttl, client.call(request)).await;
        let reply =
            self.pool.observe(self.target, outcome.map_err(|_| format!("no answer within {ttl:?}"))).map_err(err)?;
        crate::codec::decode(&reply.into_inner().payload).map_err(|e| err(format!("decode: {e}")))
    }
}

fn unreachable(e: TransportError) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::new(&e))
}

impl RaftNetworkV2<TypeConfig> for GroupNetwork {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RaftRpc::Append, &rpc, option.hard_ttl()).await.map_err(unreachable)
    }

    /// Pipelined over one gRPC stream (see [`crate::pipeline`]) instead of openraft's
    /// default of one call at a time.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>, RPCError<TypeConfig>>,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
    {
        crate::pipeline::open(
            self.pool.channel(self.target, &self.addr),
            self.pool.clone(),
            self.group,
            self.target,
            input,
            option,
        )
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RaftRpc::Vote, &rpc, option.hard_ttl()).await.map_err(unreachable)
    }

    /// Used by a stopping leader (see `Broker::shutdown`): the target starts an election
    /// at once instead of after an election timeout.
    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RaftRpc::TransferLeader, &req, option.hard_ttl()).await.map_err(unreachable)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let req = (vote, snapshot.meta, snapshot.snapshot);
        tokio::select! {
            biased;
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = self.call(RaftRpc::Snapshot, &req, option.hard_ttl()) => {
                r.map_err(|e| StreamingError::Network(NetworkError::new(&e)))
            }
        }
    }
}
