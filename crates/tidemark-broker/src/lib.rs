//! The broker: topics, partitions, produce and fetch, and the replicated state machines
//! behind them. It speaks domain types only (no tonic, no protobuf); tidemark-server puts
//! it on the wire.

pub mod acl;
pub mod admin;
mod balance;
pub mod broker;
mod dead;
mod directory;
pub mod error;
pub mod groups;
mod handoff;
mod health;
mod lease;
pub mod membership;
pub mod meta;
mod moves;
pub mod ops;
pub mod partition;
pub mod producers;
pub mod quota;
mod reconcile;
pub mod retention;
pub mod sequencer;
pub mod signal;
pub mod stats;

pub use acl::{AclBinding, Operation, Pattern, ResourceType};
pub use admin::{ClusterView, NodeStatus};
pub use broker::{Broker, BrokerConfig, ClusterLimits, Replica, DEFAULT_PRODUCER_EXPIRY, DEFAULT_RETENTION_CHECK};
pub use error::BrokerError;
pub use groups::{GroupConfig, GroupMeta, GroupMode, MemberPartition};
pub use meta::{TopicConfig, TopicMeta};
pub use ops::{FetchResult, OffsetSpec};
pub use quota::Quota;
