//! Async mutex: a thin wrapper over `tokio::sync::Mutex` (FIFO, deterministic under madsim).

use std::future::Future;

use openraft::async_runtime::Mutex;
use openraft::OptionalSend;

/// openraft's async mutex.
#[derive(Debug)]
pub struct TidemarkMutex<T>(tokio::sync::Mutex<T>);

impl<T: OptionalSend + 'static> Mutex<T> for TidemarkMutex<T> {
    type Guard<'a> = tokio::sync::MutexGuard<'a, T>;

    fn new(value: T) -> Self {
        Self(tokio::sync::Mutex::new(value))
    }

    fn lock(&self) -> impl Future<Output = Self::Guard<'_>> + OptionalSend {
        self.0.lock()
    }
}
