//! Access control lists (`Admin::add_acl` and friends), enforced by nodes started with
//! `--require-auth`. Each binding allows (or denies) one principal one operation on
//! resources of one type, named literally or by prefix; a deny wins over any allow.

use tidemark_proto::v1;

use crate::admin::Admin;
use crate::error::{ClientError, Result};

/// What a binding guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AclResource {
    /// The cluster (named `cluster`): status, membership changes, ACLs.
    Cluster,
    Topic,
    Group,
    /// A named idempotent producer (`ProducerConfig::producer_name`).
    Producer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AclOperation {
    /// See it (implied by read, write, alter and delete).
    Describe,
    Read,
    Write,
    Create,
    Alter,
    Delete,
    All,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Acl {
    /// `User:<name>` (a client certificate's common name), or `User:*` for everyone
    /// authenticated.
    pub principal: String,
    pub resource: AclResource,
    /// The resource's name (`*`: every name); with `prefix`, every name starting with it.
    pub name: String,
    pub prefix: bool,
    pub operation: AclOperation,
    /// A deny: wins over any allow.
    pub deny: bool,
}

impl Acl {
    /// Allows `principal` to do `operation` on the resource named `name`.
    pub fn allow(principal: &str, resource: AclResource, name: &str, operation: AclOperation) -> Acl {
        Acl { principal: principal.into(), resource, name: name.into(), prefix: false, operation, deny: false }
    }

    fn to_wire(&self) -> v1::AclBinding {
        let resource = match self.resource {
            AclResource::Cluster => v1::AclResource::Cluster,
            AclResource::Topic => v1::AclResource::Topic,
            AclResource::Group => v1::AclResource::Group,
            AclResource::Producer => v1::AclResource::Producer,
        };
        let operation = match self.operation {
            AclOperation::Describe => v1::AclOperation::Describe,
            AclOperation::Read => v1::AclOperation::Read,
            AclOperation::Write => v1::AclOperation::Write,
            AclOperation::Create => v1::AclOperation::Create,
            AclOperation::Alter => v1::AclOperation::Alter,
            AclOperation::Delete => v1::AclOperation::Delete,
            AclOperation::All => v1::AclOperation::All,
        };
        v1::AclBinding {
            principal: self.principal.clone(),
            resource: resource as i32,
            name: self.name.clone(),
            prefix: self.prefix,
            operation: operation as i32,
            deny: self.deny,
        }
    }

    fn from_wire(b: v1::AclBinding) -> Result<Acl> {
        let unknown = || ClientError::Protocol(format!("an ACL the SDK does not know: {b:?}"));
        let resource = match b.resource() {
            v1::AclResource::Cluster => AclResource::Cluster,
            v1::AclResource::Topic => AclResource::Topic,
            v1::AclResource::Group => AclResource::Group,
            v1::AclResource::Producer => AclResource::Producer,
            v1::AclResource::Unspecified => return Err(unknown()),
        };
        let operation = match b.operation() {
            v1::AclOperation::Describe => AclOperation::Describe,
            v1::AclOperation::Read => AclOperation::Read,
            v1::AclOperation::Write => AclOperation::Write,
            v1::AclOperation::Create => AclOperation::Create,
            v1::AclOperation::Alter => AclOperation::Alter,
            v1::AclOperation::Delete => AclOperation::Delete,
            v1::AclOperation::All => AclOperation::All,
            v1::AclOperation::Unspecified => return Err(unknown()),
        };
        Ok(Acl { principal: b.principal, resource, name: b.name, prefix: b.prefix, operation, deny: b.deny })
    }
}

impl Admin {
    /// Adds a binding (one that exists already is left as it is).
    pub async fn add_acl(&self, acl: &Acl) -> Result<()> {
        let req = acl.to_wire();
        self.call("add ACL", |mut c| {
            let req = req.clone();
            async move { c.add_acl(req).await }
        })
        .await
        .map(drop)
        .map_err(|(e, _)| e)
    }

    /// Removes a binding; false when there was none like it.
    pub async fn remove_acl(&self, acl: &Acl) -> Result<bool> {
        let req = acl.to_wire();
        let resp = self
            .call("remove ACL", |mut c| {
                let req = req.clone();
                async move { c.remove_acl(req).await }
            })
            .await
            .map_err(|(e, _)| e)?;
        Ok(resp.removed)
    }

    pub async fn list_acls(&self) -> Result<Vec<Acl>> {
        let resp = self
            .call("list ACLs", |mut c| async move { c.list_acls(v1::ListAclsRequest {}).await })
            .await
            .map_err(|(e, _)| e)?;
        resp.acls.into_iter().map(Acl::from_wire).collect()
    }
}
