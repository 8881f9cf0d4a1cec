//! Tidemark's domain vocabulary, shared by every other crate: validated names, ids,
//! offsets, the record batch (the unit of produce, replication, storage and fetch) and
//! the stable, numbered error codes that cross the wire. No I/O lives here.

pub mod batch;
pub mod error;
pub mod names;
pub mod partitioner;

pub use batch::{
    decode_records, record_ttl_deadlines, restamp, seq_add, BatchError, BatchHeader, BatchLimits, Header, Record,
    RecordBatchBuilder, TTL_HEADER,
};
pub use error::ErrorCode;
pub use names::{NameError, TopicName};

/// A node of the cluster; also its Raft node id. Never 0 (0 means "unknown").
pub type NodeId = u64;
/// A partition number within its topic, from 0.
pub type PartitionId = u32;
/// A record's position in its partition: dense, from 0, assigned when a batch is applied.
pub type Offset = u64;
/// A Raft group: 0 is the metadata group, every other id is one partition's group.
pub type GroupId = u64;

/// The metadata group's id.
pub const METADATA_GROUP: GroupId = 0;

/// The group id of one partition. Topic ids are never reused, so a topic that is deleted
/// and created again gets fresh groups and can never meet an old replica's log.
///
/// Topic ids start at 0, so the topic id is shifted by one: otherwise partition 0 of the
/// first topic would be group 0, the metadata group, and the two groups would share one
/// Raft log and one transport route (found by the chaos simulation, seed 1).
pub fn partition_group(topic_id: u32, partition: PartitionId) -> GroupId {
    ((topic_id as u64 + 1) << 32) | partition as u64
}

/// Milliseconds since the Unix epoch, as carried in record timestamps.
pub type TimestampMs = i64;

/// Now, in milliseconds since the Unix epoch, from the system clock (simulated time under
/// madsim). The SDK stamps records with it; a partition leader stamps append commands.
pub fn now_ms() -> TimestampMs {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_partition_shares_the_metadata_group() {
        assert_ne!(partition_group(0, 0), METADATA_GROUP);
        assert_ne!(partition_group(0, 1), partition_group(1, 1));
    }
}
