//! Tidemark's own openraft [`AsyncRuntime`].
//!
//! openraft 0.10 reaches tokio only through the `AsyncRuntime` trait. Its stock
//! `openraft-rt-tokio` binds the real `tokio` crate, which the madsim simulation cannot
//! intercept (it panics with "there is no reactor running"). This runtime is written against
//! the workspace `tokio` dependency (`madsim-tokio`), so the same code runs on real tokio in
//! production and on madsim's deterministic scheduler under `--cfg madsim`.
//!
//! It follows `openraft-rt-tokio`, except where tokio would leak non-determinism into the
//! simulation:
//! - [`Timeout`] is hand-written: madsim's `timeout()` type cannot be named in an associated
//!   type and madsim has no `timeout_at`.
//! - [`MadsimRng`] draws from `madsim::rand`, which is the seeded simulator RNG under madsim
//!   (openraft uses it for election timeouts, so it must replay identically per seed).
//! - [`TidemarkWatch`] replaces tokio's `watch`, whose notifier picks a slot with tokio's
//!   thread-local RNG and broke the determinism check on about a third of the seeds.
//! - `spawn_blocking` runs the closure inline in a simulated task under madsim, which forbids
//!   OS threads (tokio's blocking pool otherwise).
//!
//! mpsc, oneshot and mutex wrap tokio's: they are runtime-agnostic and deterministic.
//! `cfg(madsim)` appears only in the two private helpers `spawn_blocking` and `block_on`
//! (the latter a test-only entry point). The RNG needs no switch: `madsim::rand` exists in
//! both builds.

use std::future::Future;
use std::io;
use std::time::Duration;

use openraft::AsyncRuntime;
use openraft::OptionalSend;

mod instant;
mod mpsc;
mod mutex;
mod oneshot;
mod rng;
mod timeout;
mod watch;

#[cfg(test)]
mod tests;

pub use instant::TidemarkInstant;
pub use mpsc::TidemarkMpsc;
pub use mpsc::TidemarkMpscReceiver;
pub use mpsc::TidemarkMpscSender;
pub use mpsc::TidemarkMpscWeakSender;
pub use mutex::TidemarkMutex;
pub use oneshot::TidemarkOneshot;
pub use oneshot::TidemarkOneshotSender;
pub use rng::random_hex;
pub use rng::MadsimRng;
pub use timeout::Elapsed;
pub use timeout::Timeout;
pub use watch::TidemarkWatch;
pub use watch::TidemarkWatchReceiver;
pub use watch::TidemarkWatchSender;

/// The openraft runtime used by every Tidemark raft node, real or simulated.
///
/// It carries no state: tasks, timers and channels come from whichever runtime (tokio or
/// madsim) is driving the current thread, so openraft simply runs inside the application's
/// runtime. [`AsyncRuntime::new`] / [`AsyncRuntime::block_on`] exist only for openraft's
/// conformance tests and build a fresh runtime per call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TidemarkRuntime;

impl AsyncRuntime for TidemarkRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = tokio::task::JoinHandle<T>;
    type Sleep = tokio::time::Sleep;
    type Instant = TidemarkInstant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<T>;
    type ThreadLocalRng = MadsimRng;

    #[inline]
    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        tokio::task::spawn(future)
    }

    #[inline]
    fn sleep(duration: Duration) -> Self::Sleep {
        tokio::time::sleep(duration)
    }

    #[inline]
    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        tokio::time::sleep_until(deadline.into_inner())
    }

    #[inline]
    fn timeout<R, F: Future<Output = R> + OptionalSend>(duration: Duration, future: F) -> Self::Timeout<R, F> {
        Timeout::new(future, tokio::time::sleep(duration))
    }

    #[inline]
    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(deadline: Self::Instant, future: F) -> Self::Timeout<R, F> {
        Timeout::new(future, tokio::time::sleep_until(deadline.into_inner()))
    }

    #[inline]
    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    #[inline]
    fn thread_rng() -> Self::ThreadLocalRng {
        MadsimRng::new()
    }

    type Mpsc = TidemarkMpsc;
    type Watch = TidemarkWatch;
    type Oneshot = TidemarkOneshot;
    type Mutex<T: OptionalSend + 'static> = TidemarkMutex<T>;

    /// The thread count is ignored: `block_on` builds a single-threaded runtime, which is all
    /// openraft's tests need and matches madsim's single-threaded scheduler.
    fn new(_threads: usize) -> Self {
        TidemarkRuntime
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        block_on(future)
    }

    /// Overridden because the default spawns an OS thread, which madsim forbids.
    fn spawn_blocking<F, T>(f: F) -> impl Future<Output = Result<T, io::Error>> + Send
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let handle = spawn_blocking(f);
        async move { handle.await.map_err(io::Error::from) }
    }
}

/// On tokio, blocking work goes to tokio's blocking thread pool.
#[cfg(not(madsim))]
fn spawn_blocking<F, T>(f: F) -> tokio::task::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
}

/// Under madsim the closure runs inline, inside an ordinary simulated task on the simulator
/// thread: madsim forbids OS threads (its own `spawn_blocking` does the same but is
/// deprecated). Being a task, it still runs concurrently with the caller, is scheduled by the
/// seeded simulator, and dies with its node like the rest of the node's work.
#[cfg(madsim)]
fn spawn_blocking<F, T>(f: F) -> tokio::task::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn(async move { f() })
}

/// Runs `future` on a fresh current-thread tokio runtime (test entry point only).
#[cfg(not(madsim))]
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("failed to build a tokio runtime for TidemarkRuntime::block_on")
        .block_on(future)
}

/// Runs `future` on a fresh madsim runtime (seed 0). madsim-tokio's `Runtime` cannot be used
/// here: it only wraps the already-running simulation and has no current-thread builder.
#[cfg(madsim)]
fn block_on<F: Future>(future: F) -> F::Output {
    madsim::runtime::Runtime::new().block_on(future)
}
