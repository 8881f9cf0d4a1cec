//! The deterministic simulation of a Tidemark cluster. Real node code, booted through
//! `Node::start` exactly as the binary does, runs inside madsim on simulated hosts; the
//! harness owns each node's memory engine so synced state survives kill and restart.
//! The harness exists only under `--cfg madsim`; workloads and checkers are plain SDK
//! code, shared with the real-process tests.

#[cfg(madsim)]
pub mod harness;
pub mod workload;
