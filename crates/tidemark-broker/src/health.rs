//! Stopping the node when it cannot go on in place, so its supervisor restarts it.
//!
//! A Raft group whose storage failed (an fsync error: what reached the disk is unknown)
//! stops for good, and damage found in synced data is repaired only at the next start.
//! Before this watch, the process went on running with those groups dead, so systemd or
//! Kubernetes never restarted it. Now the node stops with an error that says why.

use std::sync::Weak;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::Fatal;

use crate::broker::Broker;

const EVERY: Duration = Duration::from_millis(500);

/// Runs until the broker is dropped or has failed.
pub async fn watch(broker: Weak<Broker>) {
    loop {
        tokio::time::sleep(EVERY).await;
        let Some(b) = broker.upgrade() else { return };
        if b.failure().is_some() {
            return;
        }
        if let Some(reason) = why_stop(&b) {
            b.fail(reason);
            return;
        }
    }
}

fn why_stop(b: &Broker) -> Option<String> {
    if let Some(damage) = b.engine().damage_report() {
        return Some(format!(
            "synced data on this node's disk is damaged ({damage}); the node stops so that, restarted, it repairs \
             every replica from its peers"
        ));
    }
    for (group, raft) in b.registry().groups() {
        let state = raft.metrics().borrow_watched().running_state.clone();
        match state {
            // Stopped: a deleted topic's group, or the node shutting down.
            Ok(()) | Err(Fatal::Stopped) => {}
            Err(e) => {
                return Some(format!(
                    "raft group {group:#x} stopped: {e}; the node stops so that, restarted on a working disk, it \
                     recovers from what was synced"
                ))
            }
        }
    }
    None
}
