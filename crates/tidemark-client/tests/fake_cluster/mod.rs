//! A fake three-node Tidemark cluster on 127.0.0.1 for testing the SDK against real gRPC
//! without Raft: each node answers from one shared in-memory state, and only the node the
//! state names as leader accepts a partition's produce / fetch (others answer NotLeader,
//! with or without a hint). Tests move leaders and inject failures through `state`.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tidemark_proto::error::status;
use tidemark_proto::v1::admin_server::{Admin, AdminServer};
use tidemark_proto::v1::list_offsets_request::Spec;
use tidemark_proto::v1::tidemark_server::{Tidemark, TidemarkServer};
use tidemark_proto::v1::*;
use tidemark_types::{BatchHeader, BatchLimits, ErrorCode};
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

#[derive(Debug, Default)]
pub struct FakePartition {
    pub leader: u64,
    pub replicas: Vec<u64>,
    pub batches: Vec<(u64, Bytes)>,
    pub next: u64,
    /// Idempotence, simplified: per producer id the batches it wrote here
    /// (base sequence, record count, CRC, base offset).
    pub producers: BTreeMap<i64, Vec<(i32, u32, u32, u64)>>,
}

#[derive(Debug)]
pub struct State {
    pub topics: BTreeMap<String, Vec<FakePartition>>,
    pub metadata_leader: u64,
    /// Whether NotLeader answers carry the leader's address.
    pub hints: bool,
    /// Errors the partition leader returns (before appending) to the next produce calls.
    pub produce_failures: VecDeque<Status>,
    pub produce_calls: u64,
    /// Produce calls that append and then answer Unavailable, as if the answer was lost.
    pub lost_acks: u32,
    /// How long every produce call takes before it is handled, like a slow disk.
    pub produce_delay: std::time::Duration,
    pub limits: BatchLimits,
    pub next_producer_id: i64,
}

pub struct Shared {
    pub state: Mutex<State>,
    pub addrs: Vec<(u64, String)>,
    appended: Notify,
}

impl Shared {
    fn addr(&self, id: u64) -> &str {
        &self.addrs.iter().find(|(i, _)| *i == id).expect("known node").1
    }

    fn not_leader(&self, leader: u64, hints: bool) -> Status {
        let hint = (hints && leader != 0).then(|| (leader, self.addr(leader)));
        status(ErrorCode::NotLeader, "not the leader", hint)
    }

    /// Moves a partition's leadership.
    pub fn set_leader(&self, topic: &str, partition: usize, leader: u64) {
        self.state.lock().unwrap().topics.get_mut(topic).unwrap()[partition].leader = leader;
    }

    /// Creates a topic directly, leaders assigned round robin.
    pub fn add_topic(&self, name: &str, partitions: u32) {
        let parts = (0..partitions)
            .map(|p| FakePartition { leader: p as u64 % 3 + 1, replicas: vec![1, 2, 3], ..Default::default() })
            .collect();
        self.state.lock().unwrap().topics.insert(name.to_string(), parts);
    }

    /// Every record value of a partition, in offset order.
    pub fn values(&self, topic: &str, partition: usize) -> Vec<(u64, Bytes)> {
        let st = self.state.lock().unwrap();
        let mut out = Vec::new();
        for (base, batch) in &st.topics[topic][partition].batches {
            for (i, r) in tidemark_types::decode_records(batch).unwrap().into_iter().enumerate() {
                out.push((base + i as u64, r.value));
            }
        }
        out
    }

    fn describe(&self, name: &str, parts: &[FakePartition]) -> TopicDescription {
        let partitions = parts
            .iter()
            .enumerate()
            .map(|(i, p)| PartitionInfo {
                partition: i as u32,
                leader: p.leader,
                replicas: p.replicas.clone(),
                log_start_offset: 0,
                log_end_offset: p.next,
                retained_bytes: 0,
                in_sync_replicas: p.replicas.clone(),
                moving_to: Vec::new(),
            })
            .collect();
        TopicDescription {
            name: name.to_string(),
            partitions,
            replication_factor: 3,
            config: Some(TopicConfig::default()),
        }
    }
}

#[derive(Clone)]
pub struct FakeNode {
    id: u64,
    shared: Arc<Shared>,
}

/// Starts three nodes; returns the shared state (node i is `shared.addrs[i - 1]`).
pub async fn start() -> Arc<Shared> {
    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for id in 1..=3u64 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push((id, l.local_addr().unwrap().to_string()));
        listeners.push(l);
    }
    let state = State {
        topics: BTreeMap::new(),
        metadata_leader: 1,
        hints: true,
        produce_failures: VecDeque::new(),
        produce_calls: 0,
        lost_acks: 0,
        produce_delay: std::time::Duration::ZERO,
        limits: BatchLimits::default(),
        next_producer_id: 0,
    };
    let shared = Arc::new(Shared { state: Mutex::new(state), addrs, appended: Notify::new() });
    for (i, listener) in listeners.into_iter().enumerate() {
        let node = FakeNode { id: i as u64 + 1, shared: shared.clone() };
        let incoming = futures::stream::unfold(listener, |l| async move {
            let conn = l.accept().await.map(|(s, _)| s);
            Some((conn, l))
        });
        let server = tonic::transport::Server::builder()
            .add_service(TidemarkServer::new(node.clone()))
            .add_service(AdminServer::new(node))
            .serve_with_incoming(incoming);
        tokio::spawn(server);
    }
    shared
}

type FetchStream = Pin<Box<dyn Stream<Item = Result<FetchResponse, Status>> + Send>>;

impl FakeNode {
    /// Checks this node leads the partition; returns the partition's data under the lock.
    fn lead<'a>(&self, st: &'a mut State, topic: &str, partition: u32) -> Result<&'a mut FakePartition, Status> {
        let hints = st.hints;
        let parts = st.topics.get_mut(topic).ok_or_else(|| status(ErrorCode::UnknownTopic, "no such topic", None))?;
        let p = parts
            .get_mut(partition as usize)
            .ok_or_else(|| status(ErrorCode::UnknownPartition, "no such partition", None))?;
        if p.leader != self.id {
            return Err(self.shared.not_leader(p.leader, hints));
        }
        Ok(p)
    }

    fn metadata_leader_only(&self) -> Result<(), Status> {
        let st = self.shared.state.lock().unwrap();
        if st.metadata_leader != self.id {
            return Err(self.shared.not_leader(st.metadata_leader, st.hints));
        }
        Ok(())
    }
}

/// The server's idempotence rules, minus epochs and expiry: a repeat gets its original
/// offsets, anything but the next sequence is out of order.
fn check_sequence(p: &FakePartition, h: &BatchHeader) -> Result<Option<ProduceResponse>, Status> {
    let Some(written) = p.producers.get(&h.producer_id).filter(|_| h.producer_id >= 0) else {
        return Ok(None);
    };
    let same = |w: &&(i32, u32, u32, u64)| (w.0, w.1, w.2) == (h.base_sequence, h.record_count, h.crc);
    if let Some(w) = written.iter().find(same) {
        return Ok(Some(ProduceResponse { base_offset: w.3, last_offset: w.3 + w.1 as u64 - 1, throttle_ms: 0 }));
    }
    let expected = written.last().map_or(0, |w| w.0 + w.1 as i32);
    if h.base_sequence != expected {
        let s = status(ErrorCode::OutOfOrderSequence, format!("expected sequence {expected}"), None);
        return Err(tidemark_proto::error::with_expected_sequence(s, expected));
    }
    Ok(None)
}

#[tonic::async_trait]
impl Tidemark for FakeNode {
    async fn produce(&self, request: Request<ProduceRequest>) -> Result<Response<ProduceResponse>, Status> {
        let req = request.into_inner();
        let delay = self.shared.state.lock().unwrap().produce_delay;
        tokio::time::sleep(delay).await;
        let mut st = self.shared.state.lock().unwrap();
        st.produce_calls += 1;
        let limits = st.limits;
        let failure = st.produce_failures.pop_front();
        let p = self.lead(&mut st, &req.topic, req.partition)?;
        if let Some(f) = failure {
            return Err(f);
        }
        let header = BatchHeader::validate(&req.batch, &limits).map_err(|e| {
            let code = match e {
                tidemark_types::BatchError::RecordTooLarge { .. } => ErrorCode::RecordTooLarge,
                tidemark_types::BatchError::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
                _ => ErrorCode::CorruptBatch,
            };
            status(code, e.to_string(), None)
        })?;
        if let Some(dup) = check_sequence(p, &header)? {
            return Ok(Response::new(dup));
        }
        let base = p.next;
        p.next += header.record_count as u64;
        p.batches.push((base, req.batch));
        if header.producer_id >= 0 {
            let written = (header.base_sequence, header.record_count, header.crc, base);
            p.producers.entry(header.producer_id).or_default().push(written);
        }
        let last = p.next - 1;
        let lost = st.lost_acks > 0;
        st.lost_acks = st.lost_acks.saturating_sub(1);
        drop(st);
        if lost {
            self.shared.appended.notify_waiters();
            return Err(status(ErrorCode::Unavailable, "the answer was lost", None));
        }
        self.shared.appended.notify_waiters();
        Ok(Response::new(ProduceResponse { base_offset: base, last_offset: last, throttle_ms: 0 }))
    }

    async fn fetch(&self, request: Request<FetchRequest>) -> Result<Response<FetchResponse>, Status> {
        let req = request.into_inner();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms as u64);
        loop {
            let notified = self.shared.appended.notified();
            {
                let mut st = self.shared.state.lock().unwrap();
                let p = self.lead(&mut st, &req.topic, req.partition)?;
                if req.offset > p.next {
                    return Err(status(ErrorCode::OffsetOutOfRange, "offset beyond the log end", None));
                }
                let batches: Vec<FetchedBatch> = p
                    .batches
                    .iter()
                    .filter(|(base, b)| base + BatchHeader::read(b).unwrap().record_count as u64 > req.offset)
                    .take(3)
                    .map(|(base, b)| FetchedBatch { base_offset: *base, batch: b.clone() })
                    .collect();
                if !batches.is_empty() || tokio::time::Instant::now() >= deadline {
                    let next = p.next;
                    return Ok(Response::new(FetchResponse { batches, log_end_offset: next, ..Default::default() }));
                }
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    type SubscribeStream = FetchStream;

    async fn subscribe(&self, _: Request<FetchRequest>) -> Result<Response<FetchStream>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn list_offsets(
        &self,
        request: Request<ListOffsetsRequest>,
    ) -> Result<Response<ListOffsetsResponse>, Status> {
        let req = request.into_inner();
        let mut st = self.shared.state.lock().unwrap();
        let p = self.lead(&mut st, &req.topic, req.partition)?;
        let offset = match req.spec {
            Some(Spec::Latest(_)) | None => p.next,
            Some(Spec::Earliest(_)) | Some(Spec::TimestampMs(_)) => 0,
        };
        Ok(Response::new(ListOffsetsResponse {
            offset,
            log_start_offset: 0,
            log_end_offset: p.next,
            leader: self.id,
            retained_bytes: 0,
            in_sync_replicas: Vec::new(),
        }))
    }

    async fn metadata(&self, _: Request<MetadataRequest>) -> Result<Response<MetadataResponse>, Status> {
        let st = self.shared.state.lock().unwrap();
        let nodes = self
            .shared
            .addrs
            .iter()
            .map(|(id, a)| NodeInfo { id: *id, address: a.clone(), alive: true, ..Default::default() })
            .collect();
        let topics = st.topics.iter().map(|(n, p)| self.shared.describe(n, p)).collect();
        Ok(Response::new(MetadataResponse { nodes, topics, metadata_leader: st.metadata_leader }))
    }
}

#[tonic::async_trait]
impl Admin for FakeNode {
    async fn create_topic(
        &self,
        request: Request<CreateTopicRequest>,
    ) -> Result<Response<CreateTopicResponse>, Status> {
        self.metadata_leader_only()?;
        let req = request.into_inner();
        let mut st = self.shared.state.lock().unwrap();
        if st.topics.contains_key(&req.name) {
            return Err(status(ErrorCode::TopicExists, "topic exists", None));
        }
        // Leaders appear a moment later, as partition groups elect.
        let parts =
            (0..req.partitions).map(|_| FakePartition { replicas: vec![1, 2, 3], ..Default::default() }).collect();
        st.topics.insert(req.name.clone(), parts);
        let topic = self.shared.describe(&req.name, &st.topics[&req.name]);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut st = shared.state.lock().unwrap();
            for (i, p) in st.topics.get_mut(&req.name).unwrap().iter_mut().enumerate() {
                p.leader = i as u64 % 3 + 1;
            }
        });
        Ok(Response::new(CreateTopicResponse { topic: Some(topic) }))
    }

    async fn alter_topic(&self, _: Request<AlterTopicRequest>) -> Result<Response<TopicDescription>, Status> {
        Err(Status::unimplemented("the fake cluster does not alter topics"))
    }

    async fn add_node(&self, _: Request<AddNodeRequest>) -> Result<Response<AddNodeResponse>, Status> {
        Err(Status::unimplemented("the fake cluster has a fixed membership"))
    }

    async fn reassign_partition(
        &self,
        _: Request<ReassignPartitionRequest>,
    ) -> Result<Response<TopicDescription>, Status> {
        Err(Status::unimplemented("the fake cluster does not move partitions"))
    }

    async fn remove_node(&self, _: Request<RemoveNodeRequest>) -> Result<Response<RemoveNodeResponse>, Status> {
        Err(Status::unimplemented("the fake cluster has a fixed membership"))
    }

    async fn add_acl(&self, _: Request<AclBinding>) -> Result<Response<AddAclResponse>, Status> {
        Err(Status::unimplemented("the fake cluster has no ACLs"))
    }

    async fn remove_acl(&self, _: Request<AclBinding>) -> Result<Response<RemoveAclResponse>, Status> {
        Err(Status::unimplemented("the fake cluster has no ACLs"))
    }

    async fn list_acls(&self, _: Request<ListAclsRequest>) -> Result<Response<ListAclsResponse>, Status> {
        Err(Status::unimplemented("the fake cluster has no ACLs"))
    }

    async fn set_quota(&self, _: Request<SetQuotaRequest>) -> Result<Response<SetQuotaResponse>, Status> {
        Err(Status::unimplemented("the fake cluster has no quotas"))
    }

    async fn list_quotas(&self, _: Request<ListQuotasRequest>) -> Result<Response<ListQuotasResponse>, Status> {
        Err(Status::unimplemented("the fake cluster has no quotas"))
    }

    async fn list_topics(&self, _: Request<ListTopicsRequest>) -> Result<Response<ListTopicsResponse>, Status> {
        let names = self.shared.state.lock().unwrap().topics.keys().cloned().collect();
        Ok(Response::new(ListTopicsResponse { names }))
    }

    async fn describe_topic(
        &self,
        request: Request<DescribeTopicRequest>,
    ) -> Result<Response<TopicDescription>, Status> {
        let name = request.into_inner().name;
        let st = self.shared.state.lock().unwrap();
        let parts = st.topics.get(&name).ok_or_else(|| status(ErrorCode::UnknownTopic, "no such topic", None))?;
        Ok(Response::new(self.shared.describe(&name, parts)))
    }

    async fn delete_topic(
        &self,
        request: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        self.metadata_leader_only()?;
        let name = request.into_inner().name;
        match self.shared.state.lock().unwrap().topics.remove(&name) {
            Some(_) => Ok(Response::new(DeleteTopicResponse {})),
            None => Err(status(ErrorCode::UnknownTopic, "no such topic", None)),
        }
    }

    async fn cluster_status(
        &self,
        _: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        let st = self.shared.state.lock().unwrap();
        let nodes = self
            .shared
            .addrs
            .iter()
            .map(|(id, a)| NodeInfo { id: *id, address: a.clone(), alive: true, ..Default::default() })
            .collect();
        Ok(Response::new(ClusterStatusResponse { nodes, metadata_leader: st.metadata_leader }))
    }

    async fn init_producer(&self, _: Request<InitProducerRequest>) -> Result<Response<InitProducerResponse>, Status> {
        self.metadata_leader_only()?;
        let mut st = self.shared.state.lock().unwrap();
        st.next_producer_id += 1;
        Ok(Response::new(InitProducerResponse { producer_id: st.next_producer_id - 1, epoch: 0 }))
    }
}
