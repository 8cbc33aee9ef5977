//! Copying a blob into the store on two threads: the caller's thread reads
//! and hashes, a `blob-writer` thread writes each chunk into the temp file
//! and then hands it on to the layer's extractor, if any. An import of a
//! large layer is bound by the thread that reads it: in the 200 MB benchmark
//! of issue 16 it was busy 0.28 s of the import's 0.30 s, a fifth of that
//! writing the blob. Written on a thread of its own, the blob no longer
//! holds up the read and the SHA-256.

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use cleanroom_core::{Error, Result};

use crate::digest::{Digest, Hasher};
use crate::fsutil::read_full;
use crate::stream::Pass;

/// Bytes read at a time.
const CHUNK: usize = 1 << 20;
/// Chunks read ahead of the writer.
const AHEAD: usize = 4;

/// Reads `reader` to its end into `file`, returning the digest and length
/// of what was read. Every chunk, once written, goes on to `pass` while the
/// extractor behind it listens. `progress` is called with the bytes read
/// so far. A read error is reported as such; a write error names `dest`.
pub(crate) fn copy_hashed<F: Write + Send>(
    mut reader: impl Read,
    file: F,
    pass: Option<Pass>,
    dest: &std::path::Path,
    progress: &mut dyn FnMut(u64),
) -> Result<(Digest, u64, F)> {
    // Buffers come back from whoever spent the chunk last: the extractor
    // when there is one, else the writer.
    let (to_writer, chunks) = sync_channel::<Vec<u8>>(AHEAD);
    let (on, spent) = match pass {
        Some(p) => {
            let (to, back) = p.into_parts();
            (Onward::Extractor(to), back)
        }
        None => {
            let (back_tx, back) = sync_channel(AHEAD + 2);
            (Onward::Spare(back_tx), back)
        }
    };
    std::thread::scope(|s| {
        let writer = std::thread::Builder::new()
            .name("blob-writer".into())
            .spawn_scoped(s, move || write_chunks(file, chunks, on))
            .map_err(|e| Error::io("starting a thread to write a blob", e))?;
        let mut hasher = Hasher::new();
        let read = read_chunks(&mut reader, &mut hasher, &to_writer, &spent, progress);
        drop(to_writer);
        let written = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        // A write error makes the reader stop early: report it first.
        let file = written.map_err(|e| Error::io(format!("writing into {}", dest.display()), e))?;
        read.map_err(|e| Error::io("reading a blob being imported", e))?;
        let size = hasher.len();
        Ok((hasher.finish(), size, file))
    })
}

/// Where a written chunk goes.
enum Onward {
    /// To the extractor, which sends the buffer back when done.
    Extractor(SyncSender<Vec<u8>>),
    /// Straight back to the reader.
    Spare(SyncSender<Vec<u8>>),
    /// Nowhere: the extractor stopped listening, the copy goes on.
    Dropped,
}

fn read_chunks(
    reader: &mut impl Read,
    hasher: &mut Hasher,
    to_writer: &SyncSender<Vec<u8>>,
    spent: &Receiver<Vec<u8>>,
    progress: &mut dyn FnMut(u64),
) -> io::Result<()> {
    loop {
        let mut buf = spent.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        let n = read_full(reader, &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        buf.truncate(n);
        hasher.update(&buf);
        progress(hasher.len());
        if to_writer.send(buf).is_err() {
            // The writer failed; its error is the one to report.
            return Ok(());
        }
    }
}

fn write_chunks<F: Write>(mut file: F, chunks: Receiver<Vec<u8>>, mut on: Onward) -> io::Result<F> {
    for chunk in chunks {
        file.write_all(&chunk)?;
        match &on {
            Onward::Extractor(to) => {
                if to.send(chunk).is_err() {
                    on = Onward::Dropped;
                }
            }
            Onward::Spare(back) => {
                let _ = back.try_send(chunk);
            }
            Onward::Dropped => {}
        }
    }
    file.flush()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_and_hashes_what_it_reads() {
        let data: Vec<u8> = (0..3 * CHUNK + 123).map(|i| (i * 7 % 251) as u8).collect();
        let mut seen = 0;
        let (d, n, out) = copy_hashed(
            data.as_slice(),
            Vec::new(),
            None,
            std::path::Path::new("test"),
            &mut |done| seen = done,
        )
        .unwrap();
        assert_eq!(out, data);
        assert_eq!(n, data.len() as u64);
        assert_eq!(seen, n);
        assert_eq!(d, Digest::of(&data));
    }

    #[test]
    fn a_trickling_source_still_makes_whole_chunks() {
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(1000);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        struct Writes(Vec<usize>);
        impl Write for Writes {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.push(buf.len());
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let data = vec![7u8; 2 * CHUNK + 10];
        let (d, _, w) = copy_hashed(
            Trickle(&data),
            Writes(Vec::new()),
            None,
            std::path::Path::new("test"),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(w.0, [CHUNK, CHUNK, 10]);
        assert_eq!(d, Digest::of(&data));
    }

    #[test]
    fn hands_every_chunk_on_in_order() {
        let data: Vec<u8> = (0..2 * CHUNK + 5).map(|i| (i % 13) as u8).collect();
        let (pass, blob) = crate::stream::pass(2);
        let crate::stream::Blob::Copied { chunks, .. } = blob else {
            unreachable!()
        };
        let received =
            std::thread::spawn(move || chunks.into_iter().flatten().collect::<Vec<u8>>());
        let (_, _, out) = copy_hashed(
            data.as_slice(),
            Vec::new(),
            Some(pass),
            std::path::Path::new("test"),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(out, data);
        assert_eq!(received.join().unwrap(), data);
    }

    #[test]
    fn a_write_error_names_the_destination() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let data = vec![1u8; 5 * CHUNK];
        let e = copy_hashed(
            data.as_slice(),
            Full,
            None,
            std::path::Path::new("/store/tmp"),
            &mut |_| {},
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("/store/tmp") && e.contains("disk full"), "{e}");
    }
}
