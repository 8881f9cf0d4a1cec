//! The key-value engine under Tidemark's Raft log store and state machines.
//!
//! ```text
//!   tidemark-raft (log store, state machines)
//!            │  SharedEngine = Arc<dyn Engine>
//!            ▼
//!   ┌─────────────────┬──────────────────────────────┐
//!   │ SledEngine      │ MemoryEngine                 │
//!   │ production      │ tests + madsim simulation    │
//!   │ (not in madsim) │ models unsynced-write loss,  │
//!   │                 │ torn tails and fsync faults  │
//!   └─────────────────┴──────────────────────────────┘
//! ```
//!
//! The engine is injected rather than chosen inside the node because sled spawns OS
//! threads, which the deterministic simulation forbids; the simulation needs an engine
//! whose durable state outlives a simulated process and can lose unsynced writes on cue.
//! Both engines pass the same [`conformance`] suite, so code tested on one behaves the
//! same on the other.

mod batch;
pub mod conformance;
mod error;
pub mod memory;
pub mod segment;
#[cfg(not(madsim))]
pub mod sled_engine;

pub use batch::{BatchOp, WriteBatch};
pub use error::{Result, StorageError};
pub use memory::MemoryEngine;
pub use segment::SegmentedEngine;
#[cfg(not(madsim))]
pub use sled_engine::SledEngine;

/// A handle to an engine shared by every Raft group of a node.
pub type SharedEngine = std::sync::Arc<dyn Engine>;

/// Named trees (keyspaces) of byte keys and values. Keys order lexicographically by bytes,
/// so callers encode numbers big-endian to get numeric order.
///
/// Writes become visible to readers immediately but are durable only after [`Engine::flush`]
/// returns `Ok`: this lets the log store group-commit many appends under one fsync.
pub trait Engine: Send + Sync + 'static {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn put(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<()>;
    fn delete(&self, tree: &str, key: &[u8]) -> Result<()>;
    /// Atomic within the tree: readers and crash recovery see all of the batch or none.
    /// Not durable until `flush`.
    fn write(&self, tree: &str, batch: WriteBatch) -> Result<()>;
    /// Ascending entries with start <= key < end (end None = unbounded), at most `limit`.
    fn range(&self, tree: &str, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// The greatest entry with start <= key < end, if any.
    fn last_in_range(&self, tree: &str, start: &[u8], end: Option<&[u8]>) -> Result<Option<(Vec<u8>, Vec<u8>)>>;
    /// Deletes every key with start <= key < end, atomically (one batch in both engines).
    /// Not durable until `flush`.
    fn delete_range(&self, tree: &str, start: &[u8], end: Option<&[u8]>) -> Result<()>;
    /// Makes every write that returned before this call durable (fsync). Blocking: callers
    /// run it on a blocking thread in production. An Err means durability is unknown; the
    /// caller must stop.
    fn flush(&self) -> Result<()>;
    /// Gives back space held by data that is no longer live, which may mean rewriting
    /// live data; returns the bytes rewritten (more than 0: call again, there may be more
    /// to do). Blocking, and it may take a while: call it off the write path, now and then
    /// (the broker does, with each retention pass).
    fn maintain(&self) -> Result<u64> {
        Ok(0)
    }
    /// Why the engine holds less than was synced to it, if it found damage to synced
    /// data (when opening, or on a read whose checksum failed). The report stays, across
    /// restarts, until [`Engine::clear_damage`]: until the layer above has repaired from
    /// its peers, what is left must not count towards any quorum.
    fn damage_report(&self) -> Option<String> {
        None
    }
    /// Forgets the damage report, once the repair it calls for is itself durable.
    fn clear_damage(&self) -> Result<()> {
        Ok(())
    }
}

/// True when `start <= key < end` can hold for no key. Checked up front because
/// `BTreeMap::range` panics on an inverted range and sled's behaviour there is unspecified.
pub(crate) fn range_is_empty(start: &[u8], end: Option<&[u8]>) -> bool {
    matches!(end, Some(end) if end <= start)
}
