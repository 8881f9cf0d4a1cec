//! Where blocking storage work runs. On a real node an fsync must not stall the async
//! workers, so it goes to tokio's blocking pool; inside the madsim simulation there are
//! no OS threads and the memory engine never blocks, so it runs inline (which also keeps
//! the run deterministic). This is one of the few named `cfg(madsim)` places.

/// Runs `f`, which may block, without stalling the async runtime.
pub async fn run_blocking<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    #[cfg(madsim)]
    {
        f()
    }
    #[cfg(not(madsim))]
    {
        match tokio::task::spawn_blocking(f).await {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}
