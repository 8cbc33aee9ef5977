//! Everything the CLI prints on stdout goes through here, so that a write
//! error is handled once: a closed pipe (`cleanroom doctor | head -1`) drops
//! the rest of the output quietly and leaves the exit status as it would have
//! been; any other error (`> /dev/full`) is remembered and ends the process
//! with one line on stderr and exit code 125 (see [`finish`]).
//!
//! SIGPIPE: Rust's runtime sets it to "ignore" before `main`, so a write to
//! a closed pipe returns `EPIPE` here instead of killing the process, and
//! [`finish`] decides the exit status. Children started through
//! `std::process::Command` get the default disposition back.

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::Serialize;

/// What has happened to stdout so far.
#[derive(Debug)]
enum Stdout {
    Open,
    /// The reader went away (`EPIPE`): the rest is dropped, not an error.
    Closed,
    /// Any other write error: reported by [`finish`].
    Failed(io::Error),
}

static STDOUT: Mutex<Stdout> = Mutex::new(Stdout::Open);

fn state() -> MutexGuard<'static, Stdout> {
    STDOUT.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Remembers a write error on stdout; the first one decides.
pub fn record(e: io::Error) {
    let mut s = state();
    if matches!(*s, Stdout::Open) {
        *s = if e.kind() == io::ErrorKind::BrokenPipe {
            Stdout::Closed
        } else {
            Stdout::Failed(e)
        };
    }
}

/// Whether output is still wanted (stdout has neither closed nor failed).
pub fn is_open() -> bool {
    matches!(*state(), Stdout::Open)
}

/// Writes with `write` to the locked stdout unless stdout already failed.
fn with_stdout(write: impl FnOnce(&mut io::StdoutLock<'static>) -> io::Result<()>) {
    if !is_open() {
        return;
    }
    if let Err(e) = write(&mut io::stdout().lock()) {
        record(e);
    }
}

/// Formatted text on stdout (what `say!` expands to).
pub fn print_fmt(args: fmt::Arguments<'_>) {
    with_stdout(|out| out.write_fmt(args));
}

/// Raw bytes on stdout.
pub fn print_bytes(bytes: &[u8]) {
    with_stdout(|out| out.write_all(bytes));
}

/// Flushes stdout and turns a write error into the process's outcome:
/// `code` when everything was written or the reader closed the pipe; one
/// line on stderr and 125 for any other error.
pub fn finish(code: ExitCode) -> ExitCode {
    with_stdout(|out| out.flush());
    let s = state();
    match &*s {
        Stdout::Open | Stdout::Closed => code,
        Stdout::Failed(e) => {
            eprintln!("cleanroom: error: writing to stdout: {}", describe(e));
            ExitCode::from(crate::EXIT_CLEANROOM_ERROR)
        }
    }
}

/// An io::Error's text without Rust's ` (os error N)` suffix.
fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// Prints `rows` under `header`, each column as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  ", w = *w));
            }
        }
        s.trim_end().to_string()
    };
    say!("{}", line(header.to_vec()));
    for row in rows {
        say!("{}", line(row.iter().map(String::as_str).collect()));
    }
}

/// Pretty JSON on stdout.
pub fn json(value: &impl Serialize) -> cleanroom::Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| cleanroom::Error::backend("cli", format!("encoding JSON: {e}")))?;
    say!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_error_suffix_is_dropped() {
        let e = io::Error::from_raw_os_error(28);
        assert_eq!(describe(&e), "No space left on device");
    }
}
