//! `/proc/PID/stat`: a process's parent and start time, read in one call.
//!
//! The file reports a size of 0, so `fs::read_to_string` would start with
//! 32 bytes and double, six `read` calls for one line; these helpers read
//! it once into a buffer that always fits.

use std::io::{self, Read};

/// The text of `/proc/<pid>/stat`.
pub fn read(pid: u32) -> io::Result<String> {
    let mut text = String::with_capacity(1024);
    std::fs::File::open(format!("/proc/{pid}/stat"))?.read_to_string(&mut text)?;
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
