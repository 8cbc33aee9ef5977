//! Running async engine calls from synchronous code (`Drop`, lazy caches).

use std::future::Future;

/// Runs the future `make` builds on a new thread with a runtime of its own
/// and waits for it: safe inside or outside any tokio runtime, and it cannot
/// deadlock the caller's. `None` when the runtime cannot start or the
/// thread panics.
pub(crate) fn block_on_own_thread<T, F>(make: impl FnOnce() -> F + Send + 'static) -> Option<T>
where
    T: Send + 'static,
    F: Future<Output = T>,
{
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        Some(rt.block_on(make()))
    })
    .join()
    .ok()
    .flatten()
}
