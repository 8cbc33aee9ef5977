//! The main process's output of a detached sandbox: two files in its state
//! directory used in turn, so the log is bounded (at most two files of
//! [`FILE_CAP`]) and the newest output is always kept.
//!
//! Each file starts with its generation (a little-endian `u64`; 0 or a
//! short file: unused), then records of one stream byte (1 stdout, 2
//! stderr), a little-endian `u32` length and the bytes. The init writes
//! them through descriptors the caller opened (after `pivot_root` it cannot
//! reach host paths); when the current file is full it empties the other
//! and continues there with the next generation. Readers order the two by
//! generation.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use cleanroom_core::Stream;

/// Bytes per file, records included; the log holds at most twice this.
pub const FILE_CAP: u64 = 1 << 20;
/// The two files, in the sandbox's state directory.
pub const FILES: [&str; 2] = ["log.0", "log.1"];
const HEADER: u64 = 8;
const RECORD_HEADER: u64 = 5;

/// The init's writer.
pub struct Writer {
    files: [OwnedFd; 2],
    current: usize,
    generation: u64,
    offset: u64,
}

impl Writer {
    /// Starts generation 1 in the first file.
    pub fn new(files: [OwnedFd; 2]) -> std::io::Result<Writer> {
        let mut w = Writer {
            files,
            current: 1,
            generation: 0,
            offset: 0,
        };
        w.rotate()?;
        Ok(w)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.current = 1 - self.current;
        self.generation += 1;
        let f = self.files[self.current].as_fd();
        rustix::fs::ftruncate(f, 0)?;
        write_all_at(f, &self.generation.to_le_bytes(), 0)?;
        self.offset = HEADER;
        Ok(())
    }

    /// Appends one record; output larger than a file keeps its end.
    pub fn write(&mut self, stream: Stream, mut bytes: &[u8]) -> std::io::Result<()> {
        let room = (FILE_CAP - HEADER - RECORD_HEADER) as usize;
        if bytes.len() > room {
            bytes = &bytes[bytes.len() - room..];
        }
        if self.offset + RECORD_HEADER + bytes.len() as u64 > FILE_CAP {
            self.rotate()?;
        }
        let tag = match stream {
            Stream::Stdout => 1u8,
            Stream::Stderr => 2u8,
        };
        let mut record = Vec::with_capacity(RECORD_HEADER as usize + bytes.len());
        record.push(tag);
        record.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        record.extend_from_slice(bytes);
        write_all_at(self.files[self.current].as_fd(), &record, self.offset)?;
        self.offset += record.len() as u64;
        Ok(())
    }
}

fn write_all_at(
    fd: std::os::fd::BorrowedFd<'_>,
    mut buf: &[u8],
    mut at: u64,
) -> std::io::Result<()> {
    while !buf.is_empty() {
        match rustix::io::pwrite(fd, buf, at) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                at += n as u64;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Where a reader is: which generation, and how far into its file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub generation: u64,
    pub offset: u64,
}

/// One record read back.
pub type Record = (Stream, Vec<u8>);

/// Reads every complete record after `from` in the log in `dir`, oldest
/// first, and where the next read continues.
pub fn read_from(dir: &Path, from: Position) -> std::io::Result<(Vec<Record>, Position)> {
    let mut files: Vec<(u64, Vec<u8>)> = Vec::new();
    for name in FILES {
        let data = match std::fs::read(dir.join(name)) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if data.len() < HEADER as usize {
            continue;
        }
        let generation = u64::from_le_bytes(data[..8].try_into().unwrap_or_default());
        if generation > 0 && generation >= from.generation {
            files.push((generation, data));
        }
    }
    files.sort_by_key(|(g, _)| *g);
    let mut records = Vec::new();
    let mut at = from;
    for (generation, data) in files {
        let mut offset = if generation == from.generation {
            from.offset.max(HEADER)
        } else {
            HEADER
        } as usize;
        while offset + RECORD_HEADER as usize <= data.len() {
            let len =
                u32::from_le_bytes(data[offset + 1..offset + 5].try_into().unwrap_or_default())
                    as usize;
            let start = offset + RECORD_HEADER as usize;
            if start + len > data.len() {
                break;
            }
            let stream = if data[offset] == 2 {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            records.push((stream, data[start..start + len].to_vec()));
            offset = start + len;
        }
        at = Position {
            generation,
            offset: offset as u64,
        };
    }
    Ok((records, at))
}

/// The last `n` lines of `records` (a line ends at `\n`; each stream's
/// records keep their order).
pub fn tail(records: Vec<Record>, n: usize) -> Vec<Record> {
    let mut lines = 0;
    let mut keep = Vec::new();
    for (stream, bytes) in records.into_iter().rev() {
        // Positions of line ends, newest first; a trailing newline ends the
        // last line rather than starting an empty one.
        let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let newlines: Vec<usize> = body
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i)
            .collect();
        let in_record = newlines.len() + 1;
        if lines + in_record >= n {
            let cut = n - lines;
            let start = if cut == 0 {
                bytes.len()
            } else if cut > newlines.len() {
                0
            } else {
                newlines[cut - 1] + 1
            };
            if start < bytes.len() {
                keep.push((stream, bytes[start..].to_vec()));
            }
            break;
        }
        lines += if bytes.is_empty() { 0 } else { in_record };
        keep.push((stream, bytes));
    }
    keep.reverse();
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> [OwnedFd; 2] {
        FILES.map(|n| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(dir.join(n))
                .unwrap()
                .into()
        })
    }

    fn text(records: &[Record]) -> String {
        records
            .iter()
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[test]
    fn records_come_back_in_order_with_their_stream() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = Writer::new(open(tmp.path())).unwrap();
        w.write(Stream::Stdout, b"a\n").unwrap();
        w.write(Stream::Stderr, b"b\n").unwrap();
        let (r, at) = read_from(tmp.path(), Position::default()).unwrap();
        assert_eq!(
            r,
            vec![
                (Stream::Stdout, b"a\n".to_vec()),
                (Stream::Stderr, b"b\n".to_vec())
            ]
        );
        w.write(Stream::Stdout, b"c\n").unwrap();
        let (r, _) = read_from(tmp.path(), at).unwrap();
        assert_eq!(text(&r), "c\n");
    }

    #[test]
    fn the_log_is_bounded_and_keeps_the_newest() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = Writer::new(open(tmp.path())).unwrap();
        let line = vec![b'x'; 1000];
        for i in 0..5000u32 {
            w.write(Stream::Stdout, &line).unwrap();
            w.write(Stream::Stdout, format!("{i}\n").as_bytes())
                .unwrap();
        }
        let total: u64 = FILES
            .iter()
            .map(|n| std::fs::metadata(tmp.path().join(n)).unwrap().len())
            .sum();
        assert!(total <= 2 * FILE_CAP, "{total}");
        let (r, _) = read_from(tmp.path(), Position::default()).unwrap();
        assert!(text(&r).ends_with("4999\n"));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let r = vec![
            (Stream::Stdout, b"1\n2\n".to_vec()),
            (Stream::Stderr, b"3\n".to_vec()),
            (Stream::Stdout, b"4\n5\n".to_vec()),
        ];
        assert_eq!(text(&tail(r.clone(), 2)), "4\n5\n");
        assert_eq!(text(&tail(r.clone(), 3)), "3\n4\n5\n");
        assert_eq!(text(&tail(r.clone(), 4)), "2\n3\n4\n5\n");
        assert_eq!(text(&tail(r.clone(), 10)), "1\n2\n3\n4\n5\n");
        assert_eq!(text(&tail(r, 0)), "");
    }
}
