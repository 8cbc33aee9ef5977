//! Reading a file a user points us at (a test file, `cleanroom.toml`,
//! `Cargo.toml`) without ever hanging or exhausting memory: only regular
//! files, at most [`MAX_INPUT_FILE`] bytes, opened without blocking.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest test or configuration file read: 16 MiB. A real one is a
/// few KiB; a generated one of 40,000 steps is about 10 MB and parses in
/// well under a second; anything larger is refused before it is read.
pub const MAX_INPUT_FILE: u64 = 16 << 20;

/// Why an input file was not read, as one line without the path (the
/// caller names the file in its own format).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFileError(pub String);

impl fmt::Display for InputFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads `path` as UTF-8 text when it is a regular file (directly or
/// through symlinks) of at most [`MAX_INPUT_FILE`] bytes. A FIFO, device,
/// socket, directory, symlink loop, oversized or non-UTF-8 file is an error
/// that says what the path is; nothing blocks and at most the cap is read.
pub fn read_input_file(path: &Path) -> Result<String, InputFileError> {
    // Checked before opening: opening a FIFO for reading would wait for a writer.
    let meta = std::fs::metadata(path).map_err(|e| InputFileError(open_error(&e)))?;
    check_regular(&meta)?;
    // O_NONBLOCK as well, in case the path was swapped for a FIFO since.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| InputFileError(open_error(&e)))?;
    let meta = file
        .metadata()
        .map_err(|e| InputFileError(format!("cannot be read: {e}")))?;
    check_regular(&meta)?;
    read_bounded(&mut file)
}

fn check_regular(meta: &Metadata) -> Result<(), InputFileError> {
    let kind = meta.file_type();
    let what = if kind.is_file() {
        if meta.len() > MAX_INPUT_FILE {
            return Err(too_big(meta.len()));
        }
        return Ok(());
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(InputFileError(format!(
        "is {what}, not a regular file; only regular files are read"
    )))
}

fn too_big(len: u64) -> InputFileError {
    InputFileError(format!(
        "is {:.1} MiB, over the {} MiB limit for test and configuration files",
        len as f64 / f64::from(1 << 20),
        MAX_INPUT_FILE >> 20
    ))
}

fn open_error(e: &std::io::Error) -> String {
    // ELOOP: a symlink loop (or a chain too long to follow).
    if e.raw_os_error() == Some(libc::ELOOP) {
        return "is a symlink loop (too many levels of symbolic links)".into();
    }
    format!("cannot be read: {e}")
}

/// Reads at most the cap (plus one byte, to notice a file that grew).
fn read_bounded(file: &mut File) -> Result<String, InputFileError> {
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| InputFileError(format!("cannot be read: {e}")))?;
    if bytes.len() as u64 > MAX_INPUT_FILE {
        return Err(too_big(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
        InputFileError(format!(
            "is not UTF-8 text (invalid byte 0x{:02x} on line {line}); save it as UTF-8",
            bytes[at]
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_of_bounded_size_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("ok.toml"), "a = 1\n").unwrap();
        assert_eq!(read_input_file(&d.join("ok.toml")).unwrap(), "a = 1\n");

        std::os::unix::fs::symlink("/dev/zero", d.join("zero.toml")).unwrap();
        let e = read_input_file(&d.join("zero.toml")).unwrap_err().0;
        assert!(e.contains("character device"), "{e}");

        std::os::unix::fs::symlink(d.join("loop.toml"), d.join("loop.toml")).unwrap();
        let e = read_input_file(&d.join("loop.toml")).unwrap_err().0;
        assert!(e.contains("symlink loop"), "{e}");

        let e = read_input_file(d).unwrap_err().0;
        assert!(e.contains("directory"), "{e}");

        let status = std::process::Command::new("mkfifo")
            .arg(d.join("fifo.toml"))
            .status()
            .unwrap();
        assert!(status.success());
        let e = read_input_file(&d.join("fifo.toml")).unwrap_err().0;
        assert!(e.contains("FIFO"), "{e}");

        let big = std::fs::File::create(d.join("big.toml")).unwrap();
        big.set_len(MAX_INPUT_FILE + 1).unwrap();
        let e = read_input_file(&d.join("big.toml")).unwrap_err().0;
        assert!(e.contains("over the 16 MiB limit"), "{e}");

        std::fs::write(d.join("latin1.toml"), b"a = 1\nb = \"\xe9\"\n").unwrap();
        let e = read_input_file(&d.join("latin1.toml")).unwrap_err().0;
        assert!(e.contains("not UTF-8") && e.contains("line 2"), "{e}");
    }
}
