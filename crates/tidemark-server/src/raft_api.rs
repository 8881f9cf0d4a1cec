//! The internal `RaftTransport` service, served on the cluster listener only (never on
//! the client one): a thin wrapper over the group registry.
//!
//! Every request must name this node's cluster and come from a member of it; anything
//! else is `PermissionDenied`, so a node of another cluster, a stale node of a wiped
//! one, or a client that found the port cannot touch a replica. Its own refusals of a
//! well-formed request (a group not hosted here yet, a replica repairing, the node still
//! starting) are `FailedPrecondition`, so that a peer can tell "reached, but not now"
//! from "unreachable" (`Unavailable`).

use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use futures::{Stream, StreamExt};

use tidemark_broker::Broker;
use tidemark_proto::v1::raft_transport_server::RaftTransport;
use tidemark_proto::v1::{HelloRequest, HelloResponse, RaftRequest, RaftResponse, RaftRpc};
use tonic::{Request, Response, Status, Streaming};

use tidemark_types::NodeId;

use crate::cluster::Identity;

pub struct RaftApi {
    pub identity: Arc<Identity>,
    /// Set once the broker has started; until then only `Hello` is answered.
    pub broker: Arc<OnceLock<Arc<Broker>>>,
}

type AnswerStream = Pin<Box<dyn Stream<Item = Result<RaftResponse, Status>> + Send>>;

impl RaftApi {
    /// The broker, if `req` may reach it.
    fn admit(&self, req: &RaftRequest, certified: Certified) -> Result<Arc<Broker>, Status> {
        let Some(broker) = self.broker.get() else {
            return Err(Status::failed_precondition(format!("node {} is still starting", self.identity.node)));
        };
        admit(broker, req, &certified)?;
        Ok(broker.clone())
    }
}

/// With TLS, the node the connection's certificate names (or why it names none); None
/// without TLS.
type Certified = Option<Result<NodeId, String>>;

fn certified<T>(request: &Request<T>) -> Certified {
    request.peer_certs().map(|certs| crate::tls::certified_node(&certs))
}

/// Checks the sender's cluster id and node id, and with TLS that its certificate is
/// that node's.
fn admit(broker: &Broker, req: &RaftRequest, certified: &Certified) -> Result<(), Status> {
    match certified {
        Some(Err(why)) => return Err(Status::permission_denied(why.clone())),
        Some(Ok(node)) if *node != req.from => {
            return Err(Status::permission_denied(format!(
                "the request says it comes from node {}, but the connection's certificate is node {node}'s",
                req.from
            )))
        }
        _ => {}
    }
    if req.cluster_id != broker.cluster_id() {
        return Err(Status::permission_denied(format!(
            "node {} belongs to cluster {:?}; this request is for cluster {:?} (a node of another cluster, \
             or of a cluster that was wiped and formed again, cannot join this one)",
            broker.node_id(),
            broker.cluster_id(),
            req.cluster_id
        )));
    }
    if !broker.is_member(req.from) {
        return Err(Status::permission_denied(format!(
            "node {} is not a member of cluster {}",
            req.from,
            broker.cluster_id()
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl RaftTransport for RaftApi {
    type AppendStreamStream = AnswerStream;

    async fn append_stream(&self, request: Request<Streaming<RaftRequest>>) -> Result<Response<AnswerStream>, Status> {
        let Some(broker) = self.broker.get().cloned() else {
            return Err(Status::failed_precondition(format!("node {} is still starting", self.identity.node)));
        };
        // The first message decides the stream (refused: PermissionDenied, so the sender
        // logs why); later ones are checked too, and the stream ends at one refused.
        let certified = certified(&request);
        let mut inbound = request.into_inner();
        let Some(first) = inbound.message().await? else {
            return Ok(Response::new(Box::pin(futures::stream::empty())));
        };
        admit(&broker, &first, &certified)?;
        let checked = broker.clone();
        let rest = inbound.map(move |r| match r {
            Ok(req) => admit(&checked, &req, &certified).map(|()| req).map_err(|s| s.message().to_string()),
            Err(s) => Err(format!("{}: {}", s.code(), s.message())),
        });
        let inbound = futures::stream::iter([Ok(first)]).chain(rest);
        let answers = tidemark_raft::pipeline::serve(broker.registry(), inbound).map(|r| match r {
            Ok(payload) => Ok(RaftResponse { payload: payload.into() }),
            Err(message) => Err(Status::failed_precondition(message)),
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn call(&self, request: Request<RaftRequest>) -> Result<Response<RaftResponse>, Status> {
        let certified = certified(&request);
        let req = request.into_inner();
        let broker = self.admit(&req, certified)?;
        if req.rpc == RaftRpc::MetaWrite as i32 {
            let payload = broker.forwarded_meta_write(&req.payload).await.map_err(crate::status::to_status)?;
            return Ok(Response::new(RaftResponse { payload: payload.into() }));
        }
        match broker.registry().handle(req.group, req.rpc, &req.payload).await {
            Ok(payload) => Ok(Response::new(RaftResponse { payload: payload.into() })),
            Err(message) => Err(Status::failed_precondition(message)),
        }
    }

    async fn hello(&self, _: Request<HelloRequest>) -> Result<Response<HelloResponse>, Status> {
        Ok(Response::new(HelloResponse {
            node: self.identity.node,
            cluster_id: self.identity.cluster_id().to_string(),
            client_address: self.identity.client_address.clone(),
        }))
    }
}
