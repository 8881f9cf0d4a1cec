//! A group member's conversation with the metadata leader: join, a background heartbeat
//! that keeps the session alive while the application processes records, release of
//! revoked partitions, and leave.
//!
//! ```text
//! join ─▶ member id + assignment
//! heartbeat task ─every interval─▶ Heartbeat ─▶ latest assignment ─▶ (poll applies it)
//!                                     └ UnknownMember ─▶ expired ─▶ poll rejoins
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidemark_proto::v1;
use tidemark_types::ErrorCode;

use crate::admin::Admin;
use crate::error::Result;

/// One partition of this member's assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assigned {
    pub topic: String,
    pub partition: u32,
    pub generation: u64,
    pub revoking: bool,
}

fn assigned(a: Vec<v1::MemberPartition>) -> Vec<Assigned> {
    a.into_iter()
        .map(|p| Assigned { topic: p.topic, partition: p.partition, generation: p.generation, revoking: p.revoking })
        .collect()
}

/// What the heartbeat task tells the consumer.
#[derive(Debug, Default)]
pub(crate) struct Beat {
    /// The newest assignment not yet taken by the consumer.
    pub assignment: Option<Vec<Assigned>>,
    /// The server no longer knows this member: it must join again.
    pub expired: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Membership {
    /// Shared mode: where dead letters go (from the group's settings).
    pub dead_letter_topic: Option<String>,
    pub group: String,
    pub group_id: u64,
    pub member_id: String,
    pub heartbeat_interval: Duration,
    /// How long the server keeps a silent member: the bound of a best-effort close,
    /// since past it the server moves the member's partitions by itself.
    pub session_timeout: Duration,
}

/// What a join answers: the membership and its first assignment.
pub(crate) type Joined = (Membership, Vec<Assigned>);

pub(crate) async fn join(
    admin: &Admin,
    group: &str,
    topics: &[String],
    client_id: &str,
    create: bool,
    shared: bool,
) -> Result<Joined> {
    let req = v1::JoinGroupRequest {
        group: group.to_string(),
        topics: topics.to_vec(),
        member_id: String::new(),
        client_id: client_id.to_string(),
        create_if_missing: create,
        shared,
    };
    let resp = admin
        .groups_call(&format!("join group {group}"), |mut c| {
            let req = req.clone();
            async move { c.join_group(req).await }
        })
        .await
        .map_err(|(e, _)| e)?;
    let interval = resp.config.as_ref().map_or(1000, |c| c.heartbeat_interval_ms.max(10));
    let session = resp.config.as_ref().map_or(10_000, |c| c.session_timeout_ms.max(interval));
    let dead_letter_topic = resp.config.as_ref().map(|c| c.dead_letter_topic.clone()).filter(|t| !t.is_empty());
    let m = Membership {
        dead_letter_topic,
        group: group.to_string(),
        group_id: resp.group_id,
        member_id: resp.member_id,
        heartbeat_interval: Duration::from_millis(interval as u64),
        session_timeout: Duration::from_millis(session as u64),
    };
    Ok((m, assigned(resp.assignment)))
}

/// Tells the metadata leader that these revoking partitions are committed.
pub(crate) async fn release(admin: &Admin, m: &Membership, parts: &[Assigned]) -> Result<()> {
    let partitions = parts
        .iter()
        .map(|p| v1::MemberPartition {
            topic: p.topic.clone(),
            partition: p.partition,
            generation: p.generation,
            revoking: true,
        })
        .collect();
    let req = v1::ReleasePartitionsRequest { group: m.group.clone(), member_id: m.member_id.clone(), partitions };
    admin
        .groups_call("release revoked partitions", |mut c| {
            let req = req.clone();
            async move { c.release_partitions(req).await }
        })
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}

pub(crate) async fn leave(admin: &Admin, m: &Membership) -> Result<()> {
    let req = v1::LeaveGroupRequest { group: m.group.clone(), member_id: m.member_id.clone() };
    admin
        .groups_call("leave the group", |mut c| {
            let req = req.clone();
            async move { c.leave_group(req).await }
        })
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}

/// Heartbeats until aborted. Each answer replaces the pending assignment; an
/// UnknownMember answer marks the membership expired and stops the task.
pub(crate) async fn heartbeat_loop(admin: Admin, m: Membership, beat: Arc<Mutex<Beat>>) {
    let mut interval = m.heartbeat_interval;
    loop {
        tokio::time::sleep(interval).await;
        let req = v1::HeartbeatRequest { group: m.group.clone(), member_id: m.member_id.clone() };
        let res = admin
            .groups_call("heartbeat", |mut c| {
                let req = req.clone();
                async move { c.heartbeat(req).await }
            })
            .await;
        let mut b = beat.lock().unwrap_or_else(|e| e.into_inner());
        match res {
            Ok(resp) => {
                b.assignment = Some(assigned(resp.assignment));
                if resp.heartbeat_interval_ms > 0 {
                    interval = Duration::from_millis(resp.heartbeat_interval_ms as u64);
                }
            }
            Err((e, _)) if matches!(e.code(), Some(ErrorCode::UnknownMember | ErrorCode::UnknownGroup)) => {
                tracing::warn!(group = %m.group, member = %m.member_id, error = %e, "membership lost; rejoining");
                b.expired = true;
                return;
            }
            Err((e, _)) => tracing::debug!(group = %m.group, error = %e, "heartbeat failed; retrying"),
        }
    }
}
