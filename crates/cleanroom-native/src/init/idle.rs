//! A long-lived sandbox's init gives back what it no longer needs before it
//! waits: it (and the supervisor sharing its address space) started as a
//! copy of the creating `cleanroom` process, whose heap and the pages of
//! the program it ran are still resident though the init will rarely touch
//! them again. Both come back on demand, at the cost of a page fault.

/// How long a long-lived sandbox's init waits with nothing to do before it
/// gives its memory back: long enough that a burst of requests does not
/// fault the code back in for each one.
pub(super) const QUIET: std::time::Duration = std::time::Duration::from_secs(2);

/// Returns the heap's free memory to the kernel and unmaps the resident
/// pages of this program's code until they are used again.
pub(super) fn release_memory() {
    // Linker-defined bounds of the executable's text (GNU ld and lld both
    // define them for every ELF executable).
    extern "C" {
        static __executable_start: u8;
        static etext: u8;
    }
    // SAFETY: glibc's malloc_trim only hands free heap pages back to the
    // kernel; every live allocation stays where it is.
    unsafe {
        libc::malloc_trim(0);
    }
    let page = 4096usize;
    // Only the symbols' addresses are taken; neither is read.
    let start = std::ptr::addr_of!(__executable_start) as usize;
    let end = std::ptr::addr_of!(etext) as usize;
    let start = start & !(page - 1);
    if end <= start {
        return;
    }
    // SAFETY: the range is this program's own read-only, file-backed
    // headers, read-only data and code, which nothing writes (no text
    // relocations): MADV_DONTNEED drops this process's mappings of those
    // pages and the next access maps them again from the file (the page
    // cache keeps them), so no content changes. MADV_PAGEOUT would also
    // evict them, but the kernel allows it only to the file's owner, which
    // a sandbox's user namespace is not.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
    }
}
