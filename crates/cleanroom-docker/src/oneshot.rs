//! One-shot runs without an exec: the container's main process waits for
//! its one command on stdin, runs it, and reports the exit code in band.
//!
//! An exec costs Podman a conmon and a second runtime call (about 100 ms
//! here, against a few ms for a line written to a container's stdin that
//! is already attached), and Docker an exec create, start and inspect. So a
//! one-shot container's main process is [`WAITER`]: a shell that reads one
//! line, the command as shell words, and evaluates it. The line (see
//! [`command_line`]) runs the command in the foreground under `env -i`, in
//! its working directory, with stdin from `/dev/null`, and then prints a
//! trailer, a per-run random nonce and the exit code, on stdout and the
//! nonce on stderr. Each stream is one pipe, so everything the command wrote
//! comes before its trailer; both trailers seen, the result is complete.
//!
//! The container still dies with its owner: beside the command runs a
//! watcher reading the rest of stdin, which the owner holds open. At EOF
//! (the owner released the container, or died) it kills every process it
//! can signal — everything but the shell, which then ends the container, and
//! the engine removes it (`AutoRemove`). A container that is never sent a
//! command ends at EOF on its first read, as the `cat` keep-alive did.
//!
//! The nonce only has to be unlikely in the command's output: a command
//! that forged a trailer could only misreport its own result, which it
//! controls anyway.

use std::io::Read;
use std::time::Instant;

use bollard::container::{AttachContainerResults, LogOutput};
use bollard::models::ContainerCreateBody;
use cleanroom_core::{Captured, Error, OutputChunk, Result, Stream};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::errors::engine_error;
use crate::exec::{ExecOutput, ExecRequest};
use crate::sandbox::Container;

/// The main process of a one-shot container: run the one line it is sent;
/// end at once if its owner goes away first.
pub(crate) const WAITER: &str = "read -r s || exit 0; eval \"$s\"";

/// Lines longer than this go through an exec instead (a shell's `read`
/// takes a byte per system call).
const MAX_LINE: usize = 64 * 1024;

/// Makes `body` (an idle container's, from [`crate::container::create_body`])
/// a one-shot container's: [`WAITER`] as the main process, its output
/// attached.
pub(crate) fn waiting(mut body: ContainerCreateBody) -> ContainerCreateBody {
    body.entrypoint = Some(vec!["sh".into()]);
    body.cmd = Some(vec!["-c".into(), WAITER.into()]);
    body.attach_stdout = Some(true);
    body.attach_stderr = Some(true);
    body
}

/// Whether `req` can be sent to a waiting container: it has no stdin (the
/// container's stdin is the owner's keep-alive), no NUL byte, and fits a line.
pub(crate) fn can_send(req: &ExecRequest) -> bool {
    let words = req
        .argv
        .iter()
        .chain(req.env.keys())
        .chain(req.env.values())
        .chain(std::iter::once(&req.workdir));
    let mut len = 0;
    for w in words {
        if w.contains('\0') {
            return false;
        }
        len += w.len() + 8;
    }
    req.stdin.is_none() && len < MAX_LINE
}

/// `word` as one shell word; a newline (which would end the line `read`
/// takes) becomes `$nl`.
fn quote(word: &str) -> String {
    let mut q = String::with_capacity(word.len() + 2);
    q.push('\'');
    for ch in word.chars() {
        match ch {
            '\'' => q.push_str("'\\''"),
            '\n' => q.push_str("'\"$nl\"'"),
            c => q.push(c),
        }
    }
    q.push('\'');
    q
}

/// The line a waiting container runs for `req`, with trailers marked by `nonce`.
pub(crate) fn command_line(nonce: &str, req: &ExecRequest) -> String {
    let mut words: Vec<String> = vec!["env".into(), "-i".into()];
    words.extend(req.env.iter().map(|(k, v)| quote(&format!("{k}={v}"))));
    words.extend(req.argv.iter().map(|a| quote(a)));
    let command = words.join(" ");
    let mut line = String::new();
    let raw = req
        .argv
        .iter()
        .chain(req.env.keys())
        .chain(req.env.values());
    if raw
        .chain(std::iter::once(&req.workdir))
        .any(|w| w.contains('\n'))
    {
        // `$(...)` drops trailing newlines, so the `x` keeps this one.
        line.push_str("nl=$(printf '\\nx'); nl=${nl%x}; ");
    }
    // fd 3 keeps the owner's stdin for the watcher: a background job's own
    // stdin would be /dev/null.
    line.push_str(&format!(
        "n={nonce}; exec 3<&0; \
         cd -- {dir} 2>/dev/null || {{ printf '%s cd\\n' $n; printf '%s\\n' $n >&2; exit 0; }}; \
         (cat <&3 >/dev/null 2>&1; kill -9 -1) & \
         {command} </dev/null 3<&-; c=$?; \
         printf '%s %d\\n' $n $c; printf '%s\\n' $n >&2; wait\n",
        dir = quote(&req.workdir),
    ));
    line
}

/// 128 random bits in hex.
fn nonce() -> String {
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        // Unpredictable enough for a marker (see the module comment).
        use std::hash::{BuildHasher, Hasher};
        for half in bytes.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            half.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One stream's bytes with its trailer taken off.
struct Trailer {
    nonce: Vec<u8>,
    /// Bytes that may be the start of the trailer, held back until known.
    held: Vec<u8>,
    /// The trailer's text after the nonce, once the nonce was seen.
    tail: Option<Vec<u8>>,
}

impl Trailer {
    fn new(nonce: &str) -> Self {
        Trailer {
            nonce: nonce.as_bytes().to_vec(),
            held: Vec::new(),
            tail: None,
        }
    }

    /// The trailer's text (between the nonce and its newline), once whole.
    fn done(&self) -> Option<&[u8]> {
        let tail = self.tail.as_deref()?;
        let nl = tail.iter().position(|b| *b == b'\n')?;
        Some(&tail[..nl])
    }

    /// Takes in `bytes`; gives back those that are certainly the command's.
    /// What follows the trailer came from processes left in the background
    /// after the command ended, which a one-shot does not wait for.
    fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        if self.tail.is_some() {
            if self.done().is_none() {
                if let Some(tail) = self.tail.as_mut() {
                    tail.extend_from_slice(bytes);
                }
            }
            return Vec::new();
        }
        let mut data = std::mem::take(&mut self.held);
        data.extend_from_slice(bytes);
        if let Some(at) = find(&data, &self.nonce) {
            self.tail = Some(data[at + self.nonce.len()..].to_vec());
            data.truncate(at);
            return data;
        }
        // The longest end of `data` that could begin the nonce waits for
        // the next chunk.
        let keep = (1..self.nonce.len().min(data.len() + 1))
            .rev()
            .find(|&k| data.ends_with(&self.nonce[..k]))
            .unwrap_or(0);
        self.held = data.split_off(data.len() - keep);
        data
    }

    /// What was held back, when the stream ended without a trailer.
    fn rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Runs `req` (which [`can_send`] allowed) in the waiting container `c`;
/// a timeout kills the container.
pub(crate) async fn run(c: &Container, req: ExecRequest) -> Result<ExecOutput> {
    let Some(mut conn) = c.take_attach() else {
        return Err(Error::backend(
            c.engine(),
            format!(
                "container {} has no attach connection to send a command on",
                c.id
            ),
        ));
    };
    let res = exchange(c, &mut conn, req).await;
    // Back where the container's owner holds it: releasing the container
    // closes it.
    c.put_attach(conn);
    res
}

async fn exchange(
    c: &Container,
    conn: &mut AttachContainerResults,
    req: ExecRequest,
) -> Result<ExecOutput> {
    let engine = c.engine();
    let nonce = nonce();
    let line = command_line(&nonce, &req);
    let deadline = req.timeout.map(|t| Instant::now() + t);
    let sent = async {
        conn.input.write_all(line.as_bytes()).await?;
        conn.input.flush().await
    };
    sent.await.map_err(|e| {
        Error::backend(
            engine,
            format!("sending the command to container {}: {e}", c.id),
        )
    })?;

    let (mut out, mut err) = (Trailer::new(&nonce), Trailer::new(&nonce));
    let (mut stdout, mut stderr) = (Captured::default(), Captured::default());
    let mut sink = req.sink;
    let mut timed_out = false;
    let mut ended = false;
    while out.done().is_none() || err.done().is_none() {
        let next = conn.output.next();
        let item = match deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), next).await {
                Ok(item) => item,
                Err(_) => {
                    timed_out = true;
                    break;
                }
            },
            None => next.await,
        };
        let (stream, bytes) = match item {
            None => {
                ended = true;
                break;
            }
            Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                (Stream::Stdout, out.feed(&message))
            }
            Some(Ok(LogOutput::StdErr { message })) => (Stream::Stderr, err.feed(&message)),
            Some(Ok(LogOutput::StdIn { .. })) => continue,
            Some(Err(e)) => return Err(engine_error(engine, &c.id, "reading the output", e)),
        };
        deliver(
            stream,
            bytes,
            &mut stdout,
            &mut stderr,
            &mut sink,
            req.limit,
        )
        .await;
    }
    if ended {
        let (o, e) = (out.rest(), err.rest());
        deliver(
            Stream::Stdout,
            o,
            &mut stdout,
            &mut stderr,
            &mut sink,
            req.limit,
        )
        .await;
        deliver(
            Stream::Stderr,
            e,
            &mut stdout,
            &mut stderr,
            &mut sink,
            req.limit,
        )
        .await;
    }
    if timed_out {
        // The whole container: every process the command started.
        c.kill().await?;
        return Ok(ExecOutput {
            exit_code: 137,
            timed_out,
            stdout,
            stderr,
        });
    }
    let code = out
        .done()
        .map(|t| String::from_utf8_lossy(t).trim().to_string());
    match code.as_deref() {
        Some("cd") => Err(Error::backend(
            engine,
            format!(
                "the working directory `{}` does not exist in container {}, or the user cannot \
                 enter it; create it first (a mount, or the image) or pick another",
                req.workdir, c.id
            ),
        )),
        Some(code) => match code.parse::<i64>() {
            Ok(exit_code) => Ok(ExecOutput {
                exit_code,
                timed_out,
                stdout,
                stderr,
            }),
            Err(_) => Err(Error::backend(
                engine,
                format!("container {} reported exit code {code:?}", c.id),
            )),
        },
        None => Err(Error::backend(
            engine,
            format!(
                "container {} ended before its command reported an exit code (killed from \
                 outside, or its shell out of memory); stderr: {}",
                c.id,
                String::from_utf8_lossy(&stderr.bytes).trim()
            ),
        )),
    }
}

/// Keeps `bytes` of `stream` and passes them to the sink, if any is still
/// listening.
async fn deliver(
    stream: Stream,
    bytes: Vec<u8>,
    stdout: &mut Captured,
    stderr: &mut Captured,
    sink: &mut Option<cleanroom_core::OutputSink>,
    limit: u64,
) {
    if bytes.is_empty() {
        return;
    }
    match stream {
        Stream::Stdout => stdout.push(&bytes, limit),
        Stream::Stderr => stderr.push(&bytes, limit),
    }
    if let Some(s) = sink {
        if s.send(OutputChunk { stream, bytes }).await.is_err() {
            *sink = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_every_byte_on_one_line() {
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("a\nb"), "'a'\"$nl\"'b'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn a_trailer_split_across_chunks_is_taken_off() {
        let mut t = Trailer::new("abcd");
        let mut got = t.feed(b"hello ab");
        assert_eq!(got, b"hello ");
        got.extend(t.feed(b"x "));
        assert_eq!(got, b"hello abx ");
        got.extend(t.feed(b"ab"));
        got.extend(t.feed(b"cd 4"));
        assert!(t.done().is_none());
        got.extend(t.feed(b"2\nlater"));
        assert_eq!(got, b"hello abx ");
        assert_eq!(t.done(), Some(&b" 42"[..]));
    }

    #[test]
    fn output_without_a_trailer_is_kept_whole() {
        let mut t = Trailer::new("abcd");
        let mut got = t.feed(b"tail a");
        got.extend(t.rest());
        assert_eq!(got, b"tail a");
    }
}
