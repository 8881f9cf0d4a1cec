//! The broker's errors. Each maps to one stable wire code; the server turns them into
//! gRPC statuses at one place (tidemark-server's `status`).

use tidemark_types::{BatchError, ErrorCode, NameError, NodeId, Offset};

#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    #[error("this node is not the leader of {what}{}", leader_hint(.leader))]
    NotLeader { what: String, leader: Option<(NodeId, String)> },
    #[error("topic {topic:?} does not exist")]
    UnknownTopic { topic: String },
    #[error("topic {topic:?} has {count} partitions; partition {partition} does not exist")]
    UnknownPartition { topic: String, partition: u32, count: u32 },
    #[error("topic {topic:?} already exists")]
    TopicExists { topic: String },
    #[error("invalid topic name: {0}")]
    InvalidTopicName(#[from] NameError),
    #[error("replication factor {requested} is not possible: {live} node(s) are alive ({reason})")]
    InvalidReplicationFactor { requested: u32, live: u32, reason: &'static str },
    #[error("{0}")]
    Batch(#[from] BatchError),
    #[error("offset {offset} is out of range: the partition holds [{start}, {end})")]
    OffsetOutOfRange { offset: Offset, start: Offset, end: Offset },
    #[error(
        "out-of-order sequence on {what}: the batch starts at sequence {got} but {expected} is expected; \
         an earlier batch of this producer was not written"
    )]
    OutOfOrderSequence { what: String, expected: i32, got: i32 },
    #[error(
        "producer {producer_id} epoch {epoch} is fenced on {what}: a newer instance registered the same \
         producer name (epoch {current}); close this producer"
    )]
    ProducerFenced { what: String, producer_id: i64, epoch: i16, current: i16 },
    #[error(
        "unknown producer {producer_id} on {what}: its state expired or was never written here; \
         initialise the producer again"
    )]
    UnknownProducer { what: String, producer_id: i64 },
    #[error("consumer group {group:?} does not exist (create it with `tidemark group create {group} --topic T`)")]
    UnknownGroup { group: String },
    #[error("consumer group {group:?} already exists")]
    GroupExists { group: String },
    #[error("member {member:?} is not in group {group:?}: its session expired or it left; join the group again")]
    UnknownMember { group: String, member: String },
    #[error(
        "member {member:?} of group {group:?} no longer owns {what} (commit under generation {generation}, \
         the partition is at generation {current}): it was reassigned; drop it and do not commit to it"
    )]
    StaleGeneration { group: String, member: String, what: String, generation: u64, current: u64 },
    #[error("consumer group {group:?} has {members} live member(s); {action}")]
    GroupNotEmpty { group: String, members: usize, action: &'static str },
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("unavailable: {0}; retry shortly")]
    Unavailable(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A cluster-wide limit (topics, partitions) would be passed; not retriable.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    #[error("internal error: {0}")]
    Internal(String),
}

fn leader_hint(leader: &Option<(NodeId, String)>) -> String {
    match leader {
        Some((id, addr)) => format!("; the leader is node {id} at {addr}"),
        None => "; no leader is known yet, retry shortly".to_string(),
    }
}

impl BrokerError {
    pub fn code(&self) -> ErrorCode {
        use BrokerError::*;
        match self {
            NotLeader { .. } => ErrorCode::NotLeader,
            UnknownTopic { .. } => ErrorCode::UnknownTopic,
            UnknownPartition { .. } => ErrorCode::UnknownPartition,
            TopicExists { .. } => ErrorCode::TopicExists,
            InvalidTopicName(_) => ErrorCode::InvalidTopicName,
            InvalidReplicationFactor { .. } => ErrorCode::InvalidReplicationFactor,
            Batch(BatchError::RecordTooLarge { .. }) => ErrorCode::RecordTooLarge,
            Batch(BatchError::BatchTooLarge { .. }) => ErrorCode::BatchTooLarge,
            Batch(_) => ErrorCode::CorruptBatch,
            OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequence,
            ProducerFenced { .. } => ErrorCode::ProducerFenced,
            UnknownProducer { .. } => ErrorCode::UnknownProducer,
            UnknownGroup { .. } => ErrorCode::UnknownGroup,
            GroupExists { .. } => ErrorCode::GroupExists,
            UnknownMember { .. } => ErrorCode::UnknownMember,
            StaleGeneration { .. } => ErrorCode::StaleGeneration,
            GroupNotEmpty { .. } => ErrorCode::GroupNotEmpty,
            Timeout(_) => ErrorCode::Timeout,
            Unavailable(_) => ErrorCode::Unavailable,
            InvalidRequest(_) | LimitExceeded(_) => ErrorCode::InvalidRequest,
            Internal(_) => ErrorCode::Internal,
        }
    }

    /// The sequence the partition expects, carried by OutOfOrderSequence so the producer
    /// can renumber batches that were never written.
    pub fn expected_sequence(&self) -> Option<i32> {
        match self {
            BrokerError::OutOfOrderSequence { expected, .. } => Some(*expected),
            _ => None,
        }
    }

    /// The leader hint a NotLeader error carries.
    pub fn leader(&self) -> Option<(NodeId, &str)> {
        match self {
            BrokerError::NotLeader { leader: Some((id, addr)), .. } => Some((*id, addr.as_str())),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, BrokerError>;
