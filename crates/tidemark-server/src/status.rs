//! The one place broker errors become gRPC statuses.

use tidemark_broker::BrokerError;
use tonic::Status;

pub fn to_status(e: BrokerError) -> Status {
    tidemark_proto::error::status(e.code(), e.to_string(), e.leader())
}
