//! `exec -t`: the command runs on a pseudo-terminal the init makes inside
//! the sandbox; this side puts the caller's terminal in raw mode and relays
//! bytes both ways, and passes window size changes on.

use std::os::fd::{AsFd, OwnedFd};

use cleanroom_core::{Error, Result};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::Channel;
use crate::exec::Request;
use crate::protocol::{Message, WindowSize};

/// The caller's terminal settings, restored when dropped.
struct RawMode(Option<rustix::termios::Termios>);

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = rustix::termios::tcgetattr(stdin.as_fd()) else {
            return RawMode(None);
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ =
            rustix::termios::tcsetattr(stdin.as_fd(), rustix::termios::OptionalActions::Now, &raw);
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin().as_fd(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}

fn caller_size() -> WindowSize {
    match rustix::termios::tcgetwinsize(std::io::stdout().as_fd()) {
        Ok(w) if w.ws_row > 0 => WindowSize {
            rows: w.ws_row,
            cols: w.ws_col,
        },
        _ => WindowSize { rows: 24, cols: 80 },
    }
}

/// Runs `request` on a terminal inside; returns its exit code.
pub async fn run(chan: &Channel, request: &Request, stdin: bool) -> Result<i32> {
    let size = caller_size();
    let (id, mut rx) = chan
        .request(|id| request.message(id, Some(size)), &[])
        .await?;
    let master: OwnedFd = match rx.recv().await {
        Some((Message::Started { .. }, mut fds)) if fds.len() == 1 => fds.remove(0),
        Some((Message::Err { reason, .. }, _)) => {
            chan.done(id);
            return Err(Error::backend("native", format!("exec -t: {reason}")));
        }
        other => {
            chan.done(id);
            return Err(Error::backend(
                "native",
                format!("exec -t: unexpected reply {other:?}"),
            ));
        }
    };
    let io = |e: std::io::Error| Error::io("relaying the terminal", e);
    rustix::io::ioctl_fionbio(&master, true).map_err(|e| io(e.into()))?;
    let resize_fd = master.try_clone().map_err(io)?;
    let reader = master.try_clone().map_err(io)?;
    let raw = RawMode::enter();
    // Output: the terminal's side to our stdout, until the command's end
    // closes it (EIO once no process holds the inner side).
    let output = tokio::spawn(async move {
        let Ok(fd) = AsyncFdFile::new(reader) else {
            return;
        };
        let mut out = tokio::io::stdout();
        let mut buf = vec![0u8; 16 << 10];
        loop {
            match fd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if out.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    let _ = out.flush().await;
                }
            }
        }
    });
    let input = stdin.then(|| {
        let writer = master.try_clone();
        tokio::spawn(async move {
            let Ok(writer) = writer else { return };
            let Ok(fd) = AsyncFdFile::new(writer) else {
                return;
            };
            let mut inp = tokio::io::stdin();
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = inp.read(&mut buf).await {
                if n == 0 || fd.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        })
    });
    let resize = tokio::spawn(async move {
        let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while winch.recv().await.is_some() {
            let s = caller_size();
            let _ = rustix::termios::tcsetwinsize(
                &resize_fd,
                rustix::termios::Winsize {
                    ws_row: s.rows,
                    ws_col: s.cols,
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                },
            );
        }
    });
    drop(master);
    let reply = rx.recv().await;
    chan.done(id);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), output).await;
    if let Some(i) = input {
        i.abort();
    }
    resize.abort();
    drop(raw);
    match reply {
        Some((Message::Exit { code, .. }, _)) => Ok(code),
        _ => Err(Error::backend("native", "the sandbox ended during exec -t")),
    }
}

/// A non-blocking descriptor read and written through the runtime.
struct AsyncFdFile(AsyncFd<OwnedFd>);

impl AsyncFdFile {
    fn new(fd: OwnedFd) -> std::io::Result<AsyncFdFile> {
        // SAFETY: the AsyncFd owns the descriptor until it is dropped.
        unsafe { AsyncFd::register(fd) }
            .map(AsyncFdFile)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.0.readable().await?;
            match guard.try_io(|fd| rustix::io::read(fd.get_ref(), &mut *buf).map_err(Into::into)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    async fn write_all(&self, mut buf: &[u8]) -> std::io::Result<()> {
        while !buf.is_empty() {
            let mut guard = self.0.writable().await?;
            match guard.try_io(|fd| rustix::io::write(fd.get_ref(), buf).map_err(Into::into)) {
                Ok(Ok(n)) => buf = &buf[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}
