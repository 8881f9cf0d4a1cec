//! Tidemark errors on the wire: a gRPC status whose metadata carries the stable numeric
//! code (`tidemark-code`) and, for NotLeader, the leader (`tidemark-leader: ID=ADDR`).

use tidemark_types::{ErrorCode, NodeId};
use tonic::{Code, Status};

pub const CODE_KEY: &str = "tidemark-code";
pub const LEADER_KEY: &str = "tidemark-leader";
/// On OutOfOrderSequence: the sequence the partition would accept.
pub const EXPECTED_SEQUENCE_KEY: &str = "tidemark-expected-sequence";

/// The gRPC code a Tidemark code travels under, chosen so generic gRPC clients retry
/// what is retriable (UNAVAILABLE) and report the rest sensibly.
pub fn grpc_code(code: ErrorCode) -> Code {
    use ErrorCode::*;
    match code {
        NotLeader | Unavailable => Code::Unavailable,
        UnknownTopic | UnknownPartition | UnknownGroup => Code::NotFound,
        TopicExists | GroupExists => Code::AlreadyExists,
        InvalidTopicName
        | InvalidReplicationFactor
        | RecordTooLarge
        | BatchTooLarge
        | CorruptBatch
        | InvalidRequest => Code::InvalidArgument,
        OffsetOutOfRange => Code::OutOfRange,
        Timeout => Code::DeadlineExceeded,
        OutOfOrderSequence | ProducerFenced | UnknownProducer | UnknownMember | StaleGeneration | GroupNotEmpty => {
            Code::FailedPrecondition
        }
        Internal => Code::Internal,
    }
}

/// Builds the status for a Tidemark error.
pub fn status(code: ErrorCode, message: impl Into<String>, leader: Option<(NodeId, &str)>) -> Status {
    let mut s = Status::new(grpc_code(code), message.into());
    let md = s.metadata_mut();
    if let Ok(v) = (code as u32).to_string().parse() {
        md.insert(CODE_KEY, v);
    }
    if let Some((id, addr)) = leader {
        if let Ok(v) = format!("{id}={addr}").parse() {
            md.insert(LEADER_KEY, v);
        }
    }
    s
}

/// Adds the expected sequence to an OutOfOrderSequence status.
pub fn with_expected_sequence(mut status: Status, expected: i32) -> Status {
    if let Ok(v) = expected.to_string().parse() {
        status.metadata_mut().insert(EXPECTED_SEQUENCE_KEY, v);
    }
    status
}

/// The expected sequence an OutOfOrderSequence status carries.
pub fn expected_sequence_of(status: &Status) -> Option<i32> {
    status.metadata().get(EXPECTED_SEQUENCE_KEY)?.to_str().ok()?.parse().ok()
}

/// The Tidemark code of a status, if it carries one.
pub fn code_of(status: &Status) -> Option<ErrorCode> {
    let v = status.metadata().get(CODE_KEY)?.to_str().ok()?;
    ErrorCode::from_u32(v.parse().ok()?)
}

/// The leader hint of a NotLeader status: (node id, address).
pub fn leader_of(status: &Status) -> Option<(NodeId, String)> {
    let v = status.metadata().get(LEADER_KEY)?.to_str().ok()?;
    let (id, addr) = v.split_once('=')?;
    Some((id.parse().ok()?, addr.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_carries_code_and_leader() {
        let s = status(ErrorCode::NotLeader, "not the leader", Some((3, "127.0.0.1:9093")));
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(code_of(&s), Some(ErrorCode::NotLeader));
        assert_eq!(leader_of(&s), Some((3, "127.0.0.1:9093".to_string())));
        let s = status(ErrorCode::UnknownTopic, "no topic x", None);
        assert_eq!(code_of(&s), Some(ErrorCode::UnknownTopic));
        assert_eq!(leader_of(&s), None);
        assert_eq!(code_of(&Status::internal("x")), None);
        let s = with_expected_sequence(status(ErrorCode::OutOfOrderSequence, "gap", None), 42);
        assert_eq!(expected_sequence_of(&s), Some(42));
        assert_eq!(expected_sequence_of(&Status::internal("x")), None);
    }
}
