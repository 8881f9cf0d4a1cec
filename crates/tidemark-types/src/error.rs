//! Stable, numbered error codes. They travel in the `tidemark-code` gRPC metadata entry
//! next to a human message, so any client (not only ours) can branch on them. A number,
//! once published, never changes meaning.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorCode {
    /// This node does not lead the group; the `tidemark-leader` metadata names who does.
    NotLeader = 1,
    UnknownTopic = 2,
    UnknownPartition = 3,
    TopicExists = 4,
    InvalidTopicName = 5,
    InvalidReplicationFactor = 6,
    RecordTooLarge = 7,
    BatchTooLarge = 8,
    CorruptBatch = 9,
    OffsetOutOfRange = 10,
    Timeout = 11,
    /// No quorum, or the node is starting or stopping: retry later.
    Unavailable = 12,
    InvalidRequest = 13,
    Internal = 14,
    OutOfOrderSequence = 20,
    ProducerFenced = 21,
    UnknownProducer = 22,
    /// No consumer group by that name (or it was deleted).
    UnknownGroup = 30,
    GroupExists = 31,
    /// The member is not (or no longer) in its group: its session expired or it left.
    /// The SDK joins again as a new member.
    UnknownMember = 32,
    /// An offset commit from a member that no longer owns the partition (an older
    /// generation): the partition moved to another member.
    StaleGeneration = 33,
    /// The operation needs a group without live members (reset offsets, delete).
    GroupNotEmpty = 34,
}

impl ErrorCode {
    pub fn from_u32(n: u32) -> Option<ErrorCode> {
        use ErrorCode::*;
        Some(match n {
            1 => NotLeader,
            2 => UnknownTopic,
            3 => UnknownPartition,
            4 => TopicExists,
            5 => InvalidTopicName,
            6 => InvalidReplicationFactor,
            7 => RecordTooLarge,
            8 => BatchTooLarge,
            9 => CorruptBatch,
            10 => OffsetOutOfRange,
            11 => Timeout,
            12 => Unavailable,
            13 => InvalidRequest,
            14 => Internal,
            20 => OutOfOrderSequence,
            21 => ProducerFenced,
            22 => UnknownProducer,
            30 => UnknownGroup,
            31 => GroupExists,
            32 => UnknownMember,
            33 => StaleGeneration,
            34 => GroupNotEmpty,
            _ => return None,
        })
    }

    /// Whether a client may retry the same request (possibly elsewhere) and expect success.
    pub fn is_retriable(self) -> bool {
        matches!(self, ErrorCode::NotLeader | ErrorCode::Timeout | ErrorCode::Unavailable)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}({})", self, *self as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for n in 0..64 {
            if let Some(c) = ErrorCode::from_u32(n) {
                assert_eq!(c as u32, n);
            }
        }
        assert_eq!(ErrorCode::from_u32(1), Some(ErrorCode::NotLeader));
        assert!(ErrorCode::NotLeader.is_retriable());
        assert!(!ErrorCode::CorruptBatch.is_retriable());
    }
}
