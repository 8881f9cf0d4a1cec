//! Settings for the client, the producer and the consumer. Defaults follow what a Kafka
//! user expects (112 KiB batches, 5 in flight, 30 s delivery timeout), except that a batch
//! goes at once when it can (linger 0; it still batches under load, see `linger`);
//! every one is a plain public field so callers override only what they need.

use std::time::Duration;

pub use tidemark_proto::tls::ClientTls;

use crate::error::{ClientError, Result};

/// Where the cluster is and how patiently to talk to it.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Any live nodes, `HOST:PORT`. Only used to find the cluster: after the first
    /// metadata answer the client talks to the nodes the cluster names.
    pub bootstrap: Vec<String>,
    /// The limit for one RPC attempt (a long-poll fetch gets its wait on top).
    pub request_timeout: Duration,
    /// The limit for opening a TCP connection to a node.
    pub connect_timeout: Duration,
    /// The limit for a whole admin or metadata operation, retries included.
    pub operation_timeout: Duration,
    /// How long to keep trying while no node has ever answered (a wrong address or a
    /// cluster not started): fail with the connection error instead of waiting out
    /// `operation_timeout`. Default 2 s (a mistyped `--bootstrap` fails within about 3 s); raise it
    /// for an application that may start before its cluster.
    pub bootstrap_timeout: Duration,
    /// First retry delay; doubles per attempt up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// How long a topic the cluster says it does not know is waited for before sends to it
    /// fail: metadata reaches every node a moment after `CreateTopic` returns.
    pub unknown_topic_timeout: Duration,
    /// How long `Admin::create_topic` waits for every partition to elect a leader.
    pub topic_ready_timeout: Duration,
    /// The largest gRPC message accepted (fetch responses carry whole batches).
    pub max_message_bytes: usize,
    /// TLS to the nodes (`None`, the default: plaintext). Set it for nodes started with
    /// `--tls-cert`; give it a client certificate for nodes that ask for one
    /// (`--tls-client-auth`). See [`ClientTls::from_files`].
    pub tls: Option<ClientTls>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap: vec!["127.0.0.1:9092".to_string()],
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            operation_timeout: Duration::from_secs(30),
            bootstrap_timeout: Duration::from_secs(2),
            retry_backoff: Duration::from_millis(50),
            retry_backoff_max: Duration::from_secs(1),
            unknown_topic_timeout: Duration::from_secs(5),
            topic_ready_timeout: Duration::from_secs(15),
            max_message_bytes: 64 << 20,
            tls: None,
        }
    }
}

impl ClientConfig {
    /// A default config reaching the cluster through `bootstrap` (`HOST:PORT` strings).
    pub fn new<I, S>(bootstrap: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientConfig { bootstrap: bootstrap.into_iter().map(Into::into).collect(), ..Default::default() }
    }

    /// Rejects settings that cannot work, with a message that says what to change.
    pub fn validate(&self) -> Result<()> {
        if self.bootstrap.is_empty() {
            return Err(ClientError::InvalidArgument(
                "no bootstrap address: give at least one HOST:PORT of a running node".into(),
            ));
        }
        for addr in &self.bootstrap {
            let ok = addr.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return Err(ClientError::InvalidArgument(format!(
                    "bootstrap address {addr:?} is not HOST:PORT (for example 127.0.0.1:9092)"
                )));
            }
        }
        if self.request_timeout.is_zero() || self.operation_timeout.is_zero() {
            return Err(ClientError::InvalidArgument("timeouts must be greater than zero".into()));
        }
        Ok(())
    }
}

/// How the producer batches and retries.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// How long a partition's open batch waits for more records before it is sent, when
    /// the in-flight window has room. While the window is full the batch keeps filling
    /// whatever this says, so the default of 0 sends a lone record at once and still forms
    /// large batches under load. A few ms trade latency for fewer requests at moderate rates.
    pub linger: Duration,
    /// A batch is sent once it would grow past this many encoded bytes. A single record
    /// larger than this goes alone in its own batch (the server then judges its size).
    /// The default, [`DEFAULT_MAX_BATCH_BYTES`], keeps a batch under the size at which the
    /// server's storage moves values out of line.
    pub max_batch_bytes: usize,
    /// Batches per partition sent but not yet acknowledged. More hides round trips. With
    /// idempotence order holds across retries for any window up to 5 (the partitions
    /// remember a producer's last 5 batches); without it only a window of 1 keeps order.
    pub max_in_flight: usize,
    /// A record not acknowledged this long after `send` fails with a Timeout error.
    /// Retriable errors are retried until then.
    pub delivery_timeout: Duration,
    /// Bytes of records sent but not yet acknowledged above which
    /// [`Producer::wait_for_buffer_space`](crate::Producer::wait_for_buffer_space) waits.
    pub max_buffered_bytes: usize,
    /// Exactly-once writes (on by default): the producer registers a producer id and
    /// numbers its batches per partition, so a retried batch is never written twice.
    pub idempotent: bool,
    /// With idempotence: a stable name for this producer. A new producer with the same
    /// name fences the previous one (its writes fail with ProducerFenced), which stops
    /// a "zombie" instance after a failover of the application. `None`: anonymous.
    pub producer_name: Option<String>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            linger: Duration::ZERO,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_in_flight: 5,
            delivery_timeout: Duration::from_secs(30),
            max_buffered_bytes: 64 << 20,
            idempotent: true,
            producer_name: None,
        }
    }
}

impl ProducerConfig {
    pub fn validate(&self) -> Result<()> {
        if self.max_in_flight == 0 {
            return Err(ClientError::InvalidArgument("max_in_flight must be at least 1".into()));
        }
        if self.max_batch_bytes == 0 || self.max_buffered_bytes == 0 {
            return Err(ClientError::InvalidArgument("max_batch_bytes and max_buffered_bytes must be positive".into()));
        }
        if self.idempotent && self.max_in_flight > MAX_IDEMPOTENT_IN_FLIGHT {
            return Err(ClientError::InvalidArgument(format!(
                "an idempotent producer allows at most {MAX_IDEMPOTENT_IN_FLIGHT} batches in flight per partition \
                 (got {}); lower max_in_flight or turn idempotence off",
                self.max_in_flight
            )));
        }
        if self.producer_name.as_ref().is_some_and(|n| n.is_empty() || n.len() > 255) {
            return Err(ClientError::InvalidArgument("producer_name must have 1 to 255 bytes".into()));
        }
        if self.producer_name.is_some() && !self.idempotent {
            return Err(ClientError::InvalidArgument("producer_name needs idempotence on".into()));
        }
        if self.delivery_timeout.is_zero() {
            return Err(ClientError::InvalidArgument("delivery_timeout must be positive".into()));
        }
        Ok(())
    }
}

/// The partitions remember this many batches per producer, so an idempotent producer
/// may not have more in flight.
pub const MAX_IDEMPOTENT_IN_FLIGHT: usize = 5;

/// The producer's default batch size: 112 KiB. The server stores each batch as one Raft
/// entry in sled, which writes any value over 128 KiB (minus its headers) to a separate
/// blob file and keeps it in memory; sustained throughput of 1 KiB records measured
/// 11–15k records/s with 1 MiB batches and 50–52k records/s with 112 KiB batches
/// (`tidemark bench produce`, 3 nodes, RF 3, 10 s). Larger batches stop paying off
/// before then anyway: 112 KiB already amortises each request over about 100 records.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 112 << 10;

/// Where a consumer starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest retained record.
    Earliest,
    /// Only records written from now on (Kafka's default).
    Latest,
    /// This offset (clamped by the server's answer if it is out of range; see
    /// [`ConsumerConfig::offset_reset`]).
    Offset(u64),
    /// The first record whose timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
}

/// How the consumer fetches.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// How long one fetch waits on the server for new records (long poll).
    pub max_wait: Duration,
    /// Soft limit of bytes per partition per fetch (at least one batch is returned).
    pub max_bytes: u32,
    /// Where to go when the position fell out of the retained log (retention purged it):
    /// Earliest loses the least.
    pub offset_reset: StartPosition,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            max_wait: Duration::from_millis(500),
            max_bytes: 1 << 20,
            offset_reset: StartPosition::Earliest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_bootstrap_addresses() {
        assert!(ClientConfig::default().validate().is_ok());
        assert!(ClientConfig::new(["node-1:9092", "10.0.0.2:9093"]).validate().is_ok());
        assert!(ClientConfig::new(Vec::<String>::new()).validate().is_err());
        let err = ClientConfig::new(["localhost"]).validate().unwrap_err().to_string();
        assert!(err.contains("HOST:PORT"), "{err}");
        assert!(ClientConfig::new([":9092"]).validate().is_err());
        assert!(ClientConfig::new(["h:99999"]).validate().is_err());
    }

    #[test]
    fn producer_defaults_are_valid() {
        let c = ProducerConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!((c.linger, c.max_batch_bytes, c.max_in_flight), (Duration::ZERO, DEFAULT_MAX_BATCH_BYTES, 5));
        assert!(c.idempotent, "idempotence is on by default");
        assert!(ProducerConfig { max_in_flight: 0, ..c.clone() }.validate().is_err());
        let err = ProducerConfig { max_in_flight: 6, ..c.clone() }.validate().unwrap_err().to_string();
        assert!(err.contains("at most 5"), "{err}");
        assert!(ProducerConfig { max_in_flight: 6, idempotent: false, ..c.clone() }.validate().is_ok());
        assert!(ProducerConfig { producer_name: Some(String::new()), ..c }.validate().is_err());
    }
}
