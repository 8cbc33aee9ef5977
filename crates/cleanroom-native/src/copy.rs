//! Copying files and trees in and out of a sandbox over a [`Channel`]:
//! modes kept, symlinks copied as symlinks, and nothing written on the host
//! through a symlink or outside the destination.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path};

use cleanroom_core::{Error, Result};

use crate::client::Channel;
use crate::protocol::{Bytes, Message, CHUNK};

/// Whether `rel` (from the sandbox) is a plain relative path.
fn plain_relative(rel: &Path) -> bool {
    rel.components().all(|c| matches!(c, Component::Normal(_)))
}

fn refuse_symlink(p: &Path) -> Error {
    Error::backend(
        "native",
        format!(
            "copy_out: {} is a symlink; refusing to write through it",
            p.display()
        ),
    )
}

/// Refuses to write through a symlink created on the host side.
fn no_symlink_between(base: &Path, rel: &Path) -> Result<()> {
    let mut p = base.to_path_buf();
    for c in rel.parent().into_iter().flat_map(|p| p.components()) {
        p.push(c);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(refuse_symlink(&p));
        }
    }
    Ok(())
}

/// Copies `host_path` (a file, symlink or tree) to `inside` (absolute, in
/// the sandbox).
pub async fn copy_in(chan: &Channel, host_path: &Path, inside: &Path) -> Result<()> {
    let mut stack = vec![(host_path.to_path_buf(), inside.to_path_buf())];
    while let Some((from, to)) = stack.pop() {
        let read_err = |e| Error::io(format!("copy_in: reading {}", from.display()), e);
        let meta = std::fs::symlink_metadata(&from).map_err(read_err)?;
        let path = Bytes::from_path(&to);
        let what = format!("copy_in to {}", to.display());
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let target = Bytes::from_path(&std::fs::read_link(&from).map_err(read_err)?);
            chan.call(|id| Message::Symlink { id, target, path }, &what)
                .await?;
        } else if meta.is_dir() {
            chan.call(|id| Message::Mkdir { id, path, mode }, &what)
                .await?;
            let mut names: Vec<_> = std::fs::read_dir(&from)
                .map_err(|e| Error::io(format!("copy_in: listing {}", from.display()), e))?
                .flatten()
                .map(|e| e.file_name())
                .collect();
            names.sort();
            for n in names.into_iter().rev() {
                stack.push((from.join(&n), to.join(&n)));
            }
        } else if meta.is_file() {
            let data = tokio::fs::read(&from).await.map_err(read_err)?;
            let mut chunks = data.chunks(CHUNK);
            let first = Bytes(chunks.next().unwrap_or(&[]).to_vec());
            let p = path.clone();
            chan.call(
                |id| Message::Write {
                    id,
                    path: p,
                    mode,
                    append: false,
                    data: first,
                },
                &what,
            )
            .await?;
            for c in chunks {
                let p = path.clone();
                let data = Bytes(c.to_vec());
                chan.call(
                    |id| Message::Write {
                        id,
                        path: p,
                        mode,
                        append: true,
                        data,
                    },
                    &what,
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// Copies `inside` (absolute, in the sandbox) to `host_path`.
pub async fn copy_out(chan: &Channel, inside: &Path, host_path: &Path) -> Result<()> {
    let src = Bytes::from_path(inside);
    let (id, mut rx) = chan
        .request(|id| Message::Get { id, path: src }, &[])
        .await?;
    let result = async {
        let mut current: Option<std::fs::File> = None;
        loop {
            let Some((m, _)) = rx.recv().await else {
                return Err(Error::SandboxGone {
                    id: "native".into(),
                });
            };
            let (rel, data) = match &m {
                Message::Dir { rel, .. } | Message::Link { rel, .. } => (rel.as_path(), None),
                Message::File { rel, data, .. } => (rel.as_path(), Some(data)),
                Message::More { data, .. } => {
                    if let Some(f) = current.as_mut() {
                        std::io::Write::write_all(f, data.as_slice())
                            .map_err(|e| Error::io("copy_out: writing", e))?;
                    }
                    continue;
                }
                Message::Done { .. } => return Ok(()),
                Message::Err { reason, .. } => {
                    return Err(Error::backend(
                        "native",
                        format!("copy_out of {}: {reason}", inside.display()),
                    ))
                }
                other => {
                    return Err(Error::backend(
                        "native",
                        format!("copy_out: unexpected reply {other:?}"),
                    ))
                }
            };
            if !plain_relative(rel) {
                return Err(Error::backend(
                    "native",
                    format!(
                        "copy_out: the sandbox sent the unsafe path {}",
                        rel.display()
                    ),
                ));
            }
            let dst = if rel.as_os_str().is_empty() {
                host_path.to_path_buf()
            } else {
                no_symlink_between(host_path, rel)?;
                host_path.join(rel)
            };
            let io =
                |e: std::io::Error| Error::io(format!("copy_out: writing {}", dst.display()), e);
            match &m {
                Message::Dir { mode, .. } => {
                    // Never through a symlink an earlier entry created.
                    if std::fs::symlink_metadata(&dst).is_ok_and(|m| m.file_type().is_symlink()) {
                        return Err(refuse_symlink(&dst));
                    }
                    std::fs::create_dir_all(&dst).map_err(io)?;
                    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode & 0o777))
                        .map_err(io)?;
                }
                Message::File { mode, .. } => {
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .mode(mode & 0o777)
                        .open(&dst)
                        .map_err(io)?;
                    if let Some(data) = data {
                        std::io::Write::write_all(&mut f, data.as_slice()).map_err(io)?;
                    }
                    current = Some(f);
                }
                Message::Link { target, .. } => {
                    std::os::unix::fs::symlink(target.as_path(), &dst).map_err(io)?;
                }
                _ => {}
            }
        }
    }
    .await;
    chan.done(id);
    result
}
