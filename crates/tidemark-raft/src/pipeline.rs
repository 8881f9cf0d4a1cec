//! Pipelined replication: one long-lived gRPC stream per (group, follower) carries
//! AppendEntries requests as fast as the leader's log grows, and the follower answers each
//! in order (openraft's `Raft::stream_append`).
//!
//! With one request-response call at a time (openraft's default), an entry that arrives
//! while a call is out waits for that call's whole round trip, follower fsync included,
//! before it is even sent. That wait was the tail of the ack latency and the cap on how
//! many batches a follower can take per second.
//!
//! ```text
//!  leader                                     follower
//!  AE(1..3) ──┐                            ┌─> append, fsync ─> Ok(3) ──┐
//!  AE(4)    ──┼── one HTTP/2 stream ──────>┼─> append, fsync ─> Ok(4) ──┼──> in order
//!  AE(5..9) ──┘   (shared connection)      └─> append, fsync ─> Ok(9) ──┘
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{RPCError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use tidemark_proto::v1::raft_transport_client::RaftTransportClient;
use tidemark_proto::v1::{RaftRequest, RaftRpc};
use tidemark_types::{GroupId, NodeId};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::transport::GroupRegistry;
use crate::types::TypeConfig;

type Reply = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;

#[derive(Debug, thiserror::Error)]
#[error("raft append stream to node {target}: {message}")]
struct StreamError {
    target: NodeId,
    message: String,
}

/// Requests sent and not yet answered, and since when the oldest of them has waited
/// without any answer arriving.
struct Outstanding {
    count: AtomicU64,
    since: Mutex<Instant>,
}

impl Outstanding {
    fn sent(&self) {
        if self.count.fetch_add(1, Ordering::AcqRel) == 0 {
            *self.since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
    }

    fn answered(&self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        *self.since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Whether requests are waiting and nothing was answered for `ttl`: the follower is
    /// gone or stuck, and openraft should back off and start a new stream.
    fn stalled(&self, ttl: Duration) -> bool {
        self.count.load(Ordering::Acquire) > 0 && self.since.lock().unwrap_or_else(|e| e.into_inner()).elapsed() >= ttl
    }
}

/// The client half: streams `input` to `target` for `group` and yields its answers.
/// Every failure is reported as "unreachable", as for the other RPCs, so openraft backs
/// off and opens a new stream from what was acknowledged.
pub(crate) fn open<'s, S>(
    channel: Result<Channel, String>,
    pool: Arc<crate::network::PeerPool>,
    group: GroupId,
    target: NodeId,
    input: S,
    option: RPCOption,
) -> BoxFuture<'s, Result<BoxStream<'s, Reply>, RPCError<TypeConfig>>>
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    let err = move |message: String| RPCError::Unreachable(Unreachable::new(&StreamError { target, message }));
    Box::pin(async move {
        let channel = channel.map_err(err)?;
        // Take the first request before connecting: producing it is where openraft waits
        // out its backoff, so a follower that refuses connections is retried at the
        // backoff's pace rather than in a tight loop (seen: two cores spinning on
        // connection attempts to a stopped node).
        let mut input = input;
        let Some(first) = input.next().await else {
            return Ok(Box::pin(futures::stream::empty()) as BoxStream<'s, Reply>);
        };
        let input = futures::stream::iter([first]).chain(input);
        let outstanding = Arc::new(Outstanding { count: AtomicU64::new(0), since: Mutex::new(Instant::now()) });
        let counter = outstanding.clone();
        let stamp = pool.clone();
        let requests = input
            .map(move |req| match bincode::serialize(&req) {
                Ok(payload) => {
                    counter.sent();
                    Some(stamp.request(group, RaftRpc::Append, payload))
                }
                Err(e) => {
                    tracing::error!(group, target, error = %e, "cannot encode an AppendEntries request; ending the stream");
                    None
                }
            })
            .take_while(|r| std::future::ready(r.is_some()))
            .filter_map(std::future::ready);
        let mut client =
            RaftTransportClient::new(channel).max_decoding_message_size(256 << 20).max_encoding_message_size(256 << 20);
        let ttl = option.hard_ttl();
        let opened = tokio::time::timeout(ttl, client.append_stream(requests)).await;
        let replies =
            pool.observe(target, opened.map_err(|_| format!("not opened within {ttl:?}"))).map_err(err)?.into_inner();
        let answers = futures::stream::unfold(Some(replies), move |state| {
            let outstanding = outstanding.clone();
            async move {
                let mut replies = state?;
                loop {
                    let next = match tokio::time::timeout(ttl, replies.message()).await {
                        Ok(next) => next,
                        Err(_) if outstanding.stalled(ttl) => {
                            return Some((Err(err(format!("no answer within {ttl:?}"))), None));
                        }
                        Err(_) => continue,
                    };
                    return match next {
                        Ok(Some(reply)) => {
                            outstanding.answered();
                            match crate::codec::decode::<StreamAppendResult<TypeConfig>>(&reply.payload) {
                                Ok(result) => Some((Ok(result), Some(replies))),
                                Err(e) => Some((Err(err(format!("undecodable answer: {e}"))), None)),
                            }
                        }
                        Ok(None) => None,
                        Err(s) => Some((Err(err(format!("{}: {}", s.code(), s.message()))), None)),
                    };
                }
            }
        });
        Ok(Box::pin(answers) as BoxStream<'s, Reply>)
    })
}

/// The server half: feeds one inbound stream to the named group and encodes its answers.
/// The first request names the group; a request for another group, an undecodable one,
/// a broken inbound stream or this node stopping ends the input (the answers to what
/// came before still go out), and the leader opens a new stream.
pub fn serve<S>(registry: Arc<GroupRegistry>, inbound: S) -> BoxStream<'static, Result<Vec<u8>, String>>
where
    S: Stream<Item = Result<RaftRequest, String>> + Send + Unpin + 'static,
{
    let setup = async move {
        let mut inbound = inbound;
        let first = match inbound.next().await {
            Some(Ok(first)) => first,
            Some(Err(e)) => return futures::stream::iter([Err(e)]).boxed(),
            None => return futures::stream::empty().boxed(),
        };
        let group = first.group;
        let Some(raft) = registry.get(group) else {
            let e = format!("group {group:#x} is not hosted on this node (yet)");
            return futures::stream::iter([Err(e)]).boxed();
        };
        let closed = async move { registry.closed().await };
        let requests = futures::stream::iter([Ok(first)])
            .chain(inbound)
            .take_until(closed)
            .map(move |r| {
                let req = r?;
                if req.group != group || req.rpc != RaftRpc::Append as i32 {
                    return Err(format!(
                        "an append stream for group {group:#x} got rpc {} for {:#x}",
                        req.rpc, req.group
                    ));
                }
                crate::codec::decode::<AppendEntriesRequest<TypeConfig>>(&req.payload)
                    .map_err(|e| format!("undecodable AppendEntries: {e}"))
            })
            .take_while(move |r| {
                if let Err(e) = r {
                    tracing::warn!(group, error = %e, "ending an inbound append stream");
                }
                std::future::ready(r.is_ok())
            })
            .filter_map(|r| std::future::ready(r.ok()));
        raft.stream_append(requests)
            .map(|r| match r {
                Ok(result) => bincode::serialize(&result).map_err(|e| format!("unencodable answer: {e}")),
                Err(fatal) => Err(format!("raft group stopped: {fatal}")),
            })
            .boxed()
    };
    futures::stream::once(setup).flatten().boxed()
}
