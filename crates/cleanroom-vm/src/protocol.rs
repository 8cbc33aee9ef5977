//! What the caller and the guest agent say over the virtio-serial port: a
//! versioned, serde-typed message in each direction, framed as a kind byte,
//! a big-endian u32 length and the body. Output chunks travel as raw bytes
//! (kinds 1 and 2) so that hundreds of MiB are not inflated by JSON.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use cleanroom_core::{Cmd, Enforcement, RunResult, SandboxSpec};
use serde::{Deserialize, Serialize};

/// Bumped whenever a message changes shape; the caller refuses an agent
/// that speaks another version.
pub const VERSION: u32 = 3;

/// The largest frame either side accepts.
const MAX_FRAME: u32 = 64 << 20;

const KIND_MESSAGE: u8 = 0;
const KIND_STDOUT: u8 = 1;
const KIND_STDERR: u8 = 2;
const KIND_DATA: u8 = 3;

/// Caller to agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Run `cmd` in a fresh native sandbox made from `spec` (whose host
    /// paths are already rewritten to where the guest sees them). Its
    /// output comes as output frames while it runs; the result that ends
    /// it carries no output bytes (the caller keeps what the limit allows),
    /// so no frame ever holds a whole large output.
    Run { spec: Box<SandboxSpec>, cmd: Cmd },
    /// Start the VM's one long-lived sandbox; answered by `Done`.
    Create {
        spec: Box<SandboxSpec>,
        main: Option<Cmd>,
    },
    /// Run a command in the long-lived sandbox: output frames, then
    /// `Finished` (without output bytes, as for `Run`).
    Exec { cmd: Cmd },
    /// The data frames just sent are a tar of one entry, to be copied to
    /// `path` in the sandbox; answered by `Done`.
    CopyIn { path: PathBuf },
    /// Copy `path` out of the sandbox: data frames holding a tar of it,
    /// then `Done`.
    CopyOut { path: PathBuf },
    /// The main process's output so far: `Logs`.
    Logs,
    /// Stop every process in the sandbox: `Done`.
    Stop,
    /// Power the guest off.
    Shutdown,
    /// The first request of every connection to a named VM's port: the
    /// agent answers `Welcome` with the same nonce, and the caller drops
    /// whatever it reads before that (output of a caller that went away
    /// mid-request on this port).
    Hello { nonce: u64 },
    /// Make the VM's named sandbox: the native backend's detached sandbox
    /// inside the guest, which the requests below then reach; `Done`.
    CreateNamed {
        spec: Box<SandboxSpec>,
        main: Option<Cmd>,
        name: String,
    },
    /// The named sandbox's state as the native backend inside sees it:
    /// `Info`.
    Info,
    /// Its resource use: `Stats`.
    Stats,
    /// Its main command's output (output frames, then `Done`); with
    /// `follow` until the main command exits.
    NamedLogs { tail: Option<usize>, follow: bool },
    /// Stop it: SIGTERM, SIGKILL after `grace_ms`; `Done`.
    NamedStop { grace_ms: u64 },
}

/// Agent to caller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// Sent once, when the agent is ready for requests.
    Ready {
        version: u32,
        /// The guest kernel's release (`uname -r`).
        kernel: String,
        /// Milliseconds from the guest kernel's start to this message.
        uptime_ms: u64,
    },
    Finished(Box<WireResult>),
    Failed {
        message: String,
    },
    /// A request without a result of its own succeeded.
    Done,
    Logs {
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    Welcome {
        nonce: u64,
    },
    Info(Box<cleanroom_core::SandboxInfo>),
    Stats(Box<cleanroom_core::Stats>),
}

/// A frame off the wire.
#[derive(Debug)]
pub enum Frame<M> {
    Message(M),
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// Bytes of a copy in or out (a tar stream), in order.
    Data(Vec<u8>),
}

/// [`RunResult`] as it travels (that type only serializes, lossily, for
/// reports): bytes kept as bytes, the duration in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireResult {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub oom_killed: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub duration_ms: u64,
    pub enforcement: Enforcement,
}

impl From<RunResult> for WireResult {
    fn from(r: RunResult) -> Self {
        WireResult {
            exit_code: r.exit_code,
            signal: r.signal,
            timed_out: r.timed_out,
            oom_killed: r.oom_killed,
            stdout: r.stdout,
            stderr: r.stderr,
            stdout_truncated: r.stdout_truncated,
            stderr_truncated: r.stderr_truncated,
            duration_ms: r.duration.as_millis() as u64,
            enforcement: r.enforcement,
        }
    }
}

impl WireResult {
    /// The result as the caller reports it, under the caller's own
    /// enforcement report.
    pub fn into_result(self, backend: &str, enforcement: Enforcement) -> RunResult {
        RunResult {
            exit_code: self.exit_code,
            signal: self.signal,
            timed_out: self.timed_out,
            oom_killed: self.oom_killed,
            stdout: self.stdout,
            stderr: self.stderr,
            stdout_truncated: self.stdout_truncated,
            stderr_truncated: self.stderr_truncated,
            duration: Duration::from_millis(self.duration_ms),
            backend: backend.to_string(),
            enforcement,
        }
    }
}

/// Writes one message frame.
pub fn write_message<M: Serialize>(w: &mut impl Write, m: &M) -> io::Result<()> {
    let body = serde_json::to_vec(m).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    write_frame(w, KIND_MESSAGE, &body)
}

/// Writes one output chunk frame.
pub fn write_output(w: &mut impl Write, stdout: bool, bytes: &[u8]) -> io::Result<()> {
    write_frame(w, if stdout { KIND_STDOUT } else { KIND_STDERR }, bytes)
}

/// Writes `bytes` as data frames of at most 1 MiB.
pub fn write_data(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    for piece in bytes.chunks(1 << 20) {
        write_frame(w, KIND_DATA, piece)?;
    }
    Ok(())
}

fn write_frame(w: &mut impl Write, kind: u8, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&l| l <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut head = [0u8; 5];
    head[0] = kind;
    head[1..].copy_from_slice(&len.to_be_bytes());
    w.write_all(&head)?;
    w.write_all(body)?;
    w.flush()
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub fn read_frame<M: for<'de> Deserialize<'de>>(r: &mut impl Read) -> io::Result<Option<Frame<M>>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut head[1..])?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    Ok(Some(match head[0] {
        KIND_MESSAGE => Frame::Message(
            serde_json::from_slice(&body)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
        ),
        KIND_STDOUT => Frame::Stdout(body),
        KIND_STDERR => Frame::Stderr(body),
        KIND_DATA => Frame::Data(body),
        k => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown frame kind {k}"),
            ))
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_output_round_trip() {
        let run = Request::Run {
            spec: Box::new(SandboxSpec::default()),
            cmd: Cmd::shell("echo hi").stdin(vec![0, 255]),
        };
        let done = Reply::Finished(Box::new(WireResult {
            exit_code: 137,
            signal: Some(9),
            timed_out: true,
            oom_killed: false,
            stdout: vec![0xff, 0, 1],
            stderr: b"err".to_vec(),
            stdout_truncated: true,
            stderr_truncated: false,
            duration_ms: 12,
            enforcement: Enforcement::new("vm"),
        }));
        let mut buf = Vec::new();
        write_message(&mut buf, &run).unwrap();
        write_output(&mut buf, false, b"\xfe\x00").unwrap();
        write_message(&mut buf, &done).unwrap();
        let mut r = buf.as_slice();
        match read_frame::<Request>(&mut r).unwrap() {
            Some(Frame::Message(m)) => assert_eq!(m, run),
            other => panic!("{other:?}"),
        }
        match read_frame::<Reply>(&mut r).unwrap() {
            Some(Frame::Stderr(b)) => assert_eq!(b, b"\xfe\x00"),
            other => panic!("{other:?}"),
        }
        match read_frame::<Reply>(&mut r).unwrap() {
            Some(Frame::Message(m)) => assert_eq!(m, done),
            other => panic!("{other:?}"),
        }
        assert!(read_frame::<Reply>(&mut r).unwrap().is_none());
    }

    #[test]
    fn oversized_and_unknown_frames_are_refused() {
        let mut r: &[u8] = &[0, 0xff, 0xff, 0xff, 0xff];
        assert!(read_frame::<Reply>(&mut r).is_err());
        let mut r: &[u8] = &[9, 0, 0, 0, 0];
        assert!(read_frame::<Reply>(&mut r).is_err());
    }
}
