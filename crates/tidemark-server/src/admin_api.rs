//! The public `Admin` service: topics and cluster status.

use std::sync::Arc;

use tidemark_broker::{Broker, Operation, ResourceType, TopicConfig};
use tidemark_proto::v1::admin_server::Admin;
use tidemark_proto::v1::*;
use tonic::{Request, Response, Status};

use crate::auth::Auth;
use crate::describe::Describer;
use crate::status::to_status;

pub struct AdminApi {
    pub broker: Arc<Broker>,
    pub auth: Auth,
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
        self.auth.check(&request, ResourceType::Topic, &request.get_ref().name, Operation::Create)?;
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

    /// Lists only the topics the caller may describe.
    async fn list_topics(&self, request: Request<ListTopicsRequest>) -> Result<Response<ListTopicsResponse>, Status> {
        self.auth.authenticated(&request)?;
        let topics = self.broker.list_topics().map_err(to_status)?.into_iter().map(|t| t.name.to_string());
        let names = topics.filter(|t| self.auth.may(&request, ResourceType::Topic, t, Operation::Describe)).collect();
        Ok(Response::new(ListTopicsResponse { names }))
    }

    async fn describe_topic(
        &self,
        request: Request<DescribeTopicRequest>,
    ) -> Result<Response<TopicDescription>, Status> {
        self.auth.check(&request, ResourceType::Topic, &request.get_ref().name, Operation::Describe)?;
        let t = self.broker.topic(&request.into_inner().name).map_err(to_status)?;
        Ok(Response::new(self.describer.describe(&t).await))
    }

    async fn alter_topic(&self, request: Request<AlterTopicRequest>) -> Result<Response<TopicDescription>, Status> {
        self.auth.check(&request, ResourceType::Topic, &request.get_ref().name, Operation::Alter)?;
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
        self.auth.check(&request, ResourceType::Topic, &request.get_ref().name, Operation::Delete)?;
        self.broker.delete_topic(&request.into_inner().name).await.map_err(to_status)?;
        Ok(Response::new(DeleteTopicResponse {}))
    }

    async fn cluster_status(
        &self,
        request: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        self.auth.check(&request, ResourceType::Cluster, "cluster", Operation::Describe)?;
        let view = self.broker.cluster_status().map_err(to_status)?;
        let nodes = view.nodes.into_iter().map(crate::status::node_info).collect();
        Ok(Response::new(ClusterStatusResponse { nodes, metadata_leader: view.metadata_leader.unwrap_or(0) }))
    }

    async fn add_node(&self, request: Request<AddNodeRequest>) -> Result<Response<AddNodeResponse>, Status> {
        self.auth.check(&request, ResourceType::Cluster, "cluster", Operation::Alter)?;
        let req = request.into_inner();
        let voter = self.broker.add_node(req.id, &req.address).await.map_err(to_status)?;
        Ok(Response::new(AddNodeResponse { voter }))
    }

    async fn reassign_partition(
        &self,
        request: Request<ReassignPartitionRequest>,
    ) -> Result<Response<TopicDescription>, Status> {
        self.auth.check(&request, ResourceType::Cluster, "cluster", Operation::Alter)?;
        let req = request.into_inner();
        let t = self.broker.reassign(&req.topic, req.partition, req.replicas).await.map_err(to_status)?;
        Ok(Response::new(self.describer.describe(&t).await))
    }

    async fn remove_node(&self, request: Request<RemoveNodeRequest>) -> Result<Response<RemoveNodeResponse>, Status> {
        self.auth.check(&request, ResourceType::Cluster, "cluster", Operation::Alter)?;
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
        self.auth.authenticated(&request)?;
        // A named producer fences its namesakes: only who may write as that name may.
        let named = &request.get_ref().name;
        if !named.is_empty() {
            self.auth.check(&request, ResourceType::Producer, named, Operation::Write)?;
        }
        let name = Some(request.into_inner().name).filter(|n| !n.is_empty());
        let (producer_id, epoch) = self.broker.init_producer(name).await.map_err(to_status)?;
        Ok(Response::new(InitProducerResponse { producer_id, epoch: epoch as i32 }))
    }

    async fn add_acl(&self, request: Request<AclBinding>) -> Result<Response<AddAclResponse>, Status> {
        self.auth.check(&request, ResourceType::Cluster, "cluster", Operation::Alter)?;
        self.broker.add_acl(from_wire(request.into_inner())?).await.map_err(to_status)?;
        Ok(Response::new(AddAclResponse {}))
    }

    async fn remove_acl(&self, request: Request<AclBinding>) -> Result<Response<RemoveAclResponse>, Status> {
        self.auth.check(&request, ResourceType::Cluster, "cluster", Operation::Alter)?;
        let removed = self.broker.remove_acl(from_wire(request.into_inner())?).await.map_err(to_status)?;
        Ok(Response::new(RemoveAclResponse { removed }))
    }

    async fn list_acls(&self, request: Request<ListAclsRequest>) -> Result<Response<ListAclsResponse>, Status> {
        self.auth.check(&request, ResourceType::Cluster, "cluster", Operation::Describe)?;
        Ok(Response::new(ListAclsResponse { acls: self.broker.acls().into_iter().map(to_wire).collect() }))
    }

    async fn set_quota(&self, request: Request<SetQuotaRequest>) -> Result<Response<SetQuotaResponse>, Status> {
        self.auth.check(&request, ResourceType::Cluster, "cluster", Operation::Alter)?;
        let req = request.into_inner();
        let q = req.quota.ok_or_else(|| Status::invalid_argument("SetQuota needs a quota (its principal at least)"))?;
        let quota = tidemark_broker::Quota {
            produce_bytes_per_sec: q.produce_bytes_per_sec,
            fetch_bytes_per_sec: q.fetch_bytes_per_sec,
            requests_per_sec: q.requests_per_sec,
        };
        let set = (!req.remove).then_some(quota);
        let existed = self.broker.set_quota(&q.principal, set).await.map_err(to_status)?;
        Ok(Response::new(SetQuotaResponse { removed: req.remove && existed }))
    }

    async fn list_quotas(&self, request: Request<ListQuotasRequest>) -> Result<Response<ListQuotasResponse>, Status> {
        self.auth.check(&request, ResourceType::Cluster, "cluster", Operation::Describe)?;
        let quotas = self
            .broker
            .quotas()
            .into_iter()
            .map(|(principal, q)| Quota {
                principal,
                produce_bytes_per_sec: q.produce_bytes_per_sec,
                fetch_bytes_per_sec: q.fetch_bytes_per_sec,
                requests_per_sec: q.requests_per_sec,
            })
            .collect();
        Ok(Response::new(ListQuotasResponse { quotas }))
    }
}

fn from_wire(b: AclBinding) -> Result<tidemark_broker::AclBinding, Status> {
    use tidemark_broker::Operation as Op;
    let resource = match b.resource() {
        AclResource::Cluster => ResourceType::Cluster,
        AclResource::Topic => ResourceType::Topic,
        AclResource::Group => ResourceType::Group,
        AclResource::Producer => ResourceType::Producer,
        AclResource::Unspecified => return Err(Status::invalid_argument("the ACL names no resource type")),
    };
    let operation = match b.operation() {
        AclOperation::Describe => Op::Describe,
        AclOperation::Read => Op::Read,
        AclOperation::Write => Op::Write,
        AclOperation::Create => Op::Create,
        AclOperation::Alter => Op::Alter,
        AclOperation::Delete => Op::Delete,
        AclOperation::All => Op::All,
        AclOperation::Unspecified => return Err(Status::invalid_argument("the ACL names no operation")),
    };
    let pattern = if b.prefix { tidemark_broker::Pattern::Prefix } else { tidemark_broker::Pattern::Literal };
    Ok(tidemark_broker::AclBinding {
        principal: b.principal,
        resource,
        name: b.name,
        pattern,
        operation,
        allow: !b.deny,
    })
}

fn to_wire(b: tidemark_broker::AclBinding) -> AclBinding {
    use tidemark_broker::Operation as Op;
    let resource = match b.resource {
        ResourceType::Cluster => AclResource::Cluster,
        ResourceType::Topic => AclResource::Topic,
        ResourceType::Group => AclResource::Group,
        ResourceType::Producer => AclResource::Producer,
    };
    let operation = match b.operation {
        Op::Describe => AclOperation::Describe,
        Op::Read => AclOperation::Read,
        Op::Write => AclOperation::Write,
        Op::Create => AclOperation::Create,
        Op::Alter => AclOperation::Alter,
        Op::Delete => AclOperation::Delete,
        Op::All => AclOperation::All,
    };
    AclBinding {
        principal: b.principal,
        resource: resource as i32,
        name: b.name,
        prefix: b.pattern == tidemark_broker::Pattern::Prefix,
        operation: operation as i32,
        deny: !b.allow,
    }
}
