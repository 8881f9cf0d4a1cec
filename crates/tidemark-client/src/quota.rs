//! Quotas per principal (`Admin::set_quota`): produce and fetch byte rates and a request
//! rate, per node. Over its quota a client is slowed down, never failed: each node holds
//! its answers back (they carry `throttle_ms`).

use tidemark_proto::v1;

use crate::admin::Admin;
use crate::error::Result;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quota {
    /// `User:<name>`, or `User:*` for every principal without a quota of its own.
    pub principal: String,
    /// Rates per second on each node; 0: no limit.
    pub produce_bytes_per_sec: u64,
    pub fetch_bytes_per_sec: u64,
    pub requests_per_sec: u64,
}

impl Quota {
    fn to_wire(&self) -> v1::Quota {
        v1::Quota {
            principal: self.principal.clone(),
            produce_bytes_per_sec: self.produce_bytes_per_sec,
            fetch_bytes_per_sec: self.fetch_bytes_per_sec,
            requests_per_sec: self.requests_per_sec,
        }
    }
}

impl Admin {
    /// Sets `quota.principal`'s quota (replacing the one it had).
    pub async fn set_quota(&self, quota: &Quota) -> Result<()> {
        let req = v1::SetQuotaRequest { quota: Some(quota.to_wire()), remove: false };
        self.set_quota_request(req).await.map(drop)
    }

    /// Removes `principal`'s quota; false when it had none.
    pub async fn remove_quota(&self, principal: &str) -> Result<bool> {
        let quota = Quota { principal: principal.to_string(), ..Default::default() };
        self.set_quota_request(v1::SetQuotaRequest { quota: Some(quota.to_wire()), remove: true }).await
    }

    async fn set_quota_request(&self, req: v1::SetQuotaRequest) -> Result<bool> {
        let resp = self
            .call("set quota", |mut c| {
                let req = req.clone();
                async move { c.set_quota(req).await }
            })
            .await
            .map_err(|(e, _)| e)?;
        Ok(resp.removed)
    }

    pub async fn list_quotas(&self) -> Result<Vec<Quota>> {
        let resp = self
            .call("list quotas", |mut c| async move { c.list_quotas(v1::ListQuotasRequest {}).await })
            .await
            .map_err(|(e, _)| e)?;
        Ok(resp
            .quotas
            .into_iter()
            .map(|q| Quota {
                principal: q.principal,
                produce_bytes_per_sec: q.produce_bytes_per_sec,
                fetch_bytes_per_sec: q.fetch_bytes_per_sec,
                requests_per_sec: q.requests_per_sec,
            })
            .collect())
    }
}
