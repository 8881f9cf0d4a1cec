//! The consumer's RPCs and the decoding of fetched batches.

use std::sync::Arc;

use tidemark_proto::v1::{self, list_offsets_request::Spec};
use tidemark_types::{decode_records, BatchHeader, BatchLimits, PartitionId};

use crate::client::Client;
use crate::config::ConsumerConfig;
use crate::consumer::ConsumerRecord;
use crate::error::{ClientError, Result};

/// The answer to one fetch, tagged with what was asked so a stale answer is recognised.
pub(super) struct FetchOutcome {
    pub partition: PartitionId,
    pub offset: u64,
    pub result: Result<v1::FetchResponse>,
}

/// One long-poll fetch from the partition's leader.
pub(super) async fn fetch_once(
    client: Client,
    topic: Arc<str>,
    partition: PartitionId,
    offset: u64,
    attempt: u32,
    config: ConsumerConfig,
) -> FetchOutcome {
    let result = async {
        let (_, addr) = client.resolve_partition_target(&topic, partition, attempt).await?;
        let req = v1::FetchRequest {
            topic: topic.to_string(),
            partition,
            offset,
            max_bytes: config.max_bytes,
            max_wait_ms: config.max_wait.as_millis().min(u32::MAX as u128) as u32,
        };
        // The server may hold the request for max_wait before answering.
        let timeout = client.config().request_timeout + config.max_wait;
        let call = |ch| {
            let mut c = client.data_client(ch);
            async move { c.fetch(req).await }
        };
        client.rpc(&addr, timeout, call).await
    }
    .await;
    FetchOutcome { partition, offset, result }
}

/// ListOffsets against the partition's leader, following leader changes and retrying
/// retriable errors for up to `operation_timeout`.
pub(crate) async fn list_offsets(
    client: &Client,
    topic: &str,
    partition: PartitionId,
    spec: Spec,
) -> Result<v1::ListOffsetsResponse> {
    let req = v1::ListOffsetsRequest { topic: topic.to_string(), partition, spec: Some(spec) };
    let call = |ch| {
        let (mut c, req) = (client.data_client(ch), req.clone());
        async move { c.list_offsets(req).await }
    };
    client.partition_rpc(topic, partition, "finding offsets", call).await
}

/// Turns fetched batches into records from `position` on, checking each batch's CRC.
/// A batch may start before `position` (the server returns whole batches): its earlier
/// records are skipped. Returns the records and the new position.
pub(crate) fn records_from_fetch(
    topic: &Arc<str>,
    partition: PartitionId,
    mut position: u64,
    batches: &[v1::FetchedBatch],
) -> Result<(Vec<ConsumerRecord>, u64)> {
    let limits = BatchLimits { max_batch_bytes: usize::MAX, max_record_bytes: usize::MAX };
    let mut out = Vec::new();
    for b in batches {
        let corrupt = |e: tidemark_types::BatchError| {
            ClientError::Protocol(format!("corrupt batch at offset {} of {topic}/{partition}: {e}", b.base_offset))
        };
        BatchHeader::validate(&b.batch, &limits).map_err(corrupt)?;
        for (i, r) in decode_records(&b.batch).map_err(corrupt)?.into_iter().enumerate() {
            let offset = b.base_offset + i as u64;
            if offset < position {
                continue;
            }
            out.push(ConsumerRecord {
                topic: topic.clone(),
                partition,
                offset,
                key: r.key,
                value: r.value,
                headers: r.headers,
                timestamp_ms: r.timestamp_ms,
            });
            position = offset + 1;
        }
    }
    Ok((out, position))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tidemark_types::{Record, RecordBatchBuilder};

    fn batch(base: u64, values: &[&str]) -> v1::FetchedBatch {
        let mut b = RecordBatchBuilder::new();
        for v in values {
            b.push(Record { key: None, value: Bytes::copy_from_slice(v.as_bytes()), headers: vec![], timestamp_ms: 7 });
        }
        v1::FetchedBatch { base_offset: base, batch: b.build(None) }
    }

    #[test]
    fn skips_records_before_the_position() {
        let topic: Arc<str> = Arc::from("t");
        let batches = [batch(10, &["a", "b", "c"]), batch(13, &["d"])];
        let (recs, next) = records_from_fetch(&topic, 2, 12, &batches).unwrap();
        let got: Vec<(u64, &[u8])> = recs.iter().map(|r| (r.offset, &r.value[..])).collect();
        assert_eq!(got, vec![(12, &b"c"[..]), (13, &b"d"[..])]);
        assert_eq!(next, 14);
        assert!(recs.iter().all(|r| r.partition == 2 && r.timestamp_ms == 7 && r.key.is_none()));
    }

    #[test]
    fn empty_fetch_keeps_the_position() {
        let topic: Arc<str> = Arc::from("t");
        assert_eq!(records_from_fetch(&topic, 0, 5, &[]).unwrap().1, 5);
    }

    #[test]
    fn corrupt_batch_is_an_error_naming_where() {
        let topic: Arc<str> = Arc::from("t");
        let mut b = batch(3, &["x"]);
        let mut bytes = b.batch.to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        b.batch = Bytes::from(bytes);
        let err = records_from_fetch(&topic, 1, 0, &[b]).unwrap_err().to_string();
        assert!(err.contains("offset 3 of t/1"), "{err}");
    }
}
