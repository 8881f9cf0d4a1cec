//! Workloads drive the cluster through the real SDK and record what it promised, so the
//! checkers can hold the cluster to it afterwards.
//!
//! ```text
//!   scenario ──spawns──> Workload::run(ctx) on a client host ──> SDK ──> cluster
//!                              │ records every send outcome and every read
//!                              ▼
//!                          Recorder (History) ──> checkers, when the run ends
//! ```
//!
//! A later feature (consumer groups, retention, transactions) adds its own [`Workload`]
//! implementation, records what it observed in [`History`], and adds a checker.

mod basic;
#[cfg(madsim)]
pub mod groups;
pub mod history;
#[cfg(madsim)]
pub mod producers;
#[cfg(madsim)]
pub mod readers;
#[cfg(madsim)]
pub mod shared;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use basic::{assert_no_acked_loss, produce, read_all, Acked};
pub use history::{History, Recorder};

use crate::trace::Trace;

/// One topic the workloads write to and read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
}

/// Raised when the fault phase ends: workloads finish what they started and return.
#[derive(Clone, Default, Debug)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What every workload gets: where the cluster is, what to touch, where to record.
#[derive(Clone, Debug)]
pub struct WorkloadCtx {
    pub bootstrap: Vec<String>,
    pub topics: Vec<TopicSpec>,
    pub recorder: Recorder,
    pub trace: Trace,
    pub stop: StopFlag,
}

pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A kind of client activity run during the fault phase. `run` must return soon after
/// `ctx.stop` is raised (waiting only for what it already sent).
pub trait Workload: Send + Sync {
    fn name(&self) -> &'static str;
    fn run(&self, ctx: WorkloadCtx) -> BoxFuture;
}
