//! The public `Admin` service: topics and cluster status.

use std::sync::Arc;

use tidemark_broker::{Broker, TopicConfig};
use tidemark_proto::v1::admin_server::Admin;
use tidemark_proto::v1::*;
use tonic::{Request, Response, Status};

use crate::describe::Describer;
use crate::status::to_status;

pub struct AdminApi {
    pub broker: Arc<Broker>,
    pub describer: Describer,
}

fn topic_config(cfg: tidemark_proto::v1::TopicConfig) -> TopicConfig {
    TopicConfig {
        retention_ms: cfg.retention_ms,
        retention_bytes: cfg.retention_bytes,
        record_ttl_ms: cfg.record_ttl_ms,
    }
}

#[tonic::async_trait]
impl Admin for AdminApi {
    async fn create_topic(
        &self,
        request: Request<CreateTopicRequest>,
    ) -> Result<Response<CreateTopicResponse>, Status> {
        let req = request.into_inner();
        let config = topic_config(req.config.unwrap_or_default());
        let t = self
            .broker
            .create_topic(&req.name, req.partitions, req.replication_factor, config)
            .await
            .map_err(to_status)?;
        let topic = Some(self.describer.describe(&t).await);
        Ok(Response::new(CreateTopicResponse { topic }))
    }

    async fn list_topics(&self, _: Request<ListTopicsRequest>) -> Result<Response<ListTopicsResponse>, Status> {
        let names = self.broker.list_topics().map_err(to_status)?.into_iter().map(|t| t.name.to_string()).collect();
        Ok(Response::new(ListTopicsResponse { names }))
    }

    async fn describe_topic(
        &self,
        request: Request<DescribeTopicRequest>,
    ) -> Result<Response<TopicDescription>, Status> {
        let t = self.broker.topic(&request.into_inner().name).map_err(to_status)?;
        Ok(Response::new(self.describer.describe(&t).await))
    }

    async fn alter_topic(&self, request: Request<AlterTopicRequest>) -> Result<Response<TopicDescription>, Status> {
        let req = request.into_inner();
        let config = req.config.ok_or_else(|| {
            Status::invalid_argument(
                "AlterTopic needs the whole new config (describe the topic to read the current one)",
            )
        })?;
        let t = self.broker.alter_topic(&req.name, topic_config(config)).await.map_err(to_status)?;
        Ok(Response::new(self.describer.describe(&t).await))
    }

    async fn delete_topic(
        &self,
        request: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        self.broker.delete_topic(&request.into_inner().name).await.map_err(to_status)?;
        Ok(Response::new(DeleteTopicResponse {}))
    }

    async fn cluster_status(
        &self,
        _: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        let view = self.broker.cluster_status().map_err(to_status)?;
        let nodes = view.nodes.into_iter().map(crate::status::node_info).collect();
        Ok(Response::new(ClusterStatusResponse { nodes, metadata_leader: view.metadata_leader.unwrap_or(0) }))
    }

    async fn add_node(&self, request: Request<AddNodeRequest>) -> Result<Response<AddNodeResponse>, Status> {
        let req = request.into_inner();
        let voter = self.broker.add_node(req.id, &req.address).await.map_err(to_status)?;
        Ok(Response::new(AddNodeResponse { voter }))
    }

    async fn reassign_partition(
        &self,
        request: Request<ReassignPartitionRequest>,
    ) -> Result<Response<TopicDescription>, Status> {
        let req = request.into_inner();
        let t = self.broker.reassign(&req.topic, req.partition, req.replicas).await.map_err(to_status)?;
        Ok(Response::new(self.describer.describe(&t).await))
    }

    async fn remove_node(&self, request: Request<RemoveNodeRequest>) -> Result<Response<RemoveNodeResponse>, Status> {
        let moving = self.broker.remove_node(request.into_inner().id).await.map_err(to_status)?;
        Ok(Response::new(RemoveNodeResponse {
            removed: moving.is_none(),
            partitions_moving: moving.unwrap_or(0) as u32,
        }))
    }

    async fn init_producer(
        &self,
        request: Request<InitProducerRequest>,
    ) -> Result<Response<InitProducerResponse>, Status> {
        let name = Some(request.into_inner().name).filter(|n| !n.is_empty());
        let (producer_id, epoch) = self.broker.init_producer(name).await.map_err(to_status)?;
        Ok(Response::new(InitProducerResponse { producer_id, epoch: epoch as i32 }))
    }
}
