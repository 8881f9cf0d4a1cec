//! The Tidemark Rust SDK: [`Producer`], [`Consumer`] and [`Admin`] over one shared
//! [`Client`] (one gRPC channel per node, one metadata cache).
//!
//! ```no_run
//! use tidemark_client::{Client, ClientConfig, ConsumerConfig, ProducerConfig, StartPosition};
//! # async fn demo() -> Result<(), tidemark_client::ClientError> {
//! let client = Client::new(ClientConfig::new(["127.0.0.1:9092"]))?;
//! client.admin().create_topic("orders", 3, 3, 0, 0).await?;
//!
//! let producer = client.producer(ProducerConfig::default())?;
//! let ack = producer.send("orders", ("customer-7", "order #1"));
//! println!("written at {:?}", ack.await?);
//! producer.close().await;
//!
//! let mut consumer = client.consumer("orders", None, StartPosition::Earliest, ConsumerConfig::default()).await?;
//! for record in consumer.poll(std::time::Duration::from_secs(1)).await? {
//!     println!("{}/{}: {:?}", record.partition, record.offset, record.value);
//! }
//! # Ok(()) }
//! ```
//!
//! The SDK runs unchanged inside the madsim simulation: it uses only the workspace
//! `tokio` / `tonic`, `tokio::time` for every delay, no threads, no RNG (retry jitter is
//! a hash of a counter) and only `biased` selects.

mod acl;
mod admin;
mod backoff;
mod client;
mod config;
mod connections;
mod consumer;
mod error;
mod groups;
mod metadata;
mod producer;
mod quota;

pub use acl::{Acl, AclOperation, AclResource};
pub use admin::{Admin, ClusterStatus, NodeStatus, PartitionDescription, TopicDescription, TopicSettings};
pub use backoff::Backoff;
pub use client::Client;
pub use config::{ClientConfig, ClientTls, ConsumerConfig, ProducerConfig, StartPosition, DEFAULT_MAX_BATCH_BYTES};
pub use consumer::{Consumer, ConsumerRecord};
pub use error::{ClientError, Result};
pub use groups::{
    ExpiredAction, GroupConsumer, GroupConsumerConfig, GroupDescription, GroupListing, GroupMemberDescription,
    GroupMode, GroupPartitionDescription, GroupSettings, OffsetReset, ResetScope, SharedConsumer, SharedRecord,
    DLQ_ATTEMPTS, DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC,
};
pub use producer::{DeliveryFuture, Producer, ProducerRecord, RecordMetadata};
pub use quota::Quota;
pub use tidemark_types::{ErrorCode, Header, NodeId, PartitionId, Record, TTL_HEADER};

impl Admin {
    /// An admin with its own [`Client`]; use [`Client::admin`] to share connections.
    pub fn new(config: ClientConfig) -> Result<Admin> {
        Ok(Client::new(config)?.admin())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything can move into spawned tasks; the client handles can be shared.
    #[test]
    fn handles_are_send_and_sync() {
        fn send<T: Send>() {}
        fn shared<T: Send + Sync>() {}
        shared::<Client>();
        shared::<Admin>();
        shared::<Producer>();
        send::<Consumer>();
        send::<GroupConsumer>();
        send::<SharedConsumer>();
        send::<DeliveryFuture>();
        shared::<ClientError>();
    }
}
