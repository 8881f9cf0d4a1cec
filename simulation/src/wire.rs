//! Raw wire access for checkers: asks one specific node, with no retries, so a checker
//! sees exactly what that replica holds.

use tidemark_proto::v1::tidemark_client::TidemarkClient;
use tonic::transport::{Channel, Endpoint};

pub fn channel(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}")).expect("valid address").connect_lazy()
}

pub fn data_client(addr: &str) -> TidemarkClient<Channel> {
    TidemarkClient::new(channel(addr))
}
