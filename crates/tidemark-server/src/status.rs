//! The one place broker errors become gRPC statuses, and broker views wire messages.

use tidemark_broker::BrokerError;
use tonic::Status;

pub fn to_status(e: BrokerError) -> Status {
    let status = tidemark_proto::error::status(e.code(), e.to_string(), e.leader());
    match e.expected_sequence() {
        Some(seq) => tidemark_proto::error::with_expected_sequence(status, seq),
        None => status,
    }
}

/// A node as the wire describes it.
pub fn node_info(n: tidemark_broker::NodeStatus) -> tidemark_proto::v1::NodeInfo {
    tidemark_proto::v1::NodeInfo {
        id: n.id,
        address: n.address,
        alive: n.alive,
        cluster_address: n.cluster_address,
        voter: n.voter,
    }
}
