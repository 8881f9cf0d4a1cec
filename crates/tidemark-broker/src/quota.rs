//! Quotas per principal, kept in the metadata group: byte rates for produce and fetch,
//! and a request rate. The server enforces them on the node that serves each request by
//! delaying its answer (see tidemark-server's quota.rs); this is only their storage.

use serde::{Deserialize, Serialize};

use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::meta::{MetaCommand, MetaResponse};

/// The principal whose quota applies to every principal without one of its own.
pub const DEFAULT_PRINCIPAL: &str = "User:*";

/// Rates per second per node; 0: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub produce_bytes_per_sec: u64,
    pub fetch_bytes_per_sec: u64,
    pub requests_per_sec: u64,
}

impl Broker {
    /// The quota that applies to `principal`: its own, else the default (`User:*`).
    pub fn quota_for(&self, principal: &str) -> Option<Quota> {
        let meta = self.meta.read();
        meta.quotas.get(principal).or_else(|| meta.quotas.get(DEFAULT_PRINCIPAL)).copied()
    }

    pub fn quotas(&self) -> Vec<(String, Quota)> {
        self.meta.read().quotas.iter().map(|(p, q)| (p.clone(), *q)).collect()
    }

    /// Sets (Some) or removes (None) `principal`'s quota; removing answers whether there
    /// was one.
    pub async fn set_quota(&self, principal: &str, quota: Option<Quota>) -> Result<bool> {
        if principal.strip_prefix("User:").is_none_or(str::is_empty) {
            return Err(BrokerError::InvalidRequest(format!(
                "principal {principal:?} is not User:<name> (or User:* for the default)"
            )));
        }
        let cmd = MetaCommand::SetQuota { principal: principal.to_string(), quota };
        Ok(!matches!(self.meta_write(cmd).await?, MetaResponse::Missing))
    }
}
