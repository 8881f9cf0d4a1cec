//! Who is calling, and whether they may: the check every client, admin and group RPC
//! makes before it acts.
//!
//! The principal is `User:<common name>` of the client's verified TLS certificate, or
//! `User:ANONYMOUS` without one. Without `require_auth` the node is open: nothing is
//! checked (and it says so loudly at start). With it, an anonymous caller is refused
//! with `UNAUTHENTICATED`, superusers and the cluster's own nodes (`User:node-<id>` of a
//! member, from the cluster CA) may do anything, and everyone else needs an ACL
//! (`acl.rs` in the broker); a refusal is `PERMISSION_DENIED` naming what is missing.

use std::collections::BTreeSet;
use std::sync::Arc;

use tidemark_broker::{Broker, Operation, ResourceType};
use tonic::{Request, Status};

pub const ANONYMOUS: &str = "User:ANONYMOUS";

#[derive(Clone)]
pub struct Auth {
    pub broker: Arc<Broker>,
    pub require: bool,
    pub superusers: Arc<BTreeSet<String>>,
}

/// The principal a request's verified client certificate names.
pub fn principal<T>(request: &Request<T>) -> String {
    match request.peer_certs().and_then(|certs| crate::tls::common_name(&certs)) {
        Some(cn) => format!("User:{cn}"),
        None => ANONYMOUS.to_string(),
    }
}

impl Auth {
    /// Ok when the caller may do `op` on the named resource.
    pub fn check<T>(
        &self,
        request: &Request<T>,
        resource: ResourceType,
        name: &str,
        op: Operation,
    ) -> Result<(), Status> {
        if !self.require {
            return Ok(());
        }
        let who = self.authenticated(request)?;
        if self.is_privileged(&who) || self.broker.acl_allows(&who, resource, name, op) {
            return Ok(());
        }
        Err(Status::permission_denied(format!(
            "{who} may not {} {}: no ACL allows it (or one denies it); an administrator can grant it with \
             `tidemark acl add --principal {who} {} --operation {}`",
            verb(op),
            describe(resource, name),
            flag(resource, name),
            format!("{op:?}").to_lowercase(),
        )))
    }

    /// The caller's principal; with `require`, an anonymous caller is refused.
    pub fn authenticated<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let who = principal(request);
        if self.require && who == ANONYMOUS {
            return Err(Status::unauthenticated(
                "this cluster requires authentication: connect with a client certificate from its CA \
                 (--tls-cert and --tls-key, or TIDEMARK_TLS_CERT and TIDEMARK_TLS_KEY)",
            ));
        }
        Ok(who)
    }

    /// With `require`: Ok when the caller joined `member` of `group` itself, is an
    /// administrator, or the member is not known here (the broker then answers for it).
    /// A member acts only for itself: no one else may heartbeat, leave, release, commit,
    /// fetch or settle records as it, even with read on the group.
    pub fn own_member<T>(&self, request: &Request<T>, group: &str, member: &str) -> Result<(), Status> {
        if !self.require || member.is_empty() {
            return Ok(());
        }
        let who = self.authenticated(request)?;
        match self.broker.member_principal(group, member) {
            Some(owner) if owner != who && !self.is_privileged(&who) => Err(Status::permission_denied(format!(
                "member {member:?} of group {group:?} belongs to {owner}, not {who}: a member acts only for itself"
            ))),
            _ => Ok(()),
        }
    }

    /// Whether the caller may `op` the resource, for filtering what a listing shows.
    pub fn may<T>(&self, request: &Request<T>, resource: ResourceType, name: &str, op: Operation) -> bool {
        self.check(request, resource, name, op).is_ok()
    }

    fn is_privileged(&self, who: &str) -> bool {
        if self.superusers.contains(who) {
            return true;
        }
        let node = who.strip_prefix("User:node-").and_then(|id| id.parse().ok());
        node.is_some_and(|id| self.broker.is_member(id))
    }
}

fn verb(op: Operation) -> &'static str {
    match op {
        Operation::Describe => "describe",
        Operation::Read => "read",
        Operation::Write => "write to",
        Operation::Create => "create",
        Operation::Alter => "alter",
        Operation::Delete => "delete",
        Operation::All => "use",
    }
}

fn describe(resource: ResourceType, name: &str) -> String {
    match resource {
        ResourceType::Cluster => "the cluster".into(),
        ResourceType::Topic => format!("topic {name:?}"),
        ResourceType::Group => format!("group {name:?}"),
        ResourceType::Producer => format!("producer {name:?}"),
    }
}

fn flag(resource: ResourceType, name: &str) -> String {
    match resource {
        ResourceType::Cluster => "--cluster".into(),
        ResourceType::Topic => format!("--topic {name}"),
        ResourceType::Group => format!("--group {name}"),
        ResourceType::Producer => format!("--producer {name}"),
    }
}
