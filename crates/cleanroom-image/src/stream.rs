//! Layer blobs verified as they stream past: one thread reads each blob
//! once, hashes it, decompresses it, hashes the tar stream, and hands the
//! tar bytes to the extractor in chunks. Verifying and decompressing run on
//! one core while files are written on the other, the next layer is read
//! while the previous one is still being written, and a layer's digests are
//! known as soon as its last chunk has been taken.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::digest::{Digest, HashingReader};
use crate::image::Compression;
use crate::import::decompress;

/// Bytes handed over at a time.
const CHUNK: usize = 256 << 10;
/// Chunks in flight between the reader and the extractor.
const AHEAD: usize = 16;

/// One blob to stream.
pub(crate) struct Blob {
    pub(crate) path: PathBuf,
    pub(crate) compression: Compression,
}

/// What streaming a blob found.
pub(crate) struct Streamed {
    /// SHA-256 and size of the blob as stored.
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    /// SHA-256 of the uncompressed tar stream.
    pub(crate) diff_id: Digest,
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
            for b in &blobs {
                let Some(end) = stream_one(b, &tx, &spares) else {
                    return; // the extractor stopped listening
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

/// Streams one blob; `None` when the receiver is gone.
fn stream_one(
    b: &Blob,
    tx: &SyncSender<Msg>,
    spares: &Receiver<Vec<u8>>,
) -> Option<Result<Streamed, Failure>> {
    let f = match File::open(&b.path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(Err(Failure::Missing)),
        Err(e) => return Some(Err(Failure::Unreadable(e))),
    };
    let plain = b.compression == Compression::None;
    let mut blob = HashingReader::new(f);
    let tar = {
        // Chunk-sized reads of a plain blob bypass a small buffer.
        let cap = if plain { 64 << 10 } else { 1 << 20 };
        let dec = match decompress(BufReader::with_capacity(cap, &mut blob), b.compression) {
            Ok(d) => d,
            Err(e) => return Some(Err(Failure::Unreadable(e))),
        };
        // A plain blob's tar stream is the blob: hashed once.
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
        Ok((digest, size)) => Ok(Streamed {
            diff_id: if plain { digest.clone() } else { tar_digest },
            digest,
            size,
        }),
        Err(e) => Err(Failure::Unreadable(e)),
    })
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
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
