//! Access control lists, kept in the metadata group so every node decides alike.
//!
//! A binding says that a principal (`User:bob`, or `User:*` for everyone authenticated)
//! is allowed or denied an operation on resources of one type, named literally or by a
//! prefix. A deny that matches wins over any allow; nothing matching means denied. The
//! server decides who the principal is and whether checks apply at all (`--require-auth`),
//! and lets superusers and the nodes themselves through before asking here.

use serde::{Deserialize, Serialize};

use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::meta::{MetaCommand, MetaResponse};

/// What a binding guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResourceType {
    /// The cluster itself (its status, membership, users and ACLs); named `cluster`.
    Cluster,
    Topic,
    /// A consumer group.
    Group,
    /// A named idempotent producer (its name, as `ProducerConfig::producer_name`).
    Producer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operation {
    Describe,
    Read,
    Write,
    Create,
    Alter,
    Delete,
    /// Every operation.
    All,
}

impl Operation {
    /// Whether a binding for `self` covers a request for `wanted`. As in Kafka, being
    /// allowed to read, write, alter or delete something includes seeing it.
    fn covers(self, wanted: Operation) -> bool {
        self == wanted
            || self == Operation::All
            || (wanted == Operation::Describe
                && matches!(self, Operation::Read | Operation::Write | Operation::Alter | Operation::Delete))
    }
}

/// How a binding's name matches a resource's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Pattern {
    /// Exactly this name (`*`: every name).
    Literal,
    /// Every name that starts with it.
    Prefix,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    /// `User:<name>`, or `User:*` for every authenticated principal.
    pub principal: String,
    pub resource: ResourceType,
    pub name: String,
    pub pattern: Pattern,
    pub operation: Operation,
    /// false: a deny.
    pub allow: bool,
}

impl AclBinding {
    fn matches(&self, principal: &str, resource: ResourceType, name: &str, operation: Operation) -> bool {
        (self.principal == principal || self.principal == "User:*")
            && self.resource == resource
            && match self.pattern {
                Pattern::Literal => self.name == name || self.name == "*",
                Pattern::Prefix => name.starts_with(&self.name),
            }
            && self.operation.covers(operation)
    }

    /// Refuses bindings that could never match, with what to change.
    pub fn validate(&self) -> Result<()> {
        let invalid = |m: String| Err(BrokerError::InvalidRequest(m));
        match self.principal.strip_prefix("User:") {
            Some(user) if !user.is_empty() => {}
            _ => return invalid(format!("principal {:?} is not User:<name> (or User:*)", self.principal)),
        }
        if self.name.is_empty() {
            return invalid("the resource name is empty (use * for every name, or a prefix)".into());
        }
        if self.resource == ResourceType::Cluster && self.name != "cluster" {
            return invalid("the cluster resource is named \"cluster\"".into());
        }
        Ok(())
    }
}

/// Whether `bindings` allow `principal` to do `operation` on the resource. Deny wins.
pub fn allowed<'a>(
    bindings: impl IntoIterator<Item = &'a AclBinding>,
    principal: &str,
    resource: ResourceType,
    name: &str,
    operation: Operation,
) -> bool {
    let mut allow = false;
    for b in bindings.into_iter().filter(|b| b.matches(principal, resource, name, operation)) {
        if !b.allow {
            return false;
        }
        allow = true;
    }
    allow
}

impl Broker {
    /// Whether the ACLs allow it (superusers and nodes are the server's to let through).
    pub fn acl_allows(&self, principal: &str, resource: ResourceType, name: &str, operation: Operation) -> bool {
        allowed(&self.meta.read().acls, principal, resource, name, operation)
    }

    /// Who joined `member` of `group`, if this node knows the member.
    pub fn member_principal(&self, group: &str, member: &str) -> Option<String> {
        self.meta.read().groups.get(group)?.members.get(member).map(|m| m.principal.clone())
    }

    pub fn acls(&self) -> Vec<AclBinding> {
        self.meta.read().acls.iter().cloned().collect()
    }

    /// Adds a binding (adding one that exists changes nothing).
    pub async fn add_acl(&self, binding: AclBinding) -> Result<()> {
        binding.validate()?;
        self.meta_write(MetaCommand::AddAcl(binding)).await.map(drop)
    }

    /// Removes a binding; false when there was none like it.
    pub async fn remove_acl(&self, binding: AclBinding) -> Result<bool> {
        Ok(matches!(self.meta_write(MetaCommand::RemoveAcl(binding)).await?, MetaResponse::Deleted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        principal: &str,
        resource: ResourceType,
        name: &str,
        pattern: Pattern,
        op: Operation,
        allow: bool,
    ) -> AclBinding {
        AclBinding { principal: principal.into(), resource, name: name.into(), pattern, operation: op, allow }
    }

    #[test]
    fn deny_wins_and_nothing_matching_is_denied() {
        use Operation::*;
        use ResourceType::*;
        let bob = "User:bob";
        let acls = vec![
            acl(bob, Topic, "orders", Pattern::Prefix, Write, true),
            acl("User:*", Topic, "public", Pattern::Literal, Read, true),
            acl(bob, Topic, "orders-secret", Pattern::Literal, All, false),
        ];
        assert!(allowed(&acls, bob, Topic, "orders-eu", Write));
        assert!(allowed(&acls, bob, Topic, "orders-eu", Describe), "write includes describe");
        assert!(!allowed(&acls, bob, Topic, "orders-eu", Read), "not granted");
        assert!(!allowed(&acls, bob, Topic, "orders-secret", Write), "the deny wins");
        assert!(allowed(&acls, "User:carol", Topic, "public", Read), "User:* is everyone");
        assert!(!allowed(&acls, "User:carol", Topic, "publicity", Read), "a literal is not a prefix");
        assert!(!allowed(&acls, bob, Group, "orders", Read), "another resource type");
        assert!(!allowed(&[], bob, Cluster, "cluster", Describe), "no binding: denied");
    }

    #[test]
    fn bindings_that_cannot_match_are_refused() {
        let ok = acl("User:bob", ResourceType::Topic, "t", Pattern::Literal, Operation::Read, true);
        ok.validate().unwrap();
        assert!(AclBinding { principal: "bob".into(), ..ok.clone() }.validate().is_err());
        assert!(AclBinding { name: String::new(), ..ok.clone() }.validate().is_err());
        assert!(AclBinding { resource: ResourceType::Cluster, ..ok }.validate().is_err());
    }
}
