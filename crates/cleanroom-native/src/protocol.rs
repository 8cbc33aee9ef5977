//! The messages between a caller and a sandbox's init: one serde enum,
//! [`Message`], shared by both sides, sent as JSON over a `SOCK_SEQPACKET`
//! socket. One `sendmsg` is one message, so framing is free, and file
//! descriptors (the pipes of an exec) travel with the message that needs
//! them.
//!
//! Every channel opens with the init's [`Message::Hello`] (or, on the
//! socket a sandbox is created over, [`Message::Ready`]) carrying
//! [`VERSION`]: a caller of another version stops there with "sandbox was
//! created by cleanroom X; this is Y" instead of misreading what follows.
//! The init side uses the blocking functions here; the caller side calls
//! the same functions on a non-blocking socket from an `AsyncFd`.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The protocol's version: raised whenever [`Message`] changes shape. The
/// string-tagged protocol before it counts as 1.
pub const VERSION: u32 = 3;
/// This build's release, named in version-mismatch errors.
pub const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// Largest message either side sends (file data goes in chunks of [`CHUNK`]).
pub const MAX_MESSAGE: usize = 256 * 1024;
/// Bytes of file data per copy message (at most twice as many when encoded).
pub const CHUNK: usize = 64 * 1024;

/// Bytes that are usually text (paths, arguments, file contents): sent as
/// a JSON string when they are UTF-8, else as `{"hex": "..."}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl From<&[u8]> for Bytes {
    fn from(b: &[u8]) -> Self {
        Bytes(b.to_vec())
    }
}

impl From<&str> for Bytes {
    fn from(s: &str) -> Self {
        Bytes(s.as_bytes().to_vec())
    }
}

impl Bytes {
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// As a path (Unix paths are bytes).
    pub fn as_path(&self) -> &std::path::Path {
        use std::os::unix::ffi::OsStrExt;
        std::path::Path::new(std::ffi::OsStr::from_bytes(&self.0))
    }

    pub fn from_path(p: &std::path::Path) -> Self {
        use std::os::unix::ffi::OsStrExt;
        Bytes(p.as_os_str().as_bytes().to_vec())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum BytesRepr<'a> {
    #[serde(borrow)]
    Text(std::borrow::Cow<'a, str>),
    Hex {
        hex: String,
    },
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => {
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                let mut hex = String::with_capacity(self.0.len() * 2);
                for b in &self.0 {
                    hex.push(DIGITS[(b >> 4) as usize] as char);
                    hex.push(DIGITS[(b & 15) as usize] as char);
                }
                BytesRepr::Hex { hex }.serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match BytesRepr::deserialize(d)? {
            BytesRepr::Text(t) => Ok(Bytes(t.into_owned().into_bytes())),
            BytesRepr::Hex { hex } => {
                let digit = |c: u8| match c {
                    b'0'..=b'9' => Some(c - b'0'),
                    b'a'..=b'f' => Some(c - b'a' + 10),
                    _ => None,
                };
                let raw = hex.as_bytes();
                if raw.len() % 2 != 0 {
                    return Err(serde::de::Error::custom("odd-length hex bytes"));
                }
                raw.chunks(2)
                    .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
                    .collect::<Option<Vec<u8>>>()
                    .map(Bytes)
                    .ok_or_else(|| serde::de::Error::custom("bad hex digit"))
            }
        }
    }
}

/// A terminal's size, for an exec with a pseudo-terminal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

/// Every message either side sends. Requests carry an `id` the caller
/// picked; every reply names the request it answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    // ---- init to caller, first on a channel ----
    /// The first message on every connection to a named sandbox's socket.
    Hello {
        version: u32,
        release: String,
    },
    /// Set-up done (sent once, on the socket the sandbox was created over),
    /// with the sandbox's network and user namespaces attached. `init_pid`
    /// is the init's pid as the caller sees it; `supervisor_pid` the
    /// process that waits for it.
    Ready {
        version: u32,
        release: String,
        init_pid: u32,
        supervisor_pid: u32,
    },
    /// Set-up failed, or the peer may not use this sandbox.
    Fail {
        reason: String,
    },

    // ---- caller to init ----
    /// The sandbox's cgroup, made by the caller while its first child was
    /// creating the namespaces (a one-shot run, see
    /// [`crate::plan::Plan::cgroup_later`]): `v1` `tasks` files, then, if
    /// `v2`, the v2 `cgroup.procs` file and directory, attached in that
    /// order. The first message to the first child, before anything else.
    Cgroup {
        v1: u32,
        v2: bool,
    },
    /// Run a command. Its stdin, stdout and stderr come attached, except
    /// with `tty`: then the init makes a pseudo-terminal and attaches its
    /// controlling side to the [`Message::Started`] reply (the caller
    /// resizes it through that descriptor).
    Exec {
        id: u64,
        argv: Vec<Bytes>,
        env: Vec<Bytes>,
        cwd: Bytes,
        /// 0: no timeout.
        timeout_ms: u64,
        tty: Option<WindowSize>,
    },
    /// SIGTERM to every process, SIGKILL after `grace_ms` (0: SIGKILL now).
    Stop {
        id: u64,
        grace_ms: u64,
    },
    Mkdir {
        id: u64,
        path: Bytes,
        mode: u32,
    },
    /// Create (or with `append`, extend) a file, never through a symlink.
    Write {
        id: u64,
        path: Bytes,
        mode: u32,
        append: bool,
        data: Bytes,
    },
    Symlink {
        id: u64,
        target: Bytes,
        path: Bytes,
    },
    /// Send a file, symlink or directory tree back as `Dir`/`File`/`More`/
    /// `Link` messages, then `Done`.
    Get {
        id: u64,
        path: Bytes,
    },
    /// A TCP connection to the sandbox's loopback port, for a published port.
    Connect {
        id: u64,
        port: u16,
    },
    /// The sandbox's network and user namespaces, for a sandbox joining it
    /// as a pod from another process (replied with [`Message::Ns`]).
    Namespaces {
        id: u64,
    },

    // ---- init to caller, replies ----
    /// An exec with a terminal started; its controlling side is attached.
    Started {
        id: u64,
    },
    /// A command ended: `code` (128+N for signal N), `signal` (0: none).
    Exit {
        id: u64,
        code: i32,
        signal: i32,
        timed_out: bool,
    },
    Ok {
        id: u64,
    },
    Err {
        id: u64,
        reason: String,
    },
    Dir {
        id: u64,
        rel: Bytes,
        mode: u32,
    },
    File {
        id: u64,
        rel: Bytes,
        mode: u32,
        data: Bytes,
    },
    More {
        id: u64,
        data: Bytes,
    },
    Link {
        id: u64,
        rel: Bytes,
        target: Bytes,
    },
    Done {
        id: u64,
    },
    /// The connection asked for, attached.
    Conn {
        id: u64,
    },
    /// The network and user namespaces asked for, attached in that order.
    Ns {
        id: u64,
    },
}

impl Message {
    /// The request a message belongs to; `None` for the channel's own
    /// messages (hello, ready, fail).
    pub fn id(&self) -> Option<u64> {
        use Message::*;
        match self {
            Hello { .. } | Ready { .. } | Fail { .. } | Cgroup { .. } => None,
            Exec { id, .. }
            | Stop { id, .. }
            | Mkdir { id, .. }
            | Write { id, .. }
            | Symlink { id, .. }
            | Get { id, .. }
            | Connect { id, .. }
            | Namespaces { id }
            | Started { id }
            | Exit { id, .. }
            | Ok { id }
            | Err { id, .. }
            | Dir { id, .. }
            | File { id, .. }
            | More { id, .. }
            | Link { id, .. }
            | Done { id }
            | Conn { id }
            | Ns { id } => Some(*id),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // A derived Serialize of plain data into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(buf: &[u8]) -> io::Result<Message> {
        serde_json::from_slice(buf).map_err(|e| {
            // A peer of another version may send a message this one does
            // not know: name its version when it says one.
            let version = serde_json::from_slice::<serde_json::Value>(buf)
                .ok()
                .and_then(|v| find_version(&v));
            let hint = match version {
                Some(v) if v != VERSION => {
                    format!(" (the peer speaks protocol {v}, this is {VERSION})")
                }
                _ => String::new(),
            };
            bad(&format!("{e}{hint}"))
        })
    }
}

/// The `version` field of a hello or ready message of any version.
pub fn find_version(v: &serde_json::Value) -> Option<u32> {
    let inner = v.as_object()?.values().next()?;
    inner.get("version")?.as_u64().map(|n| n as u32)
}

/// The error for a sandbox whose init speaks another protocol version.
pub fn version_mismatch(release: &str, version: u32) -> String {
    format!(
        "sandbox was created by cleanroom {release} (protocol {version}); this is cleanroom {RELEASE} (protocol {VERSION}): stop it with that version, or remove it with `cleanroom rm -f`"
    )
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed message between caller and sandbox init: {what}"),
    )
}

/// The most descriptors one message carries: a cgroup's files are up to
/// five (three v1 hierarchies, the v2 `cgroup.procs` and directory).
const MAX_FDS: usize = 8;

/// Sends `msg` with `fds` attached. Never raises SIGPIPE.
pub fn send(sock: BorrowedFd<'_>, msg: &Message, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let bytes = msg.encode();
    if bytes.len() > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "message of {} bytes is larger than the {MAX_MESSAGE} the sandbox protocol allows",
                bytes.len()
            ),
        ));
    }
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors for one message",
        ));
    }
    send_bytes(sock, &bytes, fds)
}

/// Room for the ancillary data of `n` descriptors: `small` (room for
/// [`MAX_FDS`], on the stack) when that is enough, else `large` grown to fit.
fn rights_space<'a>(
    n: usize,
    small: &'a mut [MaybeUninit<u8>],
    large: &'a mut Vec<MaybeUninit<u8>>,
) -> &'a mut [MaybeUninit<u8>] {
    if n <= MAX_FDS {
        small
    } else {
        large.resize(rustix::cmsg_space!(ScmRights(n)), MaybeUninit::uninit());
        large
    }
}

/// Sends one datagram of `bytes` with `fds` attached (any number the
/// kernel takes, `SCM_MAX_FD` = 253). Never raises SIGPIPE.
pub fn send_bytes(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let iov = [IoSlice::new(bytes)];
    let mut small = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut large = Vec::new();
    let mut control = SendAncillaryBuffer::new(rights_space(fds.len(), &mut small, &mut large));
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors for one message",
        ));
    }
    loop {
        match rustix::net::sendmsg(sock, &iov, &mut control, SendFlags::NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one message and the descriptors sent with it (close-on-exec).
/// `None` at end of stream: the other side is gone.
pub fn recv(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<(Message, Vec<OwnedFd>)>> {
    match recv_bytes(sock, buf, MAX_FDS)? {
        None => Ok(None),
        Some((len, fds)) => Ok(Some((Message::decode(&buf[..len])?, fds))),
    }
}

/// Receives one datagram into `buf` and up to `max_fds` descriptors sent
/// with it (close-on-exec): its length and the descriptors. `None` at end
/// of stream: the other side is gone.
pub fn recv_bytes(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<Option<(usize, Vec<OwnedFd>)>> {
    let mut small = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut large = Vec::new();
    let mut control = RecvAncillaryBuffer::new(rights_space(max_fds, &mut small, &mut large));
    let r = loop {
        let mut iov = [IoSliceMut::new(buf)];
        match rustix::net::recvmsg(sock, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
            Ok(r) => break r,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = m {
            fds.extend(rights);
        }
    }
    if r.flags.contains(ReturnFlags::TRUNC) {
        return Err(bad("message larger than the receive buffer"));
    }
    if r.flags.contains(ReturnFlags::CTRUNC) {
        return Err(bad("more descriptors than the receiver takes"));
    }
    if r.bytes == 0 {
        return Ok(None);
    }
    Ok(Some((r.bytes, fds)))
}

/// The uid of the process at the other end of a Unix socket, as this
/// process's user namespace sees it.
pub fn peer_uid(sock: impl AsFd) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    // Not rustix's `socket_peercred`: its `UCred` holds the pid as a
    // non-zero type, and a peer outside our pid namespace has pid 0.
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which
    // lives for the call.
    let r = unsafe {
        libc::getsockopt(
            sock.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::addr_of_mut!(cred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_message() -> Vec<Message> {
        use Message::*;
        let b = |s: &[u8]| Bytes(s.to_vec());
        vec![
            Hello {
                version: VERSION,
                release: RELEASE.into(),
            },
            Ready {
                version: VERSION,
                release: RELEASE.into(),
                init_pid: 42,
                supervisor_pid: 41,
            },
            Fail {
                reason: "no".into(),
            },
            Exec {
                id: 7,
                argv: vec![b(b"sh"), b(b"\xff\x00x")],
                env: vec![b(b"A=1")],
                cwd: b(b"/w"),
                timeout_ms: 5,
                tty: Some(WindowSize { rows: 24, cols: 80 }),
            },
            Stop {
                id: 1,
                grace_ms: 10,
            },
            Mkdir {
                id: 2,
                path: b(b"/d"),
                mode: 0o755,
            },
            Write {
                id: 3,
                path: b(b"/f"),
                mode: 0o644,
                append: true,
                data: b(&[0, 159, 146, 150, 255]),
            },
            Symlink {
                id: 4,
                target: b(b"t"),
                path: b(b"/l"),
            },
            Get {
                id: 5,
                path: b(b"/"),
            },
            Connect { id: 6, port: 80 },
            Started { id: 7 },
            Exit {
                id: 7,
                code: 137,
                signal: 9,
                timed_out: true,
            },
            Ok { id: 8 },
            Err {
                id: 8,
                reason: "x".into(),
            },
            Dir {
                id: 9,
                rel: b(b""),
                mode: 0o700,
            },
            File {
                id: 9,
                rel: b(b"a"),
                mode: 0o600,
                data: b(b"hello\n"),
            },
            More {
                id: 9,
                data: b(&[0xc3]),
            },
            Link {
                id: 9,
                rel: b(b"l"),
                target: b(b"../x"),
            },
            Done { id: 9 },
            Conn { id: 10 },
            Namespaces { id: 11 },
            Ns { id: 11 },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in every_message() {
            let back = Message::decode(&m.encode()).unwrap();
            assert_eq!(back, m);
        }
    }

    #[test]
    fn a_full_chunk_of_binary_fits_in_one_message() {
        let m = Message::More {
            id: u64::MAX,
            data: Bytes(vec![0xff; CHUNK]),
        };
        assert!(m.encode().len() < MAX_MESSAGE);
    }

    #[test]
    fn another_version_is_named() {
        let from_future = br#"{"hello2":{"version":9,"release":"9.0.0","x":1}}"#;
        let e = Message::decode(from_future).unwrap_err().to_string();
        assert!(e.contains("protocol 9"), "{e}");
        let v: serde_json::Value = serde_json::from_slice(from_future).unwrap();
        assert_eq!(find_version(&v), Some(9));
        assert!(version_mismatch("9.0.0", 9).contains("created by cleanroom 9.0.0"));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Message::decode(&[1, 0, 0]).is_err());
        assert!(Message::decode(br#"{"dir":{"id":1,"rel":{"hex":"f"},"mode":0}}"#).is_err());
    }

    #[test]
    fn messages_cross_a_socket_with_descriptors() {
        let (a, b) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::SEQPACKET,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let (r, _w) = rustix::pipe::pipe().unwrap();
        let m = Message::Conn { id: 3 };
        send(a.as_fd(), &m, &[r.as_fd()]).unwrap();
        let mut buf = vec![0; MAX_MESSAGE];
        let (got, fds) = recv(b.as_fd(), &mut buf).unwrap().unwrap();
        assert_eq!(got, m);
        assert_eq!(fds.len(), 1);
        drop(a);
        assert!(recv(b.as_fd(), &mut buf).unwrap().is_none());
    }
}
