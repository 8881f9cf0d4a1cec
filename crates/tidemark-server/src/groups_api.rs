//! The public `Groups` service: consumer-group administration, membership and offsets.
//! Wire <-> domain conversion of group types happens here and nowhere else.

use std::sync::Arc;
use std::time::Duration;

use tidemark_broker::groups::ops::GroupPartition;
use tidemark_broker::groups::shared::{DeadReason, Settle};
use tidemark_broker::groups::ExpiredAction;
use tidemark_broker::{Broker, GroupConfig, GroupMeta, GroupMode, MemberPartition, Operation, ResourceType};
use tidemark_proto::v1::groups_server::Groups;
use tidemark_proto::v1::{self as pb, *};
use tonic::{Request, Response, Status};

use crate::auth::{principal, Auth};
use crate::quota::{hold, Kind, Throttle};
use crate::status::to_status;

/// A shared fetch waits at most this long, whatever the client asks.
const MAX_SHARE_WAIT: Duration = Duration::from_secs(30);

pub struct GroupsApi {
    pub broker: Arc<Broker>,
    pub auth: Auth,
    pub throttle: Throttle,
}

/// Wire config to domain config: zero fields take the defaults.
pub fn config_from_wire(c: Option<pb::GroupConfig>) -> GroupConfig {
    let c = c.unwrap_or_default();
    let d = GroupConfig::default();
    let or = |v: u32, default: u32| if v == 0 { default } else { v };
    GroupConfig {
        mode: if c.mode == pb::GroupMode::Shared as i32 { GroupMode::Shared } else { GroupMode::Partitioned },
        session_timeout_ms: or(c.session_timeout_ms, d.session_timeout_ms),
        heartbeat_interval_ms: or(c.heartbeat_interval_ms, d.heartbeat_interval_ms),
        lock_ms: or(c.lock_ms, d.lock_ms),
        max_delivery_attempts: or(c.max_delivery_attempts, d.max_delivery_attempts),
        redelivery_backoff_ms: c.redelivery_backoff_ms,
        dead_letter_topic: Some(c.dead_letter_topic).filter(|t| !t.is_empty()),
        ttl_ms: c.ttl_ms,
        expired: match pb::ExpiredAction::try_from(c.expired) {
            Ok(pb::ExpiredAction::Drop) => ExpiredAction::Drop,
            _ => ExpiredAction::DeadLetter,
        },
        max_in_flight: or(c.max_in_flight, d.max_in_flight),
        rebalance_timeout_ms: or(c.rebalance_timeout_ms, d.rebalance_timeout_ms),
    }
}

fn mode_to_wire(m: GroupMode) -> i32 {
    match m {
        GroupMode::Partitioned => pb::GroupMode::Partitioned as i32,
        GroupMode::Shared => pb::GroupMode::Shared as i32,
    }
}

fn config_to_wire(c: &GroupConfig) -> pb::GroupConfig {
    pb::GroupConfig {
        mode: mode_to_wire(c.mode),
        session_timeout_ms: c.session_timeout_ms,
        heartbeat_interval_ms: c.heartbeat_interval_ms,
        lock_ms: c.lock_ms,
        max_delivery_attempts: c.max_delivery_attempts,
        redelivery_backoff_ms: c.redelivery_backoff_ms,
        dead_letter_topic: c.dead_letter_topic.clone().unwrap_or_default(),
        ttl_ms: c.ttl_ms,
        rebalance_timeout_ms: c.rebalance_timeout_ms,
        expired: match c.expired {
            ExpiredAction::Drop => pb::ExpiredAction::Drop as i32,
            ExpiredAction::DeadLetter => pb::ExpiredAction::DeadLetter as i32,
        },
        max_in_flight: c.max_in_flight,
    }
}

fn dead_reason_to_wire(r: Option<DeadReason>) -> i32 {
    (match r {
        None => pb::DeadLetterReason::None,
        Some(DeadReason::MaxAttempts) => pb::DeadLetterReason::MaxAttempts,
        Some(DeadReason::Rejected) => pb::DeadLetterReason::Rejected,
        Some(DeadReason::Expired) => pb::DeadLetterReason::Expired,
    }) as i32
}

fn describe(g: &GroupMeta) -> GroupDescription {
    let members = g
        .members
        .iter()
        .map(|(id, m)| GroupMember {
            member_id: id.clone(),
            client_id: m.client_id.clone(),
            topics: m.topics.iter().cloned().collect(),
        })
        .collect();
    let assignments = g
        .assignments
        .iter()
        .map(|((topic, partition), a)| GroupAssignment {
            topic: topic.clone(),
            partition: *partition,
            owner: a.owner.clone().unwrap_or_default(),
            generation: a.generation,
            moving_to: a.moving_to.clone().unwrap_or_default(),
        })
        .collect();
    GroupDescription {
        name: g.name.clone(),
        group_id: g.id,
        config: Some(config_to_wire(&g.config)),
        topics: g.topics.iter().cloned().collect(),
        members,
        assignments,
    }
}

fn partitions_to_wire(a: Vec<MemberPartition>) -> Vec<pb::MemberPartition> {
    a.into_iter()
        .map(|p| pb::MemberPartition {
            topic: p.topic,
            partition: p.partition,
            generation: p.generation,
            revoking: p.revoking,
        })
        .collect()
}

#[tonic::async_trait]
impl Groups for GroupsApi {
    async fn create_group(&self, request: Request<CreateGroupRequest>) -> Result<Response<GroupDescription>, Status> {
        self.auth.check(&request, ResourceType::Group, &request.get_ref().name, Operation::Create)?;
        let req = request.into_inner();
        let config = config_from_wire(req.config);
        let g = self.broker.create_group(&req.name, req.topics, config).await.map_err(to_status)?;
        Ok(Response::new(describe(&g)))
    }

    /// Lists only the groups the caller may describe.
    async fn list_groups(&self, request: Request<ListGroupsRequest>) -> Result<Response<ListGroupsResponse>, Status> {
        self.auth.authenticated(&request)?;
        let groups = self
            .broker
            .list_groups()
            .iter()
            .filter(|g| self.auth.may(&request, ResourceType::Group, &g.name, Operation::Describe))
            .map(|g| GroupListing {
                name: g.name.clone(),
                mode: mode_to_wire(g.config.mode),
                members: g.members.len() as u32,
                topics: g.topics.iter().cloned().collect(),
            })
            .collect();
        Ok(Response::new(ListGroupsResponse { groups }))
    }

    async fn describe_group(
        &self,
        request: Request<DescribeGroupRequest>,
    ) -> Result<Response<GroupDescription>, Status> {
        self.auth.check(&request, ResourceType::Group, &request.get_ref().name, Operation::Describe)?;
        let g = self.broker.describe_group(&request.into_inner().name).map_err(to_status)?;
        Ok(Response::new(describe(&g)))
    }

    async fn delete_group(
        &self,
        request: Request<DeleteGroupRequest>,
    ) -> Result<Response<DeleteGroupResponse>, Status> {
        self.auth.check(&request, ResourceType::Group, &request.get_ref().name, Operation::Delete)?;
        self.broker.delete_group(&request.into_inner().name).await.map_err(to_status)?;
        Ok(Response::new(DeleteGroupResponse {}))
    }

    async fn join_group(&self, request: Request<JoinGroupRequest>) -> Result<Response<JoinGroupResponse>, Status> {
        self.auth.check(&request, ResourceType::Group, &request.get_ref().group, Operation::Read)?;
        for topic in &request.get_ref().topics {
            self.auth.check(&request, ResourceType::Topic, topic, Operation::Read)?;
        }
        self.auth.own_member(&request, &request.get_ref().group, &request.get_ref().member_id)?;
        let who = principal(&request);
        let req = request.into_inner();
        let member = Some(req.member_id).filter(|m| !m.is_empty());
        let mode = if req.shared { GroupMode::Shared } else { GroupMode::Partitioned };
        let joined = self
            .broker
            .join_group(&req.group, member, &req.client_id, req.topics, req.create_if_missing, mode, &who)
            .await
            .map_err(to_status)?;
        Ok(Response::new(JoinGroupResponse {
            group_id: joined.group_id,
            member_id: joined.member_id,
            assignment: partitions_to_wire(joined.assignment),
            config: Some(config_to_wire(&joined.config)),
        }))
    }

    async fn heartbeat(&self, request: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        self.auth.check(&request, ResourceType::Group, &request.get_ref().group, Operation::Read)?;
        self.auth.own_member(&request, &request.get_ref().group, &request.get_ref().member_id)?;
        let req = request.into_inner();
        let (assignment, interval) = self.broker.heartbeat(&req.group, &req.member_id).await.map_err(to_status)?;
        Ok(Response::new(HeartbeatResponse {
            assignment: partitions_to_wire(assignment),
            heartbeat_interval_ms: interval,
        }))
    }

    async fn leave_group(&self, request: Request<LeaveGroupRequest>) -> Result<Response<LeaveGroupResponse>, Status> {
        self.auth.check(&request, ResourceType::Group, &request.get_ref().group, Operation::Read)?;
        self.auth.own_member(&request, &request.get_ref().group, &request.get_ref().member_id)?;
        let req = request.into_inner();
        self.broker.leave_group(&req.group, &req.member_id).await.map_err(to_status)?;
        Ok(Response::new(LeaveGroupResponse {}))
    }

    async fn release_partitions(
        &self,
        request: Request<ReleasePartitionsRequest>,
    ) -> Result<Response<ReleasePartitionsResponse>, Status> {
        self.auth.check(&request, ResourceType::Group, &request.get_ref().group, Operation::Read)?;
        self.auth.own_member(&request, &request.get_ref().group, &request.get_ref().member_id)?;
        let req = request.into_inner();
        let parts = req.partitions.into_iter().map(|p| (p.topic, p.partition, p.generation)).collect();
        self.broker.release_partitions(&req.group, &req.member_id, parts).await.map_err(to_status)?;
        Ok(Response::new(ReleasePartitionsResponse {}))
    }

    async fn commit_offset(
        &self,
        request: Request<CommitOffsetRequest>,
    ) -> Result<Response<CommitOffsetResponse>, Status> {
        self.auth.check(&request, ResourceType::Group, &request.get_ref().group, Operation::Read)?;
        self.auth.own_member(&request, &request.get_ref().group, &request.get_ref().member_id)?;
        let req = request.into_inner();
        let at =
            GroupPartition { group: &req.group, group_id: req.group_id, topic: &req.topic, partition: req.partition };
        self.broker.commit_offset(at, &req.member_id, req.generation, req.offset).await.map_err(to_status)?;
        Ok(Response::new(CommitOffsetResponse {}))
    }

    async fn fetch_committed(
        &self,
        request: Request<FetchCommittedRequest>,
    ) -> Result<Response<FetchCommittedResponse>, Status> {
        self.auth.check(&request, ResourceType::Group, &request.get_ref().group, Operation::Describe)?;
        let req = request.into_inner();
        let at =
            GroupPartition { group: &req.group, group_id: req.group_id, topic: &req.topic, partition: req.partition };
        let pos = self.broker.fetch_committed(at).await.map_err(to_status)?;
        let committed = pos.committed;
        Ok(Response::new(FetchCommittedResponse {
            has_offset: committed.is_some(),
            offset: committed.map_or(0, |c| c.offset),
            generation: committed.map_or(0, |c| c.generation),
            committed_at_ms: committed.map_or(0, |c| c.committed_at_ms),
            log_start_offset: pos.log_start_offset,
            log_end_offset: pos.log_end_offset,
            shared_settled_below: pos.shared_settled_below,
            shared_leased: pos.shared_leased,
            shared_expired: pos.shared_expired,
            shared_dead_lettered: pos.shared_dead_lettered,
        }))
    }

    async fn share_fetch(&self, request: Request<ShareFetchRequest>) -> Result<Response<ShareFetchResponse>, Status> {
        self.auth.check(&request, ResourceType::Group, &request.get_ref().group, Operation::Read)?;
        self.auth.own_member(&request, &request.get_ref().group, &request.get_ref().member_id)?;
        self.auth.check(&request, ResourceType::Topic, &request.get_ref().topic, Operation::Read)?;
        let who = principal(&request);
        let req = request.into_inner();
        let wait = Duration::from_millis(req.max_wait_ms as u64).min(MAX_SHARE_WAIT);
        let f = self
            .broker
            .share_fetch(&req.group, &req.member_id, &req.topic, req.partition, req.max_records, wait)
            .await
            .map_err(to_status)?;
        let bytes = f.batches.iter().map(|(_, b)| b.len() as u64).sum();
        let throttle_ms = hold(self.throttle.charge(&who, Kind::FetchBytes, bytes)).await;
        Ok(Response::new(ShareFetchResponse {
            throttle_ms,
            batches: f.batches.into_iter().map(|(base_offset, batch)| FetchedBatch { base_offset, batch }).collect(),
            leased: f
                .leased
                .into_iter()
                .map(|l| LeasedRecord {
                    offset: l.offset,
                    delivery_count: l.attempts,
                    dead_letter: l.dead_letter.is_some(),
                    dead_letter_reason: dead_reason_to_wire(l.dead_letter),
                })
                .collect(),
            log_end_offset: f.log_end_offset,
        }))
    }

    async fn share_ack(&self, request: Request<ShareAckRequest>) -> Result<Response<ShareAckResponse>, Status> {
        self.auth.check(&request, ResourceType::Group, &request.get_ref().group, Operation::Read)?;
        self.auth.own_member(&request, &request.get_ref().group, &request.get_ref().member_id)?;
        let req = request.into_inner();
        let acks = req
            .acks
            .iter()
            .map(|a| {
                let how = match AckKind::try_from(a.kind) {
                    Ok(AckKind::Release) => Settle::Release,
                    Ok(AckKind::Reject) => Settle::Reject,
                    _ => Settle::Ack,
                };
                (a.offset, how)
            })
            .collect();
        let settled = self
            .broker
            .share_settle(&req.group, &req.member_id, &req.topic, req.partition, acks)
            .await
            .map_err(to_status)?;
        Ok(Response::new(ShareAckResponse { settled }))
    }
}
