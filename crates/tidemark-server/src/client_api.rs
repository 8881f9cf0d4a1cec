//! The public `Tidemark` service: produce, fetch, subscribe, offsets and metadata.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tidemark_broker::{Broker, OffsetSpec, Operation, ResourceType};
use tidemark_proto::v1::list_offsets_request::Spec;
use tidemark_proto::v1::tidemark_server::Tidemark;
use tidemark_proto::v1::*;
use tonic::{Request, Response, Status};

use crate::auth::{principal, Auth};
use crate::describe::Describer;
use crate::quota::{hold, Kind, Throttle};
use crate::status::to_status;

/// Fetches wait at most this long, whatever the client asks, so a request never pins a
/// server task indefinitely.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Default and ceiling for a fetch's size.
const DEFAULT_FETCH_BYTES: usize = 1 << 20;
const MAX_FETCH_BYTES: usize = 32 << 20;

pub struct ClientApi {
    pub broker: Arc<Broker>,
    pub auth: Auth,
    pub throttle: Throttle,
    pub describer: Describer,
    pub metrics: Arc<crate::metrics::Metrics>,
}

fn fetch_limits(req: &FetchRequest) -> (usize, Duration) {
    let bytes = match req.max_bytes as usize {
        0 => DEFAULT_FETCH_BYTES,
        n => n.min(MAX_FETCH_BYTES),
    };
    (bytes, Duration::from_millis(req.max_wait_ms as u64).min(MAX_WAIT))
}

fn to_response(r: tidemark_broker::FetchResult) -> FetchResponse {
    FetchResponse {
        throttle_ms: 0,
        batches: r.batches.into_iter().map(|(base_offset, batch)| FetchedBatch { base_offset, batch }).collect(),
        log_end_offset: r.log_end_offset,
        log_start_offset: r.log_start_offset,
    }
}

type FetchStream = Pin<Box<dyn Stream<Item = Result<FetchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Tidemark for ClientApi {
    async fn produce(&self, request: Request<ProduceRequest>) -> Result<Response<ProduceResponse>, Status> {
        self.auth.check(&request, ResourceType::Topic, &request.get_ref().topic, Operation::Write)?;
        let who = principal(&request);
        let (req, started) = (request.into_inner(), tokio::time::Instant::now());
        let bytes = req.batch.len() as u64;
        let produced = self.broker.produce(&req.topic, req.partition, req.batch).await.map_err(to_status);
        let records = produced.as_ref().map(|(base, last)| (last + 1 - base, bytes));
        self.metrics.observe("produce", started, records);
        let throttle_ms = hold(self.throttle.charge(&who, Kind::ProduceBytes, bytes)).await;
        let (base_offset, last_offset) = produced?;
        Ok(Response::new(ProduceResponse { base_offset, last_offset, throttle_ms }))
    }

    async fn fetch(&self, request: Request<FetchRequest>) -> Result<Response<FetchResponse>, Status> {
        self.auth.check(&request, ResourceType::Topic, &request.get_ref().topic, Operation::Read)?;
        let who = principal(&request);
        let (req, started) = (request.into_inner(), tokio::time::Instant::now());
        let (max_bytes, wait) = fetch_limits(&req);
        let fetched =
            self.broker.fetch(&req.topic, req.partition, req.offset, max_bytes, wait).await.map_err(to_status);
        self.metrics.observe("fetch", started, fetched.as_ref().map(size));
        let bytes = fetched.as_ref().map_or(0, |f| size(f).1);
        let throttle_ms = hold(self.throttle.charge(&who, Kind::FetchBytes, bytes)).await;
        Ok(Response::new(FetchResponse { throttle_ms, ..to_response(fetched?) }))
    }

    type SubscribeStream = FetchStream;

    /// Streams batches as they commit. Each step is a long-poll fetch; the stream ends
    /// with the error when the partition moves away (the client resubscribes elsewhere).
    async fn subscribe(&self, request: Request<FetchRequest>) -> Result<Response<FetchStream>, Status> {
        self.auth.check(&request, ResourceType::Topic, &request.get_ref().topic, Operation::Read)?;
        let who = principal(&request);
        let req = request.into_inner();
        let (max_bytes, _) = fetch_limits(&req);
        // Fail fast (NotLeader, unknown topic) before the stream starts.
        self.broker.read_replica(&req.topic, req.partition).await.map_err(to_status)?;
        let broker = self.broker.clone();
        let state = Some((broker, req.offset));
        let (metrics, throttle) = (self.metrics.clone(), self.throttle.clone());
        let stream = futures::stream::unfold(state, move |state| {
            let topic = req.topic.clone();
            let partition = req.partition;
            let (metrics, throttle, who) = (metrics.clone(), throttle.clone(), who.clone());
            async move {
                let (broker, mut offset) = state?;
                loop {
                    match broker.fetch(&topic, partition, offset, max_bytes, Duration::from_secs(1)).await {
                        Ok(r) if r.batches.is_empty() => continue,
                        Ok(r) => {
                            // Only what is sent counts; the wait for new records does not.
                            metrics.observe("subscribe", tokio::time::Instant::now(), Ok(size(&r)));
                            offset = r.log_end_offset.min(next_offset(&r).unwrap_or(offset));
                            let throttle_ms = hold(throttle.charge(&who, Kind::FetchBytes, size(&r).1)).await;
                            let answer = FetchResponse { throttle_ms, ..to_response(r) };
                            return Some((Ok(answer), Some((broker, offset))));
                        }
                        Err(e) => return Some((Err(to_status(e)), None)),
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_offsets(
        &self,
        request: Request<ListOffsetsRequest>,
    ) -> Result<Response<ListOffsetsResponse>, Status> {
        self.auth.check(&request, ResourceType::Topic, &request.get_ref().topic, Operation::Describe)?;
        hold(self.throttle.charge(&principal(&request), Kind::Requests, 0)).await;
        let req = request.into_inner();
        let spec = match req.spec {
            Some(Spec::Earliest(_)) => OffsetSpec::Earliest,
            Some(Spec::Latest(_)) | None => OffsetSpec::Latest,
            Some(Spec::TimestampMs(ts)) => OffsetSpec::Timestamp(ts),
        };
        let (offset, start, end) =
            self.broker.list_offsets(&req.topic, req.partition, spec).await.map_err(to_status)?;
        let leader = self.broker.node_id();
        let group = self.broker.topic(&req.topic).map_err(to_status)?.group(req.partition);
        let retained_bytes = self.broker.partition_offsets(group).map_or(0, |o| o.3);
        let in_sync_replicas = self.broker.in_sync_replicas(group).unwrap_or_default();
        Ok(Response::new(ListOffsetsResponse {
            offset,
            log_start_offset: start,
            log_end_offset: end,
            leader,
            retained_bytes,
            in_sync_replicas,
        }))
    }

    /// Lists only the topics the caller may describe; naming one it may not is refused.
    async fn metadata(&self, request: Request<MetadataRequest>) -> Result<Response<MetadataResponse>, Status> {
        self.auth.authenticated(&request)?;
        hold(self.throttle.charge(&principal(&request), Kind::Requests, 0)).await;
        for wanted in &request.get_ref().topics {
            self.auth.check(&request, ResourceType::Topic, wanted, Operation::Describe)?;
        }
        let visible = |name: &str| self.auth.may(&request, ResourceType::Topic, name, Operation::Describe);
        let mut topics = Vec::new();
        let wanted = &request.get_ref().topics;
        for t in self.broker.list_topics().map_err(to_status)? {
            let asked =
                if wanted.is_empty() { visible(t.name.as_str()) } else { wanted.iter().any(|n| n == t.name.as_str()) };
            if asked {
                topics.push(self.describer.describe(&t).await);
            }
        }
        let req = request.into_inner();
        for wanted in &req.topics {
            if !topics.iter().any(|t| &t.name == wanted) {
                return Err(to_status(tidemark_broker::BrokerError::UnknownTopic { topic: wanted.clone() }));
            }
        }
        let (statuses, leader) = match self.broker.cluster_status() {
            Ok(view) => (view.nodes, view.metadata_leader),
            // A follower still knows the nodes; liveness is the leader's to say.
            Err(_) => (self.broker.node_statuses(|_| true), self.broker.metadata_leader()),
        };
        // Clients can use only nodes whose client address is known.
        let nodes = statuses.into_iter().filter(|n| !n.address.is_empty()).map(crate::status::node_info).collect();
        Ok(Response::new(MetadataResponse { nodes, topics, metadata_leader: leader.unwrap_or(0) }))
    }
}

/// (records, bytes) of a fetch answer, for the metrics.
fn size(r: &tidemark_broker::FetchResult) -> (u64, u64) {
    let first = r.batches.first().map_or(0, |(base, _)| *base);
    let records = next_offset(r).map_or(0, |end| end.saturating_sub(first));
    (records, r.batches.iter().map(|(_, b)| b.len() as u64).sum())
}

/// The offset after the last record of a fetch response.
fn next_offset(r: &tidemark_broker::FetchResult) -> Option<u64> {
    let (base, batch) = r.batches.last()?;
    let h = tidemark_types::BatchHeader::read(batch).ok()?;
    Some(base + h.record_count as u64)
}
