//! A change counter that tasks can wait on. tokio's `watch` picks a notify slot with
//! tokio's own thread-local RNG, which breaks madsim's determinism; a version number and
//! a plain `Notify` give the same "wake me after the next change" without it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Default)]
pub struct Signal {
    version: AtomicU64,
    notify: Notify,
}

impl Signal {
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Records a change and wakes every waiter.
    pub fn bump(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// Waits until the version differs from `seen` or `timeout` passes; returns the
    /// version then.
    pub async fn changed_since(&self, seen: u64, timeout: Duration) -> u64 {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = self.version();
        if now != seen {
            return now;
        }
        let _ = tokio::time::timeout(timeout, notified).await;
        self.version()
    }
}
