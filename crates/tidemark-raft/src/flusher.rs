//! Group commit. Every Raft group on a node appends into one storage engine; instead of
//! one fsync per append, appends queue their completion here and one flush makes all of
//! them durable at once. Raft hears "appended" only after that flush, so a node never
//! acknowledges an entry it could lose in a crash.
//!
//! ```text
//!  group A append ─┐ write (not durable)        ┌─> A: io_completed(Ok)
//!  group B append ─┼─> queue ──> one flush() ───┼─> B: io_completed(Ok)
//!  save_vote      ─┘                            └─> vote: Ok
//! ```
//!
//! A failed flush poisons the flusher: after an fsync error nobody knows what reached the
//! disk, so every later flush fails too and the groups stop rather than carry on as if
//! their writes were safe.

use std::io;

use openraft::storage::IOFlushed;
use tidemark_storage::{SharedEngine, StorageError};
use tokio::sync::{mpsc, oneshot};

use crate::blocking::run_blocking;
use crate::types::TypeConfig;

enum Waiter {
    Log(IOFlushed<TypeConfig>),
    Notify(oneshot::Sender<Result<(), StorageError>>),
}

/// Handle to the node's group-commit task. Cheap to clone.
#[derive(Clone)]
pub struct Flusher {
    tx: mpsc::UnboundedSender<Waiter>,
}

impl Flusher {
    /// Starts the flush task for `engine`. It ends when every handle is dropped.
    pub fn start(engine: SharedEngine) -> Flusher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(flush_loop(engine, rx));
        Flusher { tx }
    }

    /// Reports `callback` complete once everything written so far is durable.
    pub fn after_flush(&self, callback: IOFlushed<TypeConfig>) {
        if let Err(mpsc::error::SendError(Waiter::Log(cb))) = self.tx.send(Waiter::Log(callback)) {
            cb.io_completed(Err(io::Error::other("storage flusher stopped")));
        }
    }

    /// Waits until everything written so far is durable.
    pub async fn flush(&self) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Waiter::Notify(tx)).map_err(|_| StorageError::Closed)?;
        rx.await.map_err(|_| StorageError::Closed)?
    }
}

async fn flush_loop(engine: SharedEngine, mut rx: mpsc::UnboundedReceiver<Waiter>) {
    let mut poisoned = false;
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while let Ok(next) = rx.try_recv() {
            batch.push(next);
        }
        let result = if poisoned {
            Err(StorageError::FsyncFailed { message: "an earlier fsync failed; the node must restart".into() })
        } else {
            let engine = engine.clone();
            run_blocking(move || engine.flush()).await
        };
        if let Err(e) = &result {
            poisoned = true;
            tracing::error!(error = %e, "storage flush failed; Raft groups on this node will stop");
        }
        for waiter in batch.drain(..) {
            match waiter {
                Waiter::Log(cb) => cb.io_completed(result.clone().map_err(|e| io::Error::other(e.to_string()))),
                Waiter::Notify(tx) => {
                    let _ = tx.send(result.clone());
                }
            }
        }
    }
}
