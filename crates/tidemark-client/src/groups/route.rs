//! RPCs of the `Groups` service: those for the metadata leader go through
//! [`Admin`]'s leader-following call; commits and committed-offset reads go to the
//! partition's leader, following leader changes like the consumer's fetches do.

use std::future::Future;

use tidemark_proto::v1::{self, groups_client::GroupsClient};
use tidemark_types::PartitionId;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::admin::Admin;
use crate::client::Client;
use crate::error::{ClientError, Result};

/// One RPC to the leader of `topic/partition`, retried (leader hints, refreshes, backoff)
/// for up to `operation_timeout`.
pub(crate) async fn partition_call<T, F, Fut>(
    client: &Client,
    topic: &str,
    partition: PartitionId,
    what: &str,
    mut call: F,
) -> Result<T>
where
    F: FnMut(GroupsClient<Channel>) -> Fut,
    Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
{
    let cfg = client.config().clone();
    let start = Instant::now();
    let mut backoff = client.backoff(partition as u64 ^ 0x9e37);
    let mut attempt = 0u32;
    loop {
        let res = async {
            let (_, addr) = client.resolve_partition_target(topic, partition, attempt).await?;
            client.rpc(&addr, cfg.request_timeout, |ch| call(GroupsClient::new(ch))).await
        }
        .await;
        let err = match res {
            Ok(resp) => return Ok(resp),
            Err(e) => e,
        };
        let refresh = client.note_partition_error(topic, partition, &err);
        let elapsed = start.elapsed();
        let retriable = if err.is_unknown_topic() { elapsed < cfg.unknown_topic_timeout } else { err.is_retriable() };
        if !retriable || client.unreachable_for_too_long(start, &err) {
            return Err(err);
        }
        if elapsed >= cfg.operation_timeout {
            return Err(ClientError::timeout(format!("{what} on {topic}/{partition}"), elapsed, Some(err)));
        }
        if refresh {
            let _ = client.refresh_metadata().await;
        }
        if err.leader_hint().is_none() {
            attempt = attempt.wrapping_add(1);
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
}

/// Where a commit or committed-offset read is aimed.
#[derive(Debug, Clone)]
pub(crate) struct OffsetTarget<'a> {
    pub group: &'a str,
    pub group_id: u64,
    pub topic: &'a str,
    pub partition: PartitionId,
}

/// Commits `offset` (the next to read) for `member` under `generation`; an empty member
/// is an administrative reset.
pub(crate) async fn commit_offset(
    client: &Client,
    at: &OffsetTarget<'_>,
    member: &str,
    generation: u64,
    offset: u64,
) -> Result<()> {
    let req = v1::CommitOffsetRequest {
        group: at.group.to_string(),
        group_id: at.group_id,
        member_id: member.to_string(),
        generation,
        topic: at.topic.to_string(),
        partition: at.partition,
        offset,
    };
    partition_call(client, at.topic, at.partition, "committing an offset", |mut c| {
        let req = req.clone();
        async move { c.commit_offset(req).await }
    })
    .await
    .map(|_| ())
}

/// The committed offset (if any) and the partition's log start and end.
pub(crate) async fn fetch_committed(client: &Client, at: &OffsetTarget<'_>) -> Result<v1::FetchCommittedResponse> {
    let req = v1::FetchCommittedRequest {
        group: at.group.to_string(),
        group_id: at.group_id,
        topic: at.topic.to_string(),
        partition: at.partition,
    };
    partition_call(client, at.topic, at.partition, "reading the committed offset", |mut c| {
        let req = req.clone();
        async move { c.fetch_committed(req).await }
    })
    .await
}

impl Admin {
    /// A `Groups` RPC on the metadata leader. The error side says whether an earlier
    /// attempt may have been applied (its answer was lost).
    pub(crate) async fn groups_call<T, F, Fut>(
        &self,
        what: &str,
        mut rpc: F,
    ) -> std::result::Result<T, (ClientError, bool)>
    where
        F: FnMut(GroupsClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_channel(what, |ch| rpc(GroupsClient::new(ch))).await
    }
}
