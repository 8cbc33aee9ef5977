//! The messages between the caller and the sandbox's init, over a
//! `SOCK_SEQPACKET` socketpair: one `sendmsg` is one message, so framing is
//! free and file descriptors (the pipes of an exec) travel with the message
//! that needs them.
//!
//! A message is a list of byte fields, each a little-endian `u32` length and
//! its bytes; the first field is the tag (`exec`, `exit`, ...). Numbers are
//! decimal text. The init side uses the blocking functions here; the caller
//! side calls the same functions on a non-blocking socket from an `AsyncFd`.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// Largest message either side sends (file data goes in chunks of [`CHUNK`]).
pub const MAX_MESSAGE: usize = 256 * 1024;
/// Bytes of file data per copy message.
pub const CHUNK: usize = 64 * 1024;

/// One message: a tag and its fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Msg {
    pub fields: Vec<Vec<u8>>,
}

impl Msg {
    pub fn new(tag: &str) -> Self {
        Msg {
            fields: vec![tag.as_bytes().to_vec()],
        }
    }

    pub fn push(mut self, field: impl AsRef<[u8]>) -> Self {
        self.fields.push(field.as_ref().to_vec());
        self
    }

    pub fn num(self, n: u64) -> Self {
        self.push(n.to_string())
    }

    pub fn tag(&self) -> &[u8] {
        self.field(0)
    }

    /// Field `i`, empty when missing.
    pub fn field(&self, i: usize) -> &[u8] {
        self.fields.get(i).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn text(&self, i: usize) -> String {
        String::from_utf8_lossy(self.field(i)).into_owned()
    }

    /// Field `i` as a decimal number, 0 when missing or malformed.
    pub fn num_at(&self, i: usize) -> u64 {
        std::str::from_utf8(self.field(i))
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.fields.iter().map(|f| f.len() + 4).sum());
        for f in &self.fields {
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(f);
        }
        out
    }

    pub fn decode(mut buf: &[u8]) -> io::Result<Msg> {
        let mut fields = Vec::new();
        while !buf.is_empty() {
            if buf.len() < 4 {
                return Err(bad("truncated field length"));
            }
            let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            buf = &buf[4..];
            if buf.len() < len {
                return Err(bad("truncated field"));
            }
            fields.push(buf[..len].to_vec());
            buf = &buf[len..];
        }
        if fields.is_empty() {
            return Err(bad("empty message"));
        }
        Ok(Msg { fields })
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed message between caller and sandbox init: {what}"),
    )
}

/// Sends `msg` with `fds` attached. Never raises SIGPIPE.
pub fn send(sock: BorrowedFd<'_>, msg: &Msg, fds: &[RawFd]) -> io::Result<()> {
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
    let iov = [IoSlice::new(&bytes)];
    let cmsgs = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsgs };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one message and the descriptors sent with it (close-on-exec).
/// `None` at end of stream: the other side is gone.
pub fn recv(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<(Msg, Vec<OwnedFd>)>> {
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let (n, fds) = loop {
        let mut iov = [IoSliceMut::new(buf)];
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(r) => {
                let mut fds = Vec::new();
                for c in r.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(raw) = c {
                        for fd in raw {
                            // SAFETY: the kernel just installed `fd` in our
                            // table for this message; nothing else owns it.
                            fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                        }
                    }
                }
                if r.flags.contains(MsgFlags::MSG_TRUNC) {
                    return Err(bad("message larger than the receive buffer"));
                }
                break (r.bytes, fds);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if n == 0 {
        return Ok(None);
    }
    Ok(Some((Msg::decode(&buf[..n])?, fds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let m = Msg::new("exec").num(7).push(b"\xff\x00x").push("");
        let d = Msg::decode(&m.encode()).unwrap();
        assert_eq!(d, m);
        assert_eq!(d.tag(), b"exec");
        assert_eq!(d.num_at(1), 7);
        assert_eq!(d.field(9), b"");
        assert!(Msg::decode(&[1, 0, 0]).is_err());
    }
}
