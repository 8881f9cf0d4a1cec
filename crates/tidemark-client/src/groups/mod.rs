//! Consumer groups: [`GroupConsumer`] (a member of a partitioned group) and the group
//! administration on [`Admin`](crate::Admin).

mod admin;
mod consumer;
mod member;
mod route;

pub use admin::{
    GroupDescription, GroupListing, GroupMemberDescription, GroupMode, GroupPartitionDescription, GroupSettings,
};
pub use consumer::{GroupConsumer, GroupConsumerConfig};
