//! [`MemoryEngine`]: an in-memory engine that models durability, for tests and the
//! deterministic simulation.
//!
//! ```text
//!   put / delete / write / delete_range
//!        │
//!        ├──► visible   (what reads see)
//!        └──► unsynced  (ordered ops since the last successful flush)
//!                 │ flush()                    │ crash(keep)
//!                 ▼                            ▼
//!             durable  ◄── first `keep` unsynced ops survive; visible := durable
//! ```
//!
//! It uses no OS threads, system time or OS randomness, and only ordered maps, so a
//! simulation run stays a function of its seed. Clones share one state: the harness owns
//! the engine and hands a clone to each incarnation of a node, so what was synced survives
//! a simulated kill / restart while what was not can be lost by [`MemoryEngine::crash`].

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{range_is_empty, BatchOp, Engine, Result, StorageError, WriteBatch};

type Tree = BTreeMap<Vec<u8>, Vec<u8>>;
type Trees = BTreeMap<String, Tree>;

/// One write as recorded in the unsynced list. A batch or a range delete is one op, so a
/// crash keeps it whole or loses it whole, matching sled's atomic batch recovery.
#[derive(Clone, Debug)]
enum Op {
    Put { tree: String, key: Vec<u8>, value: Vec<u8> },
    Delete { tree: String, key: Vec<u8> },
    Batch { tree: String, batch: WriteBatch },
    DeleteRange { tree: String, start: Vec<u8>, end: Option<Vec<u8>> },
}

impl Op {
    fn apply(&self, trees: &mut Trees) {
        match self {
            Op::Put { tree, key, value } => {
                tree_mut(trees, tree).insert(key.clone(), value.clone());
            }
            Op::Delete { tree, key } => {
                if let Some(t) = trees.get_mut(tree) {
                    t.remove(key);
                }
            }
            Op::Batch { tree, batch } => {
                let t = tree_mut(trees, tree);
                for op in batch.ops() {
                    match op {
                        BatchOp::Put { key, value } => {
                            t.insert(key.clone(), value.clone());
                        }
                        BatchOp::Delete { key } => {
                            t.remove(key);
                        }
                    }
                }
            }
            Op::DeleteRange { tree, start, end } => {
                if let Some(t) = trees.get_mut(tree) {
                    let doomed: Vec<Vec<u8>> = entries(t, start, end.as_deref()).map(|(k, _)| k.clone()).collect();
                    for key in doomed {
                        t.remove(&key);
                    }
                }
            }
        }
    }
}

fn tree_mut<'a>(trees: &'a mut Trees, name: &str) -> &'a mut Tree {
    trees.entry(name.to_owned()).or_default()
}

/// Entries with start <= key < end, ascending; empty for an inverted range instead of
/// panicking like `BTreeMap::range` would.
fn entries<'a>(
    tree: &'a Tree,
    start: &[u8],
    end: Option<&[u8]>,
) -> Box<dyn DoubleEndedIterator<Item = (&'a Vec<u8>, &'a Vec<u8>)> + 'a> {
    if range_is_empty(start, end) {
        return Box::new(std::iter::empty());
    }
    let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
    Box::new(tree.range::<[u8], _>((Bound::Included(start), upper)))
}

#[derive(Default, Debug)]
struct State {
    visible: Trees,
    durable: Trees,
    unsynced: Vec<Op>,
    fsync_noop: bool,
    fsync_error: bool,
    flush_count: u64,
    crash_count: u64,
    damaged: Option<String>,
}

impl State {
    fn record(&mut self, op: Op) {
        op.apply(&mut self.visible);
        self.unsynced.push(op);
    }
}

/// In-memory [`Engine`] with a durable / visible split and disk-fault switches.
/// `Clone` shares the state (see the module docs).
#[derive(Clone, Default, Debug)]
pub struct MemoryEngine {
    state: Arc<Mutex<State>>,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }

    /// A panic while holding the lock cannot leave `State` half-updated in a way that
    /// matters more than the panic itself, so poisoning is ignored rather than propagated.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Simulates power loss: the visible state becomes the durable state plus the first
    /// `keep_unsynced` unsynced operations (0 loses every unsynced write; a prefix models a
    /// torn tail). The survivors are on "disk" now, so they become durable: a second crash
    /// does not lose them. Values above [`Self::unsynced_len`] keep everything.
    pub fn crash(&self, keep_unsynced: usize) {
        let mut st = self.lock();
        let st = &mut *st;
        let keep = keep_unsynced.min(st.unsynced.len());
        for op in st.unsynced.drain(..).take(keep) {
            op.apply(&mut st.durable);
        }
        st.visible = st.durable.clone();
        st.crash_count += 1;
    }

    /// Simulates a replaced or wiped disk: everything, synced or not, is gone. Call it
    /// while the node is down; it then starts as a fresh, empty node.
    pub fn wipe(&self) {
        let mut st = self.lock();
        st.visible = Trees::default();
        st.durable = Trees::default();
        st.unsynced.clear();
        st.crash_count += 1;
    }

    /// Simulates damage to synced data, as the segment log reports it when it opens: the
    /// keys of `tree` for which `doomed` holds are gone (synced or not), and the engine
    /// reports `why` until [`Engine::clear_damage`]. Call it while the node is down.
    pub fn damage(&self, tree: &str, doomed: impl Fn(&[u8]) -> bool, why: &str) {
        let mut st = self.lock();
        let st = &mut *st;
        for op in st.unsynced.drain(..) {
            op.apply(&mut st.durable);
        }
        if let Some(t) = st.durable.get_mut(tree) {
            t.retain(|k, _| !doomed(k));
        }
        st.visible = st.durable.clone();
        st.damaged = Some(why.to_owned());
        st.crash_count += 1;
    }

    /// Planted bug for checker self-tests: `flush()` returns Ok but makes nothing durable.
    pub fn set_fsync_noop(&self, on: bool) {
        self.lock().fsync_noop = on;
    }

    /// Disk fault: `flush()` returns [`StorageError::FsyncFailed`] and makes nothing durable.
    pub fn set_fsync_error(&self, on: bool) {
        self.lock().fsync_error = on;
    }

    /// Operations written since the last effective flush (a batch or range delete is one).
    pub fn unsynced_len(&self) -> usize {
        self.lock().unsynced.len()
    }

    /// Calls to `flush()`, whatever their outcome: lets tests see how well writes were
    /// group-committed.
    pub fn flush_count(&self) -> u64 {
        self.lock().flush_count
    }

    /// Calls to [`Self::crash`].
    pub fn crash_count(&self) -> u64 {
        self.lock().crash_count
    }
}

impl Engine for MemoryEngine {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let st = self.lock();
        Ok(st.visible.get(tree).and_then(|t| t.get(key)).cloned())
    }

    fn put(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<()> {
        self.lock().record(Op::Put { tree: tree.to_owned(), key: key.to_vec(), value: value.to_vec() });
        Ok(())
    }

    fn delete(&self, tree: &str, key: &[u8]) -> Result<()> {
        self.lock().record(Op::Delete { tree: tree.to_owned(), key: key.to_vec() });
        Ok(())
    }

    fn write(&self, tree: &str, batch: WriteBatch) -> Result<()> {
        if !batch.is_empty() {
            self.lock().record(Op::Batch { tree: tree.to_owned(), batch });
        }
        Ok(())
    }

    fn range(&self, tree: &str, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let st = self.lock();
        let Some(t) = st.visible.get(tree) else {
            return Ok(Vec::new());
        };
        let found = entries(t, start, end).take(limit).map(|(k, v)| (k.clone(), v.clone())).collect();
        Ok(found)
    }

    fn last_in_range(&self, tree: &str, start: &[u8], end: Option<&[u8]>) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let st = self.lock();
        let Some(t) = st.visible.get(tree) else {
            return Ok(None);
        };
        let found = entries(t, start, end).next_back().map(|(k, v)| (k.clone(), v.clone()));
        Ok(found)
    }

    fn delete_range(&self, tree: &str, start: &[u8], end: Option<&[u8]>) -> Result<()> {
        if !range_is_empty(start, end) {
            self.lock().record(Op::DeleteRange {
                tree: tree.to_owned(),
                start: start.to_vec(),
                end: end.map(<[u8]>::to_vec),
            });
        }
        Ok(())
    }

    fn damage_report(&self) -> Option<String> {
        self.lock().damaged.clone()
    }

    fn clear_damage(&self) -> Result<()> {
        self.lock().damaged = None;
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        let mut st = self.lock();
        let st = &mut *st;
        st.flush_count += 1;
        if st.fsync_error {
            return Err(StorageError::FsyncFailed {
                message: "injected fsync error (MemoryEngine::set_fsync_error)".to_owned(),
            });
        }
        if st.fsync_noop {
            // The planted bug: claim success, keep everything unsynced.
            return Ok(());
        }
        for op in st.unsynced.drain(..) {
            op.apply(&mut st.durable);
        }
        Ok(())
    }
}
