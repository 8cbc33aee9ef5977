//! One caller's connection to a named VM's agent: a port claimed with its
//! lock file (one caller per port at a time: QEMU's socket takes one
//! client), connected, and greeted (`Hello`, then everything up to the
//! matching `Welcome` is skipped: what a caller that went away left behind).

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use cleanroom_core::{Error, Result};

use crate::protocol::{self, Frame, Reply, Request};
use crate::vm::{port_socket, Link};
use crate::NAME;

/// Ports per named VM: port 0 for short requests (create, state, stop,
/// stats), the rest for commands, copies and logs, one caller each.
pub const PORTS: usize = 20;

/// The lock file of port `i`.
pub fn lock_file(dir: &Path, i: usize) -> std::path::PathBuf {
    dir.join(format!("port-{i}.lock"))
}

/// A connected, greeted port, held until dropped.
pub struct Port {
    stream: UnixStream,
    _lock: OwnedFd,
}

/// Which ports a request may use.
#[derive(Clone, Copy)]
pub enum Use {
    /// Port 0.
    Control,
    /// Any of the others.
    Command,
}

fn try_lock(path: &Path) -> std::io::Result<Option<OwnedFd>> {
    use rustix::fs::{FlockOperation, Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(fd)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl Port {
    /// Claims a free port for `what` (waiting up to `wait` for one), connects
    /// and greets the agent, whose replies may take up to `reply_wait`.
    pub fn open(dir: &Path, what: Use, wait: Duration, reply_wait: Duration) -> Result<Port> {
        let range: Vec<usize> = match what {
            Use::Control => vec![0],
            Use::Command => {
                // Start at a different port per caller so that parallel
                // callers rarely contend for one lock.
                use std::sync::atomic::{AtomicUsize, Ordering};
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                let start = (std::process::id() as usize + NEXT.fetch_add(1, Ordering::Relaxed))
                    % (PORTS - 1);
                (0..PORTS - 1)
                    .map(|k| 1 + (start + k) % (PORTS - 1))
                    .collect()
            }
        };
        let deadline = Instant::now() + wait;
        loop {
            for &i in &range {
                let lock = try_lock(&lock_file(dir, i)).map_err(|e| {
                    Error::io(
                        format!(
                            "opening the port lock in {} (is the VM removed?)",
                            dir.display()
                        ),
                        e,
                    )
                })?;
                if let Some(lock) = lock {
                    return Port::connect(dir, i, lock, reply_wait);
                }
            }
            if Instant::now() > deadline {
                return Err(Error::backend(
                    NAME,
                    format!(
                        "every port of the VM in {} stayed busy for {wait:?} (too many callers \
                         at once); try again",
                        dir.display()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn connect(dir: &Path, i: usize, lock: OwnedFd, reply_wait: Duration) -> Result<Port> {
        let path = port_socket(dir, i);
        let stream = UnixStream::connect(&path)
            .map_err(|e| Error::io(format!("connecting to the VM at {}", path.display()), e))?;
        let mut port = Port {
            stream,
            _lock: lock,
        };
        let nonce = {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or_default();
            t ^ ((std::process::id() as u64) << 32) ^ i as u64
        };
        port.set_read_timeout(Some(reply_wait))?;
        port.send(&Request::Hello { nonce })?;
        loop {
            match port.read()? {
                Frame::Message(Reply::Welcome { nonce: n }) if n == nonce => break,
                Frame::Message(Reply::Ready { version, .. }) if version != protocol::VERSION => {
                    return Err(Error::backend(
                        NAME,
                        format!(
                            "the guest agent speaks protocol {version}, this caller {}: rebuild \
                             both from one source",
                            protocol::VERSION
                        ),
                    ))
                }
                // A previous caller's leftovers, or the agent's Ready.
                _ => {}
            }
        }
        port.set_read_timeout(None)?;
        Ok(port)
    }

    pub fn send(&mut self, r: &Request) -> Result<()> {
        protocol::write_message(&mut self.stream, r)
            .map_err(|e| Error::backend(NAME, format!("sending to the VM's agent: {e}")))
    }

    pub fn send_data(&mut self, bytes: &[u8]) -> Result<()> {
        protocol::write_data(&mut self.stream, bytes)
            .map_err(|e| Error::backend(NAME, format!("sending to the VM's agent: {e}")))
    }
}

impl Link for Port {
    fn read(&mut self) -> Result<Frame<Reply>> {
        match protocol::read_frame::<Reply>(&mut self.stream) {
            Ok(Some(f)) => Ok(f),
            Ok(None) => Err(Error::backend(
                NAME,
                "the VM closed its port (its QEMU exited?)",
            )),
            Err(e) => Err(Error::backend(
                NAME,
                format!("reading from the VM's agent: {e}"),
            )),
        }
    }

    fn set_read_timeout(&mut self, t: Option<Duration>) -> Result<()> {
        self.stream
            .set_read_timeout(t)
            .map_err(|e| Error::io("setting the VM socket's timeout", e))
    }
}
