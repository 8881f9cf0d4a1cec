//! Consumer groups: [`GroupConsumer`] (a member of a partitioned group), [`SharedConsumer`]
//! (a member of a shared, queue-style group) and the group
//! administration on [`Admin`](crate::Admin).

mod admin;
mod background;
mod config;
mod consumer;
mod member;
mod route;
mod shared;

pub use admin::{
    ExpiredAction, GroupDescription, GroupListing, GroupMemberDescription, GroupMode, GroupPartitionDescription,
    GroupSettings, OffsetReset, ResetScope,
};
pub use config::GroupConsumerConfig;
pub use consumer::GroupConsumer;
pub use shared::{SharedConsumer, SharedRecord, DLQ_ATTEMPTS, DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC};
