//! A hand-written watch channel.
//!
//! tokio's `watch` wakes receivers through a `BigNotify` that picks one of eight `Notify`
//! slots with tokio's thread-local RNG. That RNG is not madsim's, so wake-up order varied
//! between runs and `MADSIM_TEST_CHECK_DETERMINISM=1` failed on about a third of the seeds.
//! This channel keeps the same semantics with a single `Notify`, whose waiter list is FIFO.
//!
//! State: the value behind a `std::sync::RwLock`, a version counter bumped on every change
//! (while the write lock is held, so a reader holding the read lock sees the matching
//! version), and sender / receiver counts that decide "closed" on each side.

use std::pin::pin;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::RwLock;
use std::sync::RwLockReadGuard;

use openraft::async_runtime::watch::RecvError;
use openraft::async_runtime::watch::SendError;
use openraft::async_runtime::Watch;
use openraft::async_runtime::WatchReceiver;
use openraft::async_runtime::WatchSender;
use openraft::OptionalSend;
use openraft::OptionalSync;
use tokio::sync::Notify;

/// openraft's watch channel family.
#[derive(Debug, Clone, Copy)]
pub struct TidemarkWatch;

/// State shared by every handle of one channel.
#[derive(Debug)]
struct Shared<T> {
    value: RwLock<T>,
    /// Bumped (under the write lock) each time receivers should see a change.
    version: AtomicU64,
    /// Live senders; 0 means closed for receivers.
    senders: AtomicUsize,
    /// Live receivers; 0 makes `send` fail, as tokio's does.
    receivers: AtomicUsize,
    /// Wakes every receiver waiting in `changed` on a new version or on close.
    notify: Notify,
}

impl<T> Shared<T> {
    /// Lock poisoning is ignored: a panic inside a `send_if_modified` closure leaves a value
    /// that is still a valid `T`, and tokio's watch does not poison either.
    fn read(&self) -> RwLockReadGuard<'_, T> {
        self.value.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `modify` under the write lock; bumps the version and wakes receivers if it
    /// reports a change.
    fn modify<F: FnOnce(&mut T) -> bool>(&self, modify: F) -> bool {
        let modified = {
            let mut value = self.value.write().unwrap_or_else(PoisonError::into_inner);
            let modified = modify(&mut value);
            if modified {
                self.version.fetch_add(1, SeqCst);
            }
            modified
        };
        if modified {
            self.notify.notify_waiters();
        }
        modified
    }

    fn new_receiver(self: &Arc<Self>, seen: u64) -> TidemarkWatchReceiver<T> {
        self.receivers.fetch_add(1, SeqCst);
        TidemarkWatchReceiver { shared: Arc::clone(self), seen }
    }
}

/// Sending half of a [`TidemarkWatch`] channel. Cloneable; the channel closes for receivers
/// when the last clone is dropped.
#[derive(Debug)]
pub struct TidemarkWatchSender<T> {
    shared: Arc<Shared<T>>,
}

/// Receiving half of a [`TidemarkWatch`] channel.
#[derive(Debug)]
pub struct TidemarkWatchReceiver<T> {
    shared: Arc<Shared<T>>,
    /// The version this receiver has marked seen.
    seen: u64,
}

impl Watch for TidemarkWatch {
    type Sender<T: OptionalSend + OptionalSync> = TidemarkWatchSender<T>;
    type Receiver<T: OptionalSend + OptionalSync> = TidemarkWatchReceiver<T>;
    type Ref<'a, T: OptionalSend + 'a> = RwLockReadGuard<'a, T>;

    fn channel<T: OptionalSend + OptionalSync>(init: T) -> (Self::Sender<T>, Self::Receiver<T>) {
        let shared = Arc::new(Shared {
            value: RwLock::new(init),
            version: AtomicU64::new(0),
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(0),
            notify: Notify::new(),
        });
        let rx = shared.new_receiver(0);
        (TidemarkWatchSender { shared }, rx)
    }
}

impl<T> Clone for TidemarkWatchSender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, SeqCst);
        Self { shared: Arc::clone(&self.shared) }
    }
}

impl<T> Drop for TidemarkWatchSender<T> {
    /// The last sender closes the channel; waiting receivers must wake to return the error.
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, SeqCst) == 1 {
            self.shared.notify.notify_waiters();
        }
    }
}

impl<T> Clone for TidemarkWatchReceiver<T> {
    /// The clone starts with the same seen version, like tokio's.
    fn clone(&self) -> Self {
        self.shared.new_receiver(self.seen)
    }
}

impl<T> Drop for TidemarkWatchReceiver<T> {
    fn drop(&mut self) {
        self.shared.receivers.fetch_sub(1, SeqCst);
    }
}

impl<T: OptionalSend + OptionalSync> WatchSender<TidemarkWatch, T> for TidemarkWatchSender<T> {
    /// Fails, leaving the value untouched, when no receiver is left (tokio's contract).
    fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.shared.receivers.load(SeqCst) == 0 {
            return Err(SendError(value));
        }
        self.shared.modify(|slot| {
            *slot = value;
            true
        });
        Ok(())
    }

    fn send_if_modified<F>(&self, modify: F) -> bool
    where
        F: FnOnce(&mut T) -> bool,
    {
        self.shared.modify(modify)
    }

    fn borrow_watched(&self) -> RwLockReadGuard<'_, T> {
        self.shared.read()
    }

    /// The new receiver treats the current value as seen.
    fn subscribe(&self) -> TidemarkWatchReceiver<T> {
        let seen = self.shared.version.load(SeqCst);
        self.shared.new_receiver(seen)
    }
}

impl<T: OptionalSend + OptionalSync> TidemarkWatchReceiver<T> {
    /// Marks a newer version seen and reports `Ok`, else reports closure, else `None`.
    ///
    /// A pending change wins over closure so a final value sent just before the last sender
    /// dropped is still delivered (tokio's order).
    fn check(shared: &Shared<T>, seen: &mut u64) -> Option<Result<(), RecvError>> {
        let current = shared.version.load(SeqCst);
        if current != *seen {
            *seen = current;
            return Some(Ok(()));
        }
        if shared.senders.load(SeqCst) == 0 {
            return Some(Err(RecvError(())));
        }
        None
    }
}

impl<T: OptionalSend + OptionalSync> WatchReceiver<TidemarkWatch, T> for TidemarkWatchReceiver<T> {
    /// Cancel-safe: `seen` only advances when the future returns `Ok`.
    ///
    /// The `Notified` future is enabled *before* the state check, so a send or close that
    /// lands between the check and the await still wakes this waiter.
    async fn changed(&mut self) -> Result<(), RecvError> {
        loop {
            let mut notified = pin!(self.shared.notify.notified());
            notified.as_mut().enable();
            if let Some(result) = Self::check(&self.shared, &mut self.seen) {
                return result;
            }
            notified.await;
        }
    }

    fn borrow_watched(&self) -> RwLockReadGuard<'_, T> {
        self.shared.read()
    }

    /// The version is read while the read lock is held; versions only move under the write
    /// lock, so the version marked seen is exactly the returned value's.
    fn borrow_and_update(&mut self) -> RwLockReadGuard<'_, T> {
        let guard = self.shared.read();
        self.seen = self.shared.version.load(SeqCst);
        guard
    }
}
