//! The one bridge from synchronous code to async code: [`wait`].
//!
//! Every synchronous entry point of Cleanroom (the blocking API, the CLI's
//! commands, `Drop` clean-ups, lazy caches, the conformance and suite
//! runners) waits for its future here, so it behaves the same wherever it is
//! called from:
//!
//! - outside any tokio runtime, the future runs on the calling thread on the
//!   bridge's own runtime;
//! - on a multi-thread runtime, the same, inside
//!   [`tokio::task::block_in_place`], so the caller's other tasks move to
//!   another worker meanwhile;
//! - on a current-thread runtime (a plain `#[tokio::test]`), which cannot
//!   give its only thread away, on a helper thread, while the caller waits.
//!
//! A process that makes one call and exits (the CLI's `run`) uses
//! [`wait_here`] instead: a runtime on its own thread, no worker threads.
//!
//! The bridge's runtime is built once per process and has worker threads of
//! its own, so what a call starts in the background (a long-lived sandbox's
//! log reader, a container's removal) keeps running between calls and after
//! the caller's own runtime is gone. A future that needs the *caller's*
//! current-thread runtime to make progress (an I/O object created on it)
//! cannot finish while that runtime's only thread waits: create such objects
//! inside the future instead.

use std::future::Future;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

/// Worker threads of the bridge's runtime: enough to keep background tasks
/// moving while callers block; the heavy lifting happens on blocking threads.
const WORKERS: usize = 2;

/// The bridge's runtime, built on first use and kept for the process.
fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name("cleanroom-bridge")
            .enable_all()
            .build()
            // Only fails when the OS refuses threads or descriptors, and then
            // no synchronous call of Cleanroom can do anything.
            .expect("the OS refused to start the threads of cleanroom's runtime")
    })
}

/// Runs `fut` to completion from synchronous code and returns its output,
/// from inside or outside any tokio runtime (see the module docs). A panic
/// in `fut` is resumed in the caller.
pub fn wait<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => runtime().block_on(fut),
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| runtime().block_on(fut)),
        // A current-thread runtime (or a flavour we do not know) cannot hand
        // its thread over: wait on another one.
        Ok(_) => std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("cleanroom-bridge-wait".into())
                .spawn_scoped(s, || runtime().block_on(fut))
                .expect("the OS refused to start a thread for cleanroom's bridge")
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }),
    }
}

thread_local! {
    /// Whether this thread is running a [`wait_here`] call.
    static ONE_SHOT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `fut` to completion on a runtime of the calling thread alone, for a
/// process that makes this one call and then exits (the CLI's `run`).
///
/// No worker threads are started, and while it runs, [`inline_allowed`]
/// tells the backends that blocking work (making a plan, forking a sandbox)
/// may run right here instead of on a thread of its own: nothing else waits
/// for this thread. A one-shot `cleanroom run` used to start five threads
/// (two workers, a blocking thread, the spawner, and the runtime's own)
/// for one sandbox. What `fut` spawns and leaves running is dropped when
/// it returns, except clean-ups ([`spawn_cleanup`]), which [`drain`]
/// waits for at exit. Must not be called inside a runtime.
pub fn wait_here<F: Future>(fut: F) -> F::Output {
    /// Clears the flag however the call ends, panics included.
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            ONE_SHOT.with(|f| f.set(false));
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        // As for the bridge's own runtime: only without threads or
        // descriptors, when nothing could run anyway.
        .expect("the OS refused to start cleanroom's runtime");
    ONE_SHOT.with(|f| f.set(true));
    let _reset = Reset;
    let out = rt.block_on(fut);
    // Kept, not dropped: dropping it would wait here for the clean-ups on
    // its blocking threads, which the exit's `drain` waits for anyway, and
    // would cancel nothing that matters (the process ends next).
    std::mem::forget(rt);
    out
}

/// Whether blocking work may run on the calling thread rather than on a
/// thread of its own: true inside [`wait_here`], whose thread nothing else
/// needs meanwhile.
pub fn inline_allowed() -> bool {
    ONE_SHOT.with(|f| f.get())
}

/// Runs the blocking `f` off the async threads (`spawn_blocking`), or right
/// here when [`inline_allowed`]. Call from inside a tokio runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::result::Result<T, tokio::task::JoinError> {
    if inline_allowed() {
        return Ok(f());
    }
    tokio::task::spawn_blocking(f).await
}

/// Clean-ups still running in the background, and a signal when one ends.
static CLEANUPS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

fn cleanups_running() -> std::sync::MutexGuard<'static, usize> {
    CLEANUPS.0.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the blocking clean-up `f` (removing a cgroup, reaping a process) in
/// the background, on the current runtime's blocking threads, and counts it
/// until it ends, so that [`drain`] can wait for it before the process exits.
/// Call from inside a tokio runtime. Inside [`wait_here`] it runs at once,
/// on the calling thread: the process would wait for it at exit anyway, and
/// a thread for it costs more than the overlap gains.
pub fn spawn_cleanup(f: impl FnOnce() + Send + 'static) {
    if inline_allowed() {
        f();
        return;
    }
    *cleanups_running() += 1;
    tokio::task::spawn_blocking(move || {
        /// Counts the clean-up as ended however `f` ends, panics included.
        struct Ended;
        impl Drop for Ended {
            fn drop(&mut self) {
                *cleanups_running() -= 1;
                CLEANUPS.1.notify_all();
            }
        }
        let _ended = Ended;
        f();
    });
}

/// Waits, at most `limit`, for the clean-ups [`spawn_cleanup`] started.
/// The native backend calls it when the process exits (`atexit`): the
/// bridge's runtime lives as long as the process, so nothing else waits for
/// them, and a clean-up cut off by the exit leaves its cgroup behind. Returns whether
/// every clean-up ended.
pub fn drain(limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut running = cleanups_running();
    while *running > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        running = CLEANUPS
            .1
            .wait_timeout(running, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::wait;

    #[test]
    fn drain_waits_for_background_cleanups() {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        wait(async move {
            super::spawn_cleanup(move || {
                std::thread::sleep(std::time::Duration::from_millis(50));
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            });
        });
        assert!(super::drain(std::time::Duration::from_secs(10)));
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }

    /// A future that needs the runtime's timer and spawns a task, as the
    /// backends' futures do.
    async fn spawns_and_sleeps() -> u32 {
        let task = tokio::spawn(async {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            40
        });
        task.await.expect("the spawned task does not panic") + 2
    }

    #[test]
    fn waits_outside_any_runtime() {
        assert_eq!(wait(spawns_and_sleeps()), 42);
        // And again: the runtime is built once and reused.
        assert_eq!(wait(spawns_and_sleeps()), 42);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waits_inside_a_multi_thread_runtime() {
        assert_eq!(wait(spawns_and_sleeps()), 42);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn waits_inside_a_current_thread_runtime() {
        assert_eq!(wait(spawns_and_sleeps()), 42);
    }

    #[test]
    fn waits_in_a_blocking_task_of_a_current_thread_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime starts");
        let got =
            rt.block_on(async { tokio::task::spawn_blocking(|| wait(spawns_and_sleeps())).await });
        assert_eq!(got.expect("the blocking task does not panic"), 42);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn borrowed_data_and_panics_cross_the_bridge() {
        let text = String::from("borrowed");
        assert_eq!(wait(async { text.len() }), 8);
        let panicked = std::panic::catch_unwind(|| wait(async { panic!("inside") }));
        assert!(panicked.is_err());
    }

    #[test]
    fn a_drop_in_a_runtime_that_shuts_down_still_waits() {
        struct CleansUp(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for CleansUp {
            fn drop(&mut self) {
                let done = wait(async {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    true
                });
                self.0.store(done, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        for flavor in ["multi", "current"] {
            flag.store(false, std::sync::atomic::Ordering::SeqCst);
            let rt = match flavor {
                "multi" => tokio::runtime::Builder::new_multi_thread(),
                _ => tokio::runtime::Builder::new_current_thread(),
            }
            .enable_all()
            .build()
            .expect("a runtime starts");
            let guard = CleansUp(flag.clone());
            rt.spawn(async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            });
            drop(rt);
            assert!(
                flag.load(std::sync::atomic::Ordering::SeqCst),
                "{flavor}: the Drop's wait finished"
            );
        }
    }
}
