//! The internal `RaftTransport` service: a thin wrapper over the group registry. Its own
//! refusals (a group not hosted here yet, a replica repairing) are `FailedPrecondition`,
//! so that a peer can tell "reached, but not now" from "unreachable" (`Unavailable`).

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};

use tidemark_proto::v1::raft_transport_server::RaftTransport;
use tidemark_proto::v1::{RaftRequest, RaftResponse};
use tidemark_raft::GroupRegistry;
use tonic::{Request, Response, Status, Streaming};

pub struct RaftApi {
    pub registry: Arc<GroupRegistry>,
}

type AnswerStream = Pin<Box<dyn Stream<Item = Result<RaftResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RaftTransport for RaftApi {
    type AppendStreamStream = AnswerStream;

    async fn append_stream(&self, request: Request<Streaming<RaftRequest>>) -> Result<Response<AnswerStream>, Status> {
        let inbound = request.into_inner().map(|r| r.map_err(|s| format!("{}: {}", s.code(), s.message())));
        let answers = tidemark_raft::pipeline::serve(self.registry.clone(), inbound).map(|r| match r {
            Ok(payload) => Ok(RaftResponse { payload: payload.into() }),
            Err(message) => Err(Status::failed_precondition(message)),
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn call(&self, request: Request<RaftRequest>) -> Result<Response<RaftResponse>, Status> {
        let req = request.into_inner();
        match self.registry.handle(req.group, req.rpc, &req.payload).await {
            Ok(payload) => Ok(Response::new(RaftResponse { payload: payload.into() })),
            Err(message) => Err(Status::failed_precondition(message)),
        }
    }
}
