//! The deterministic simulation of a Tidemark cluster. Real node code, booted through
//! `Node::start` exactly as the binary does, runs inside madsim on simulated hosts; the
//! harness owns each node's memory engine so synced state survives kill and restart.
//!
//! ```text
//!   scenario ──> harness (nodes) ──> nemesis (faults) ──> workloads (SDK) ──> checkers
//!                                                      └─ trace ─> fingerprint
//!   runner (main.rs) ──> one madsim runtime per seed, one seed per OS thread
//! ```
//!
//! The harness, nemesis, workloads and scenario exist only under `--cfg madsim`; the
//! checkers and the history they judge are plain code (unit-tested on any build), and the
//! simple `workload` functions are shared with the real-process tests.

pub mod checkers;
#[cfg(madsim)]
mod chunks;
#[cfg(madsim)]
pub mod harness;
#[cfg(madsim)]
pub mod nemesis;
pub mod regressions;
#[cfg(madsim)]
pub mod replicas;
#[cfg(madsim)]
pub mod runner;
#[cfg(madsim)]
pub mod scenario;
pub mod trace;
pub mod workload;
