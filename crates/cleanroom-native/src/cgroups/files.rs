//! Reading and writing cgroup files and directories, with errors that
//! name the file and the value.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long [`remove_tree`] retries a directory the kernel still calls busy.
const RMDIR_TIMEOUT: Duration = Duration::from_secs(5);

/// Writes `value` to a cgroup file in one `write(2)`, naming file and value
/// in the error.
pub(crate) fn write_file(path: &Path, value: &str) -> io::Result<()> {
    write_raw(path, value)
        .map_err(|e| annotate(e, format!("writing `{value}` to {}", path.display())))
}

/// [`write_file`] without the context, so the errno stays readable.
pub(crate) fn write_raw(path: &Path, value: &str) -> io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
}

/// `e` with `context` in front, keeping its kind.
pub(crate) fn annotate(e: io::Error, context: String) -> io::Error {
    io::Error::new(e.kind(), format!("{context}: {e}"))
}

/// Adds the pids in `dir/cgroup.procs` and below to `out`.
pub(crate) fn collect_procs(dir: &Path, out: &mut Vec<u32>) -> io::Result<()> {
    match fs::read_to_string(dir.join("cgroup.procs")) {
        Ok(text) => out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(annotate(
                e,
                format!("reading {}/cgroup.procs", dir.display()),
            ))
        }
    }
    for sub in subdirs(dir) {
        collect_procs(&sub, out)?;
    }
    Ok(())
}

/// The child cgroups of `dir`.
pub(crate) fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// Removes cgroup `dir` and its descendants, deepest first, retrying while
/// the kernel still reports them busy (tasks that are exiting).
pub(crate) fn remove_tree(dir: &Path) -> io::Result<()> {
    for sub in subdirs(dir) {
        remove_tree(&sub)?;
    }
    let start = Instant::now();
    let mut pause = Duration::from_micros(100);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < RMDIR_TIMEOUT => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(5));
            }
            Err(e) => {
                return Err(annotate(
                    e,
                    format!(
                        "removing cgroup {} (is a process still in it?)",
                        dir.display()
                    ),
                ))
            }
        }
    }
}

/// Removes cgroup `dir` and its descendants if none holds a process, once,
/// without waiting: for cleaning up on the way to something else.
pub(crate) fn remove_empty_tree(dir: &Path) -> io::Result<()> {
    for sub in subdirs(dir) {
        remove_empty_tree(&sub)?;
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
