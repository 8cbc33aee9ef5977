//! Layer blobs verified as they stream past: one thread reads each blob
//! once (from the store, or as an import copies it there), hashes it,
//! decompresses it, hashes the tar stream, and hands the tar bytes to the
//! extractor in chunks. Verifying and decompressing run on
//! one core while files are written on the other, the next layer is read
//! while the previous one is still being written, and a layer's digests are
//! known as soon as its last chunk has been taken.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::digest::{Digest, HashingReader};
use crate::fsutil::read_full;
use crate::image::Compression;
use crate::import::decompress;

/// Bytes handed over at a time.
const CHUNK: usize = 256 << 10;
/// Chunks in flight between the reader and the extractor.
const AHEAD: usize = 16;

/// One blob to stream.
pub(crate) enum Blob {
    /// A stored blob, read and hashed here.
    Stored {
        path: PathBuf,
        compression: Compression,
    },
    /// The chunks an import is copying into the store, which hashes them
    /// (see [`Pass`]); the compression is sniffed here. Spent chunks go
    /// back to the import through `back`.
    Copied {
        chunks: Receiver<Vec<u8>>,
        back: SyncSender<Vec<u8>>,
    },
}

/// What streaming a blob found.
pub(crate) struct Streamed {
    /// SHA-256 and size of a stored blob (`None` for a copied one, which
    /// the import hashes).
    pub(crate) digest: Option<(Digest, u64)>,
    /// SHA-256 of the uncompressed tar stream (`None` for a copied plain
    /// blob: the blob's own digest).
    pub(crate) diff_id: Option<Digest>,
}

/// The import's end of a [`Blob::Copied`]: every chunk the import has
/// hashed and written into the store is handed over whole (moved, not
/// copied), and buffers come back from the layer thread for the next
/// reads, so a layer's bytes are copied once, from the archive. When the
/// layer thread is gone the import goes on without it.
pub(crate) struct Pass {
    to: SyncSender<Vec<u8>>,
    back: Receiver<Vec<u8>>,
}

/// A [`Pass`] and the [`Blob::Copied`] it feeds, `ahead` chunks in flight.
pub(crate) fn pass(ahead: usize) -> (Pass, Blob) {
    let (to, chunks) = sync_channel(ahead);
    let (back_tx, back) = sync_channel(ahead + 2);
    (
        Pass { to, back },
        Blob::Copied {
            chunks,
            back: back_tx,
        },
    )
}

impl Pass {
    /// The sender of chunks (for the thread that writes the blob) and the
    /// receiver of spent buffers (for the thread that reads it).
    pub(crate) fn into_parts(self) -> (SyncSender<Vec<u8>>, Receiver<Vec<u8>>) {
        (self.to, self.back)
    }
}

/// A channel of a blob's bytes as a reader; spent chunks go `back`.
struct Chunks {
    rx: Receiver<Vec<u8>>,
    back: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(v) => {
                    let spent = std::mem::replace(&mut self.cur, v);
                    let _ = self.back.try_send(spent);
                    self.pos = 0;
                }
                Err(_) => return Ok(0), // the import closed it: the end
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Why a blob could not be streamed to its end.
pub(crate) enum Failure {
    Missing,
    /// Reading or decompressing failed.
    Unreadable(io::Error),
}

enum Msg {
    Data(Vec<u8>),
    End(Result<Streamed, Failure>),
}

/// The extractor's end: reads one blob's tar stream after the other;
/// [`Feed::end_layer`] moves on to the next.
pub(crate) struct Feed {
    rx: Option<Receiver<Msg>>,
    spare: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    ended: Option<Result<Streamed, Failure>>,
    thread: Option<JoinHandle<()>>,
}

/// Starts reading `blobs`, in order, on a thread of its own.
pub(crate) fn feed(blobs: Vec<Blob>) -> io::Result<Feed> {
    let (tx, rx) = sync_channel(AHEAD);
    let (spare, spares) = sync_channel(AHEAD + 2);
    let thread = std::thread::Builder::new()
        .name("layer-reader".into())
        .spawn(move || {
            for b in blobs {
                let end = match b {
                    Blob::Stored { path, compression } => File::open(&path)
                        .map_err(|e| match e.kind() {
                            io::ErrorKind::NotFound => Failure::Missing,
                            _ => Failure::Unreadable(e),
                        })
                        .map(|f| stream_one(f, true, Some(compression), &tx, &spares)),
                    Blob::Copied { chunks, back } => Ok(pass_copied(chunks, back, &tx, &spares)),
                };
                let end = match end {
                    Ok(Some(end)) => end,
                    Ok(None) => return, // the extractor stopped listening
                    Err(f) => Err(f),
                };
                if tx.send(Msg::End(end)).is_err() {
                    return;
                }
            }
        })?;
    Ok(Feed {
        rx: Some(rx),
        spare,
        cur: Vec::new(),
        pos: 0,
        ended: None,
        thread: Some(thread),
    })
}

/// Streams a copied blob: a plain one's chunks are handed on as they are
/// (the import hashes them) and the extractor's spent ones sent `back`; a
/// compressed one is decompressed and hashed.
fn pass_copied(
    rx: Receiver<Vec<u8>>,
    back: SyncSender<Vec<u8>>,
    tx: &SyncSender<Msg>,
    spares: &Receiver<Vec<u8>>,
) -> Option<Result<Streamed, Failure>> {
    // The import sends the 8 bytes it sniffed first, then the rest.
    let first = rx.recv().unwrap_or_default();
    if Compression::sniff(&first) == Compression::None {
        tx.send(Msg::Data(first)).ok()?;
        for chunk in rx.iter() {
            tx.send(Msg::Data(chunk)).ok()?;
            while let Ok(spent) = spares.try_recv() {
                if back.try_send(spent).is_err() {
                    break;
                }
            }
        }
        return Some(Ok(Streamed {
            digest: None,
            diff_id: None,
        }));
    }
    let chunks = Chunks {
        rx,
        back,
        cur: first,
        pos: 0,
    };
    stream_one(chunks, false, None, tx, spares)
}

/// Streams one blob, hashing it when `hash_blob`, sniffing its compression
/// when not given; `None` when the receiver is gone.
fn stream_one(
    source: impl Read,
    hash_blob: bool,
    compression: Option<Compression>,
    tx: &SyncSender<Msg>,
    spares: &Receiver<Vec<u8>>,
) -> Option<Result<Streamed, Failure>> {
    let mut blob = if hash_blob {
        HashingReader::new(source)
    } else {
        HashingReader::counting(source)
    };
    let mut head = Vec::new();
    let compression = match compression {
        Some(c) => c,
        None => match crate::import::read_head(&mut blob, 8) {
            Ok(h) => {
                head = h;
                Compression::sniff(&head)
            }
            Err(e) => return Some(Err(Failure::Unreadable(e))),
        },
    };
    let plain = compression == Compression::None;
    let tar = {
        // Chunk-sized reads of a plain blob bypass a small buffer.
        let cap = if plain { 64 << 10 } else { 1 << 20 };
        let raw = head
            .as_slice()
            .chain(BufReader::with_capacity(cap, &mut blob));
        let dec = match decompress(raw, compression) {
            Ok(d) => d,
            Err(e) => return Some(Err(Failure::Unreadable(e))),
        };
        // A plain blob's tar stream is the blob: hashed once, or not here.
        let mut tar = if plain {
            HashingReader::counting(dec)
        } else {
            HashingReader::new(dec)
        };
        loop {
            let mut buf = spares.try_recv().unwrap_or_default();
            buf.resize(CHUNK, 0);
            match read_full(&mut tar, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    tx.send(Msg::Data(buf)).ok()?;
                }
                Err(e) => return Some(Err(Failure::Unreadable(e))),
            }
        }
        tar.finish()
    };
    let (tar_digest, _) = match tar {
        Ok(t) => t,
        Err(e) => return Some(Err(Failure::Unreadable(e))),
    };
    Some(match blob.finish() {
        Ok((digest, size)) => Ok(match (hash_blob, plain) {
            (true, true) => Streamed {
                diff_id: Some(digest.clone()),
                digest: Some((digest, size)),
            },
            (true, false) => Streamed {
                diff_id: Some(tar_digest),
                digest: Some((digest, size)),
            },
            (false, true) => Streamed {
                diff_id: None,
                digest: None,
            },
            (false, false) => Streamed {
                diff_id: Some(tar_digest),
                digest: None,
            },
        }),
        Err(e) => Err(Failure::Unreadable(e)),
    })
}

impl Feed {
    fn next_msg(&mut self) -> io::Result<()> {
        let msg = self
            .rx
            .as_ref()
            .and_then(|rx| rx.recv().ok())
            .ok_or_else(|| io::Error::other("the layer reader thread stopped"))?;
        match msg {
            Msg::Data(v) => {
                let old = std::mem::replace(&mut self.cur, v);
                self.pos = 0;
                let _ = self.spare.try_send(old);
            }
            Msg::End(r) => {
                self.cur.clear();
                self.pos = 0;
                self.ended = Some(r);
            }
        }
        Ok(())
    }

    /// Skips what the extractor did not read of the current blob (hashing
    /// covers all of it) and returns what streaming it found.
    pub(crate) fn end_layer(&mut self) -> Result<Streamed, Failure> {
        while self.ended.is_none() {
            self.next_msg().map_err(Failure::Unreadable)?;
        }
        self.cur.clear();
        self.pos = 0;
        self.ended.take().expect("checked above")
    }
}

impl Read for Feed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.cur.len() {
                let n = buf.len().min(self.cur.len() - self.pos);
                buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.ended.is_some() {
                return Ok(0);
            }
            self.next_msg()?;
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        // A blocked sender sees the receiver gone and the thread ends.
        self.rx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
