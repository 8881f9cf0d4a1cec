//! The internal `RaftTransport` service: a thin wrapper over the group registry.

use std::sync::Arc;

use tidemark_proto::v1::raft_transport_server::RaftTransport;
use tidemark_proto::v1::{RaftRequest, RaftResponse};
use tidemark_raft::GroupRegistry;
use tonic::{Request, Response, Status};

pub struct RaftApi {
    pub registry: Arc<GroupRegistry>,
}

#[tonic::async_trait]
impl RaftTransport for RaftApi {
    async fn call(&self, request: Request<RaftRequest>) -> Result<Response<RaftResponse>, Status> {
        let req = request.into_inner();
        match self.registry.handle(req.group, req.rpc, &req.payload).await {
            Ok(payload) => Ok(Response::new(RaftResponse { payload: payload.into() })),
            Err(message) => Err(Status::unavailable(message)),
        }
    }
}
