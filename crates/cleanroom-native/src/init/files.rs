//! The init's side of copying files in and out: make a directory, write a
//! file (never through a symlink), make a symlink, and send a whole tree
//! back as typed messages.

use std::io::{Read, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::mounts::Step;
use crate::protocol::{self, Bytes, Message, CHUNK};

/// An existing directory is fine; its mode is set either way.
pub fn make_dir(p: &Path, mode: u32) -> Step {
    match std::fs::create_dir(p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && p.is_dir() => {}
        Err(e) => return Err(format!("creating directory {}: {e}", p.display())),
    }
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| format!("chmod {}: {e}", p.display()))
}

/// Creates (truncating) or appends to `p`, never through a symlink.
pub fn write_file(p: &Path, mode: u32, append: bool, data: &[u8]) -> Step {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(!append)
        .append(append)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(mode & 0o7777)
        .open(p)
        .map_err(|e| format!("opening {} for writing: {e}", p.display()))?;
    f.write_all(data)
        .map_err(|e| format!("writing {}: {e}", p.display()))
}

pub fn symlink(target: &Path, path: &Path) -> Step {
    std::os::unix::fs::symlink(target, path)
        .map_err(|e| format!("creating symlink {}: {e}", path.display()))
}

/// Sends `path` (a file, symlink or whole directory tree) as `Dir`, `File`,
/// `More` and `Link` messages, with paths relative to the top.
pub fn send_tree(sock: BorrowedFd<'_>, id: u64, path: &Path, rel: &Path) -> Step {
    use std::os::unix::fs::MetadataExt;
    let ctx = |e: std::io::Error| format!("reading {}: {e}", path.display());
    let meta = std::fs::symlink_metadata(path).map_err(ctx)?;
    let relb = Bytes::from_path(rel);
    let send = |m: Message| {
        protocol::send(sock, &m, &[]).map_err(|e| format!("sending {}: {e}", path.display()))
    };
    let mode = meta.mode() & 0o7777;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path).map_err(ctx)?;
        send(Message::Link {
            id,
            rel: relb,
            target: Bytes::from_path(&target),
        })
    } else if meta.is_dir() {
        send(Message::Dir {
            id,
            rel: relb,
            mode,
        })?;
        let mut names: Vec<_> = std::fs::read_dir(path)
            .map_err(ctx)?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            send_tree(sock, id, &path.join(&n), &rel.join(&n))?;
        }
        Ok(())
    } else if meta.is_file() {
        let mut f = std::fs::File::open(path).map_err(ctx)?;
        let mut chunk = vec![0u8; CHUNK];
        let n = f.read(&mut chunk).map_err(ctx)?;
        send(Message::File {
            id,
            rel: relb,
            mode,
            data: Bytes(chunk[..n].to_vec()),
        })?;
        loop {
            let n = f.read(&mut chunk).map_err(ctx)?;
            if n == 0 {
                return Ok(());
            }
            send(Message::More {
                id,
                data: Bytes(chunk[..n].to_vec()),
            })?;
        }
    } else {
        Ok(())
    }
}
