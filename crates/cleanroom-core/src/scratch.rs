//! Reusable receive buffers: a buffer is zeroed once, when first made, and
//! then handed from one reader to the next instead of a fresh zeroed
//! allocation per sandbox.
//!
//! Why it matters: while a native sandbox runs, its first process is a
//! copy-on-write fork of the caller, so every page the caller writes costs
//! a fault and a page copy. Zeroing a 256 KiB control-socket buffer and two
//! 64 KiB output buffers per run was about a tenth of the caller's CPU time
//! in a suite of 200 one-step tests (perf: `memset` under `read_loop` and
//! `pump`, in `do_wp_page`). The control socket's reader uses this pool;
//! the output pumps read into spare capacity and need no zeroed buffer.

use std::sync::Mutex;

/// Buffers of one size kept for reuse at most: the sandboxes a suite runs
/// at once, without holding a burst's memory forever.
const KEEP_PER_SIZE: usize = 8;

static FREE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn free() -> std::sync::MutexGuard<'static, Vec<Vec<u8>>> {
    // Plain buffers: still usable after a panic elsewhere.
    FREE.lock().unwrap_or_else(|p| p.into_inner())
}

/// A buffer of exactly `len` bytes that goes back to the pool when dropped.
/// It holds whatever its last user left in it: read only what you wrote.
pub struct Scratch(Vec<u8>);

/// A buffer of `len` bytes, reused when one of that size is free.
pub fn take(len: usize) -> Scratch {
    let mut free = free();
    let found = free.iter().position(|b| b.len() == len);
    let reused = found.map(|i| free.swap_remove(i));
    drop(free);
    Scratch(reused.unwrap_or_else(|| vec![0u8; len]))
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        let mut free = free();
        if free.iter().filter(|b| b.len() == buf.len()).count() < KEEP_PER_SIZE {
            free.push(buf);
        }
    }
}

impl std::ops::Deref for Scratch {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::take;

    #[test]
    fn a_dropped_buffer_is_reused_at_its_size_only() {
        // A size no other test of this process uses.
        let len = 12_345;
        let mut first = take(len);
        first[0] = 7;
        let at = first.as_ptr();
        drop(first);
        let again = take(len);
        assert_eq!(again.len(), len);
        assert_eq!(again.as_ptr(), at, "the freed buffer was not reused");
        let other = take(len + 1);
        assert_eq!(other.len(), len + 1);
        assert_ne!(other.as_ptr(), at);
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_per_size() {
        let len = 54_321;
        let many: Vec<_> = (0..20).map(|_| take(len)).collect();
        drop(many);
        let kept = super::free().iter().filter(|b| b.len() == len).count();
        assert_eq!(kept, super::KEEP_PER_SIZE);
    }
}
