//! The shared-group workload: members lease records, acknowledge most, release some and
//! reject a few, and are now and then killed (their leases expire) or closed.
//!
//! ```text
//!   slot task ─ join ─> member ─ poll ─> settle each (ack | release | reject) ─> next poll sends them
//!                                   └─ now and then: kill before settling (records abandoned) | close
//! ```
//!
//! A settlement is recorded only once it was handed to the SDK *and* a later poll or close
//! tried to send it: a member killed in between never sent it, so what it settled is
//! recorded as abandoned (the record must come back through lease expiry).

use std::time::Duration;

use futures::future::join_all;
use madsim::rand::{thread_rng, Rng};
use tidemark_client::{Client, GroupConsumerConfig, SharedConsumer, SharedRecord};

use super::groups::{note_anomaly, Drain, GroupSpec, CALL_BOUND, LEAVE_CHANCE};
use super::history::{History, Settle, SharedDelivery, PROBE_PRODUCER};
use super::producers::client_config;
use super::{BoxFuture, Workload, WorkloadCtx};

/// While draining, a group is done once no member was handed anything for this long:
/// longer than the lock, so abandoned leases had time to expire and come back.
const IDLE: Duration = Duration::from_secs(3);

/// A shared group of `spec.members` members.
pub struct SharedGroup(pub GroupSpec);

impl Workload for SharedGroup {
    fn name(&self) -> &'static str {
        "shared-group"
    }

    fn run(&self, ctx: WorkloadCtx) -> BoxFuture {
        let slots: Vec<_> = (0..self.0.members).map(|slot| member_slot(self.0.clone(), slot, ctx.clone())).collect();
        Box::pin(async move {
            join_all(slots).await;
        })
    }
}

/// Done when every acknowledged record was acked by a member, or nothing was handed out
/// for [`IDLE`] of the drain (records that went to the dead-letter topic never reach the
/// workload, so a drain with dead letters ends by going idle).
fn settled(h: &History, spec: &GroupSpec, now: Duration, drained: Duration) -> bool {
    let deliveries = || h.shared_deliveries.iter().filter(|d| d.group == spec.name);
    let idle = deliveries().next_back().map_or(now, |d| now.saturating_sub(d.at));
    if idle.min(drained) >= IDLE {
        return true;
    }
    let acked: std::collections::BTreeSet<&str> =
        deliveries().filter(|d| d.settle == Settle::Ack).map(|d| d.value.as_str()).collect();
    h.acked_values(&spec.topic, PROBE_PRODUCER).all(|(_, v)| acked.contains(v.as_str()))
}

async fn member_slot(spec: GroupSpec, slot: u32, ctx: WorkloadCtx) {
    let client = Client::new(client_config(&ctx.bootstrap)).expect("client config is valid");
    let mut drain = Drain::default();
    let mut incarnation = 0;
    while !drain.finished(&ctx, |h, drained| settled(h, &spec, ctx.trace.elapsed(), drained)) {
        incarnation += 1;
        let label = format!("{}/m{slot}.{incarnation}", spec.name);
        let mut config = GroupConsumerConfig::new(spec.name.clone(), [spec.topic.clone()]);
        config.client_id = label.clone();
        config.auto_commit = false;
        config.create_group = false;
        config.max_poll_records = 20;
        match tokio::time::timeout(CALL_BOUND, client.shared_consumer(config)).await {
            Ok(Ok(member)) => {
                ctx.trace.event(format!("{label} joined as {}", member.member_id()));
                Member { label, spec: &spec, ctx: &ctx, unsent: Vec::new() }.run(member, &mut drain).await;
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

struct Member<'a> {
    label: String,
    spec: &'a GroupSpec,
    ctx: &'a WorkloadCtx,
    /// Settled in the SDK, not yet sent (the next poll or close sends them).
    unsent: Vec<SharedDelivery>,
}

impl Member<'_> {
    async fn run(mut self, mut member: SharedConsumer, drain: &mut Drain) {
        let mut errors = 0;
        loop {
            if drain.finished(self.ctx, |h, drained| settled(h, self.spec, self.ctx.trace.elapsed(), drained)) {
                return self.close(member).await;
            }
            let polled = tokio::time::timeout(CALL_BOUND, member.poll(Duration::from_millis(300))).await;
            // The poll sent what was settled before it (or tried to): record it as settled.
            self.ctx.recorder.lock().shared_deliveries.append(&mut self.unsent);
            let Ok(polled) = polled else {
                let note = format!("{}: SharedConsumer::poll(300ms) did not return within {CALL_BOUND:?}", self.label);
                note_anomaly(self.ctx, note);
                return member.kill();
            };
            let records = match polled {
                Ok(records) => records,
                Err(e) => {
                    tracing::debug!(label = %self.label, error = %e, "shared poll failed");
                    errors += 1;
                    if errors >= 20 {
                        self.ctx.trace.event(format!("{} gives up after {errors} failed polls", self.label));
                        return member.kill();
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            errors = 0;
            let draining = drain.draining(self.ctx);
            if !draining && thread_rng().gen_bool(LEAVE_CHANCE) {
                return self.leave(member, records).await;
            }
            for r in records {
                let settle = self.settle(&mut member, &r, draining);
                self.unsent.push(self.delivery(&r, settle));
            }
        }
    }

    /// Mostly ack; during faults release one in ten and reject one in twenty.
    fn settle(&self, member: &mut SharedConsumer, r: &SharedRecord, draining: bool) -> Settle {
        let roll = if draining { 0 } else { thread_rng().gen_range(0..20) };
        match roll {
            0..=16 => {
                member.ack(&r.record);
                Settle::Ack
            }
            17..=18 => {
                member.release(&r.record);
                Settle::Release
            }
            _ => {
                member.reject(&r.record);
                Settle::Reject
            }
        }
    }

    fn delivery(&self, r: &SharedRecord, settle: Settle) -> SharedDelivery {
        SharedDelivery {
            group: self.spec.name.clone(),
            member: self.label.clone(),
            at: self.ctx.trace.elapsed(),
            topic: r.record.topic.to_string(),
            partition: r.record.partition,
            offset: r.record.offset,
            value: String::from_utf8_lossy(&r.record.value).into_owned(),
            delivery_count: r.delivery_count,
            settle,
        }
    }

    /// Leaves by chance: half the time killed with this poll's records unsettled and the
    /// last ones unsent (all abandoned), else settled and closed cleanly.
    async fn leave(mut self, mut member: SharedConsumer, records: Vec<SharedRecord>) {
        if thread_rng().gen_bool(0.5) {
            let mut abandoned = std::mem::take(&mut self.unsent);
            abandoned.extend(records.iter().map(|r| self.delivery(r, Settle::Abandoned)));
            abandoned.iter_mut().for_each(|d| d.settle = Settle::Abandoned);
            self.ctx.recorder.lock().shared_deliveries.extend(abandoned);
            self.ctx.trace.event(format!("{} killed", self.label));
            member.kill();
        } else {
            for r in &records {
                let settle = self.settle(&mut member, r, false);
                self.unsent.push(self.delivery(r, settle));
            }
            self.close(member).await;
        }
        let pause = thread_rng().gen_range(0..2000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }

    async fn close(mut self, member: SharedConsumer) {
        let closed = tokio::time::timeout(CALL_BOUND, member.close()).await;
        self.ctx.recorder.lock().shared_deliveries.append(&mut self.unsent);
        match closed {
            Ok(Ok(())) => self.ctx.trace.event(format!("{} closed", self.label)),
            Ok(Err(e)) => {
                tracing::debug!(label = %self.label, error = %e, "close failed");
                self.ctx.trace.event(format!("{} close failed", self.label));
            }
            Err(_) => note_anomaly(self.ctx, format!("{}: close did not return within {CALL_BOUND:?}", self.label)),
        }
    }
}
