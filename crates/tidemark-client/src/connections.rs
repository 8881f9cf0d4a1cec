//! One gRPC channel per node address, shared by every RPC of every producer, consumer and
//! admin made from the same [`Client`](crate::Client).
//!
//! A tonic `Channel` multiplexes any number of concurrent requests over one HTTP/2
//! connection and reconnects by itself, so a channel per RPC would only add handshakes
//! and sockets. Channels are created lazily: building a client never touches the network,
//! and an unreachable node fails the RPC that needs it (with its address in the error).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tidemark_proto::tls::ClientTls;
use tonic::transport::Channel;

use crate::error::{ClientError, Result};

#[derive(Debug)]
pub(crate) struct Connections {
    channels: Mutex<HashMap<String, Channel>>,
    connect_timeout: Duration,
    tls: Option<ClientTls>,
}

impl Connections {
    pub(crate) fn new(connect_timeout: Duration, tls: Option<ClientTls>) -> Self {
        Connections { channels: Mutex::new(HashMap::new()), connect_timeout, tls }
    }

    /// The channel to `addr` (`HOST:PORT`), created on first use and reused after.
    pub(crate) fn channel(&self, addr: &str) -> Result<Channel> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ch) = channels.get(addr) {
            return Ok(ch.clone());
        }
        let endpoint = ClientTls::endpoint(self.tls.as_ref(), addr)
            .map_err(|e| ClientError::InvalidArgument(format!("node address {addr:?}: {e}")))?
            .tcp_nodelay(true)
            .connect_timeout(self.connect_timeout);
        let ch = endpoint.connect_lazy();
        channels.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.channels.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_channel_per_address() {
        let c = Connections::new(Duration::from_secs(1), None);
        c.channel("127.0.0.1:1").unwrap();
        c.channel("127.0.0.1:1").unwrap();
        c.channel("127.0.0.1:2").unwrap();
        assert_eq!(c.len(), 2);
        assert!(c.channel("not an address").is_err());
    }
}
