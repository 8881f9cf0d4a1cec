//! [`GroupConsumerConfig`]: the settings of a member of a partitioned or shared group.

use std::time::Duration;

use crate::config::{ConsumerConfig, StartPosition};
use crate::error::{ClientError, Result};

/// Settings of a group member.
#[derive(Debug, Clone)]
pub struct GroupConsumerConfig {
    pub group: String,
    /// The topics this member reads (at least one).
    pub topics: Vec<String>,
    /// Prefix of the member id the server gives out, for people reading `group describe`.
    pub client_id: String,
    /// Commit handed-out positions every `auto_commit_interval`, before a partition is
    /// released and on close. Off: only [`GroupConsumer::commit`] commits.
    pub auto_commit: bool,
    pub auto_commit_interval: Duration,
    /// Where to start in a partition the group never committed. Earliest by default, so
    /// a new group sees every retained record.
    pub start: StartPosition,
    /// Create the group with default settings if it does not exist.
    pub create_group: bool,
    /// Shared mode: the most records one poll leases (spread over the partitions).
    pub max_poll_records: u32,
    pub consumer: ConsumerConfig,
}

impl GroupConsumerConfig {
    pub fn new(group: impl Into<String>, topics: impl IntoIterator<Item = impl Into<String>>) -> Self {
        GroupConsumerConfig {
            group: group.into(),
            topics: topics.into_iter().map(Into::into).collect(),
            client_id: "consumer".into(),
            auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            start: StartPosition::Earliest,
            create_group: true,
            max_poll_records: 500,
            consumer: ConsumerConfig::default(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.group.is_empty() || self.topics.is_empty() {
            return Err(ClientError::InvalidArgument("a group consumer needs a group and at least one topic".into()));
        }
        if self.auto_commit && self.auto_commit_interval.is_zero() {
            return Err(ClientError::InvalidArgument("auto_commit_interval must be positive".into()));
        }
        Ok(())
    }
}
