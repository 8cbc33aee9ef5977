//! Bounded capture and live streaming of a command's output, shared by all
//! backends so that truncation and streaming behave the same everywhere.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Which stream a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A piece of output, sent as it is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputChunk {
    pub stream: Stream,
    pub bytes: Vec<u8>,
}

/// Where streamed output goes. Bounded: a slow reader slows the command
/// rather than growing memory.
pub type OutputSink = mpsc::Sender<OutputChunk>;

/// A sink and its receiver with room for `chunks` pending chunks.
pub fn output_channel(chunks: usize) -> (OutputSink, mpsc::Receiver<OutputChunk>) {
    mpsc::channel(chunks.max(1))
}

/// Output kept up to a byte limit; the rest is counted and dropped.
#[derive(Clone, Debug, Default)]
pub struct Captured {
    pub bytes: Vec<u8>,
    pub truncated: bool,
    /// All bytes read, kept or not.
    pub total: u64,
}

impl Captured {
    /// Keeps what fits under `limit` of `chunk`.
    pub fn push(&mut self, chunk: &[u8], limit: u64) {
        self.total += chunk.len() as u64;
        let room = limit.saturating_sub(self.bytes.len() as u64) as usize;
        if chunk.len() > room {
            self.truncated = true;
        }
        self.bytes
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
}

/// Reads `reader` to its end, keeping up to `limit` bytes and forwarding every
/// chunk to `sink` if there is one. Never stops reading early, so the writer
/// can never block on a full pipe because we stopped draining it.
pub async fn pump<R: AsyncRead + Unpin>(
    mut reader: R,
    stream: Stream,
    limit: u64,
    mut sink: Option<OutputSink>,
) -> std::io::Result<Captured> {
    let mut captured = Captured::default();
    // Read into spare capacity (`read_buf`), never zeroed: only the pages a
    // read fills are ever touched, so a quiet command costs no page at all
    // (zeroing 64 KiB per stream was 32 page faults per `cleanroom run`,
    // and more while the caller's pages are shared with a forked child).
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        buf.clear();
        let n = match reader.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        captured.push(&buf[..n], limit);
        if let Some(s) = &sink {
            let chunk = OutputChunk {
                stream,
                bytes: buf[..n].to_vec(),
            };
            if s.send(chunk).await.is_err() {
                // The receiver went away: keep capturing, stop forwarding.
                sink = None;
            }
        }
    }
    Ok(captured)
}

/// How long to wait for an output pump after the command's process group
/// is gone: a process that left the group (setsid) may hold the pipe open
/// forever.
pub const PIPE_GRACE: Duration = Duration::from_secs(2);

/// The output a [`pump`] task captured, waiting at most [`PIPE_GRACE`] for
/// it to finish; a pump still running then is stopped and its capture
/// flagged as truncated.
pub async fn collect_pump(mut task: JoinHandle<std::io::Result<Captured>>) -> Captured {
    match tokio::time::timeout(PIPE_GRACE, &mut task).await {
        Ok(Ok(Ok(c))) => c,
        Ok(_) => Captured::default(),
        Err(_) => {
            task.abort();
            Captured {
                truncated: true,
                ..Default::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_truncates_at_limit_and_counts_all() {
        let mut c = Captured::default();
        c.push(b"hello", 3);
        c.push(b"world", 3);
        assert_eq!(c.bytes, b"hel");
        assert!(c.truncated);
        assert_eq!(c.total, 10);
    }

    #[tokio::test]
    async fn pump_forwards_and_keeps() {
        let (tx, mut rx) = output_channel(4);
        let data: &[u8] = b"abc";
        let c = pump(data, Stream::Stderr, 2, Some(tx)).await.unwrap();
        assert_eq!(c.bytes, b"ab");
        let chunk = rx.recv().await.unwrap();
        assert_eq!(chunk.stream, Stream::Stderr);
        assert_eq!(chunk.bytes, b"abc");
    }
}
