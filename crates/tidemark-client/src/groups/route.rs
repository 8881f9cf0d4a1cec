//! RPCs of the `Groups` service: those for the metadata leader go through
//! [`Admin`]'s leader-following call; commits and committed-offset reads go to the
//! partition's leader, following leader changes like the consumer's fetches do.

use std::future::Future;

use tidemark_proto::v1::{self, groups_client::GroupsClient};
use tidemark_types::PartitionId;
use tonic::transport::Channel;

use crate::admin::Admin;
use crate::client::Client;
use crate::error::{ClientError, Result};

/// One `Groups` RPC to the leader of `topic/partition` (see [`Client::partition_rpc`]).
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
    client.partition_rpc(topic, partition, what, |ch| call(GroupsClient::new(ch))).await
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
