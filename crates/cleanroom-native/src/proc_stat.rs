//! `/proc/PID/stat`: a process's parent and start time, read in one call.
//!
//! Files under `/proc` report a size of 0, so `fs::read_to_string` would
//! start with 32 bytes and double, a `read` call per doubling, each of
//! which the kernel answers by formatting the file again up to that point.
//! [`read_sized`] reads into a buffer the file usually fits in.

use std::io::{self, Read};
use std::path::Path;

/// The text of `/proc/<pid>/stat`.
pub fn read(pid: u32) -> io::Result<String> {
    read_sized(format!("/proc/{pid}/stat"), 1024)
}

/// The whole text of the (`/proc`) file at `path`, read into a buffer of
/// `capacity` bytes first: one `read` when it fits, one more for its end.
pub fn read_sized(path: impl AsRef<Path>, capacity: usize) -> io::Result<String> {
    let mut text = String::with_capacity(capacity);
    std::fs::File::open(path)?.read_to_string(&mut text)?;
    Ok(text)
}

/// Field `n` (1-based, as in `man 5 proc`) of a stat line, for fields after
/// the command name (field 2, in parentheses, which may hold anything).
pub fn field(stat: &str, n: usize) -> Option<&str> {
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(n.checked_sub(3)?)
}

/// When the process started (field 22, clock ticks since boot).
pub fn start_time(stat: &str) -> Option<u64> {
    field(stat, 22)?.parse().ok()
}

/// Its parent's pid (field 4).
pub fn parent(stat: &str) -> Option<i32> {
    field(stat, 4)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn fields_after_a_name_with_spaces_and_parentheses() {
        let line = "42 (a b) c) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 0 0";
        assert_eq!(super::parent(line), Some(7));
        assert_eq!(super::start_time(line), Some(123456));
        let own = super::read(std::process::id()).expect("own stat");
        assert!(super::start_time(&own).is_some_and(|t| t > 0));
    }
}
