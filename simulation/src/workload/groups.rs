//! Consumer-group workloads: members of one partitioned group and of one shared group
//! reading a workload topic while the nemesis runs, closed or killed now and then so the
//! group rebalances (or leases expire) during faults, then draining after heal.
//!
//! ```text
//!   slot task ─ join ─> member ─ poll ─> record deliveries ─┬─ now and then: close | kill ─> join again
//!                                                           └─ after stop: drain until done ─> close
//! ```
//!
//! Every member of a group lives in one slot; a slot joins a new member after its last
//! one left, so the group keeps its size while its membership churns.

use std::time::Duration;

use futures::future::join_all;
use madsim::rand::{thread_rng, Rng};
use tidemark_client::{Client, GroupConsumer, GroupConsumerConfig, GroupMode, GroupSettings, Result as ClientResult};
use tokio::time::Instant;

use super::history::{GroupDelivery, GroupInfo, History};
use super::producers::client_config;
use super::{BoxFuture, Workload, WorkloadCtx};

/// Per poll, the chance that a member leaves (half of those cleanly, half killed).
pub const LEAVE_CHANCE: f64 = 0.02;
/// How long a poll, join or close may take before the member is given up on.
pub const CALL_BOUND: Duration = Duration::from_secs(30);
/// A shared group's record TTL (see [`settings`]).
pub const SHARED_TTL: Duration = Duration::from_secs(8);
/// After stop, the longest a group drains; what it has not processed by then is lost.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(45);

/// One consumer group a workload runs: its name and the topic its members read.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    pub name: String,
    pub topic: String,
    pub members: u32,
}

impl GroupSpec {
    /// Where a shared group's dead letters go: `<topic>.<group>.dlq`.
    pub fn dead_letter_topic(&self) -> String {
        format!("{}.{}.dlq", self.topic, self.name)
    }
}

/// Short timeouts, so a killed member's partitions move (and its leases expire) well
/// within the run; the heartbeat stays a third of the session as the server requires.
/// A shared group also has a TTL a few lock durations long: records held up by faults
/// expire and take the dead-letter path (the default expired action), so expiry runs
/// under the nemesis and `shared-all-settled` must find them in the dead-letter topic.
fn settings(shared: Option<String>) -> GroupSettings {
    GroupSettings {
        mode: if shared.is_some() { GroupMode::Shared } else { GroupMode::Partitioned },
        session_timeout: Some(Duration::from_secs(3)),
        heartbeat_interval: Some(Duration::from_secs(1)),
        rebalance_timeout: Some(Duration::from_secs(3)),
        lock_duration: Some(Duration::from_secs(2)),
        max_delivery_attempts: Some(3),
        redelivery_backoff: Some(Duration::from_millis(100)),
        ttl: shared.is_some().then_some(SHARED_TTL),
        dead_letter_topic: shared,
        ..GroupSettings::default()
    }
}

/// Creates the group (and, if shared, its dead-letter topic) and records it for the
/// checkers. Runs before any fault, retrying while the cluster forms.
pub async fn create_group(ctx: &WorkloadCtx, spec: &GroupSpec, shared: bool) -> Result<(), String> {
    let client = Client::new(client_config(&ctx.bootstrap)).map_err(|e| e.to_string())?;
    let admin = client.admin();
    let dlq = shared.then(|| spec.dead_letter_topic());
    if let Some(d) = &dlq {
        create_with_retries(|| admin.create_topic(d, 1, 3, 0, 0), true).await.map_err(|e| format!("{d}: {e}"))?;
    }
    let topics = [spec.topic.clone()];
    let s = settings(dlq.clone());
    create_with_retries(|| admin.create_group(&spec.name, &topics, &s), false)
        .await
        .map_err(|e| format!("group {}: {e}", spec.name))?;
    let info = GroupInfo { name: spec.name.clone(), topic: spec.topic.clone(), shared, dead_letter_topic: dlq };
    ctx.recorder.lock().groups.push(info);
    ctx.trace.event(format!("group {} created on {} (shared {shared})", spec.name, spec.topic));
    Ok(())
}

async fn create_with_retries<F, Fut, T>(mut call: F, topic: bool) -> ClientResult<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ClientResult<T>>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Ok(_) => return Ok(()),
            // An earlier try whose answer was lost created it.
            Err(e) if topic && tries > 0 && e.code() == Some(tidemark_client::ErrorCode::TopicExists) => return Ok(()),
            Err(e) if tries < 5 => {
                tries += 1;
                tracing::info!(error = %e, "creating failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Decides when a member task stops: not before its stop flag, which the scenario raises
/// once the producers are done; then once `done` says the group has settled every
/// acknowledged record, or at the limit.
#[derive(Default)]
pub struct Drain {
    stopped_at: Option<Instant>,
}

impl Drain {
    pub fn draining(&mut self, ctx: &WorkloadCtx) -> bool {
        if ctx.stop.is_stopped() && self.stopped_at.is_none() {
            self.stopped_at = Some(Instant::now());
        }
        self.stopped_at.is_some()
    }

    pub fn finished(&mut self, ctx: &WorkloadCtx, done: impl Fn(&History, Duration) -> bool) -> bool {
        if !self.draining(ctx) {
            return false;
        }
        let waited = self.stopped_at.map_or(Duration::ZERO, |t| t.elapsed());
        waited >= DRAIN_LIMIT || done(&ctx.recorder.lock(), waited)
    }
}

/// A partitioned group of `spec.members` members.
pub struct PartitionedGroup(pub GroupSpec);

impl Workload for PartitionedGroup {
    fn name(&self) -> &'static str {
        "partitioned-group"
    }

    fn run(&self, ctx: WorkloadCtx) -> BoxFuture {
        let slots: Vec<_> = (0..self.0.members).map(|slot| member_slot(self.0.clone(), slot, ctx.clone())).collect();
        Box::pin(async move {
            join_all(slots).await;
        })
    }
}

/// Whether every acknowledged record of the group's topic was handed to some member.
fn all_processed(h: &History, spec: &GroupSpec) -> bool {
    let processed: std::collections::BTreeSet<&str> =
        h.group_deliveries.iter().filter(|d| d.group == spec.name).map(|d| d.value.as_str()).collect();
    h.acked_values(&spec.topic, super::history::PROBE_PRODUCER).all(|(_, v)| processed.contains(v.as_str()))
}

/// One slot: joins a member, runs it until it leaves, joins the next, until drained.
async fn member_slot(spec: GroupSpec, slot: u32, ctx: WorkloadCtx) {
    let client = Client::new(client_config(&ctx.bootstrap)).expect("client config is valid");
    let mut drain = Drain::default();
    let mut incarnation = 0;
    while !drain.finished(&ctx, |h, _| all_processed(h, &spec)) {
        incarnation += 1;
        let label = format!("{}/m{slot}.{incarnation}", spec.name);
        let mut config = GroupConsumerConfig::new(spec.name.clone(), [spec.topic.clone()]);
        config.client_id = label.clone();
        config.auto_commit_interval = Duration::from_secs(2);
        config.create_group = false;
        match tokio::time::timeout(CALL_BOUND, client.group_consumer(config)).await {
            Ok(Ok(member)) => {
                ctx.trace.event(format!("{label} joined as {}", member.member_id()));
                run_member(member, &label, &spec, &ctx, &mut drain).await;
            }
            Ok(Err(e)) => {
                tracing::debug!(%label, error = %e, "join failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(_) => note_anomaly(&ctx, format!("{label}: joining did not return within {CALL_BOUND:?}")),
        }
    }
    ctx.trace.event(format!("{}/m{slot} stopped", spec.name));
}

/// Polls and records until the member leaves (by chance, after errors, or drained).
async fn run_member(mut member: GroupConsumer, label: &str, spec: &GroupSpec, ctx: &WorkloadCtx, drain: &mut Drain) {
    let mut errors = 0;
    loop {
        if drain.finished(ctx, |h, _| all_processed(h, spec)) {
            return close(member, label, ctx).await;
        }
        let Ok(polled) = tokio::time::timeout(CALL_BOUND, member.poll(Duration::from_millis(300))).await else {
            note_anomaly(ctx, format!("{label}: GroupConsumer::poll(300ms) did not return within {CALL_BOUND:?}"));
            return member.kill();
        };
        match polled {
            Ok(records) => {
                errors = 0;
                record_deliveries(&member, label, spec, ctx, records);
            }
            Err(e) => {
                tracing::debug!(%label, error = %e, "group poll failed");
                errors += 1;
                if errors >= 20 {
                    ctx.trace.event(format!("{label} gives up after {errors} failed polls"));
                    return member.kill();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        if !drain.draining(ctx) && thread_rng().gen_bool(LEAVE_CHANCE) {
            if thread_rng().gen_bool(0.5) {
                close(member, label, ctx).await;
            } else {
                ctx.trace.event(format!("{label} killed"));
                member.kill();
            }
            let pause = thread_rng().gen_range(0..2000);
            return tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
}

fn record_deliveries(
    member: &GroupConsumer,
    label: &str,
    spec: &GroupSpec,
    ctx: &WorkloadCtx,
    records: Vec<tidemark_client::ConsumerRecord>,
) {
    if records.is_empty() {
        return;
    }
    let owned = member.owned_with_generation();
    let at = ctx.trace.elapsed();
    let mut h = ctx.recorder.lock();
    for r in records {
        let key = (r.topic.to_string(), r.partition);
        let generation = owned.get(&key).copied().unwrap_or_else(|| {
            h.anomalies.push(format!("{label} handed {}/{}@{} it does not own", key.0, key.1, r.offset));
            0
        });
        h.group_deliveries.push(GroupDelivery {
            group: spec.name.clone(),
            member: label.to_string(),
            member_id: member.member_id().to_string(),
            at,
            topic: key.0,
            partition: r.partition,
            offset: r.offset,
            value: String::from_utf8_lossy(&r.value).into_owned(),
            generation,
        });
    }
}

async fn close(member: GroupConsumer, label: &str, ctx: &WorkloadCtx) {
    match tokio::time::timeout(CALL_BOUND, member.close()).await {
        Ok(Ok(())) => ctx.trace.event(format!("{label} closed")),
        Ok(Err(e)) => {
            tracing::debug!(%label, error = %e, "close failed");
            ctx.trace.event(format!("{label} close failed"));
        }
        Err(_) => note_anomaly(ctx, format!("{label}: close did not return within {CALL_BOUND:?}")),
    }
}

pub fn note_anomaly(ctx: &WorkloadCtx, note: String) {
    ctx.trace.event(&note);
    ctx.recorder.lock().anomalies.push(note);
}
