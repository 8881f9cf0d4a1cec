//! The one place broker errors become gRPC statuses.

use tidemark_broker::BrokerError;
use tonic::Status;

pub fn to_status(e: BrokerError) -> Status {
    let status = tidemark_proto::error::status(e.code(), e.to_string(), e.leader());
    match e.expected_sequence() {
        Some(seq) => tidemark_proto::error::with_expected_sequence(status, seq),
        None => status,
    }
}
