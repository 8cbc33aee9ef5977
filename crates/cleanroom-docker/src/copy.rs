//! Copying files in and out of a container as tar streams.
//!
//! The engines' archive endpoints cannot do it for a hardened sandbox:
//! Docker refuses them on a read-only root ("container rootfs is marked
//! read-only") and does not see tmpfs mounts such as the working directory.
//! So the tar stream goes through an exec of the sandbox's own `tar`, as the
//! sandbox's user, which sees exactly what commands inside see.

use std::future::Future;
use std::path::{Component, Path, PathBuf};

use cleanroom_core::{Cmd, Error, IoContext, Result, SandboxSpec};

use crate::exec::{ExecOutput, ExecRequest};
use crate::sandbox::exec_request;

/// Copies `host_path` to `sandbox_path` through the sandbox's `tar`, which
/// `exec` runs (as the sandbox's user, under `spec`).
pub async fn copy_in<F, Fut>(
    engine: &str,
    spec: &SandboxSpec,
    host_path: &Path,
    sandbox_path: &Path,
    exec: F,
) -> Result<()>
where
    F: FnOnce(ExecRequest) -> Fut,
    Fut: Future<Output = Result<ExecOutput>>,
{
    let (parent, name) = split(sandbox_path)?;
    let host = host_path.to_path_buf();
    let archive = tokio::task::spawn_blocking(move || pack(&host, &name))
        .await
        .map_err(|e| Error::backend(engine, format!("copy_in task: {e}")))??;
    let mut req = exec_request(
        spec,
        Cmd::new("tar").args(["-x", "-f", "-", "-C", &parent]),
        None,
    );
    req.stdin = Some(archive);
    req.timeout = None;
    let out = exec(req).await?;
    if out.exit_code != 0 {
        return Err(Error::backend(
            engine,
            format!(
                "copy_in of {} to {}: tar in the sandbox exited {}: {}",
                host_path.display(),
                sandbox_path.display(),
                out.exit_code,
                String::from_utf8_lossy(&out.stderr.bytes).trim()
            ),
        ));
    }
    Ok(())
}

/// Copies `sandbox_path` out to `host_path` through the sandbox's `tar`
/// (which archives symlinks as symlinks), run by `exec`.
pub async fn copy_out<F, Fut>(
    engine: &str,
    spec: &SandboxSpec,
    sandbox_path: &Path,
    host_path: &Path,
    exec: F,
) -> Result<()>
where
    F: FnOnce(ExecRequest) -> Fut,
    Fut: Future<Output = Result<ExecOutput>>,
{
    let (parent, name) = split(sandbox_path)?;
    let mut req = exec_request(
        spec,
        Cmd::new("tar").args(["-c", "-f", "-", "-C", &parent, &name]),
        None,
    );
    req.limit = u64::MAX;
    req.timeout = None;
    let out = exec(req).await?;
    if out.exit_code != 0 {
        return Err(Error::backend(
            engine,
            format!(
                "copy_out of {}: tar in the sandbox exited {}: {}",
                sandbox_path.display(),
                out.exit_code,
                String::from_utf8_lossy(&out.stderr.bytes).trim()
            ),
        ));
    }
    let host = host_path.to_path_buf();
    tokio::task::spawn_blocking(move || unpack(&out.stdout.bytes, &host))
        .await
        .map_err(|e| Error::backend(engine, format!("copy_out task: {e}")))?
}

/// A tar holding `host_path` (file or directory, recursively) under the
/// single top-level name `name`.
pub fn pack(host_path: &Path, name: &str) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(host_path)
        .context(|| format!("copy_in: reading {}", host_path.display()))?;
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let res = if meta.is_dir() {
        builder.append_dir_all(name, host_path)
    } else {
        builder.append_path_with_name(host_path, name)
    };
    res.context(|| format!("copy_in: packing {}", host_path.display()))?;
    builder
        .into_inner()
        .context(|| format!("copy_in: packing {}", host_path.display()))
}

/// Unpacks `archive`, whose entries all sit under one top-level name, so
/// that this top-level entry becomes `host_path`.
pub fn unpack(archive: &[u8], host_path: &Path) -> Result<()> {
    let mut ar = tar::Archive::new(archive);
    ar.set_preserve_permissions(true);
    let mut seen = false;
    let entries = ar.entries().context(|| {
        format!(
            "copy_out: reading the tar stream for {}",
            host_path.display()
        )
    })?;
    for entry in entries {
        let mut entry = entry.context(|| {
            format!(
                "copy_out: reading the tar stream for {}",
                host_path.display()
            )
        })?;
        let path = entry
            .path()
            .context(|| "copy_out: an entry name in the tar stream".to_string())?
            .into_owned();
        let rest: PathBuf = path
            .components()
            .skip_while(|c| matches!(c, Component::CurDir))
            .skip(1)
            .collect();
        if rest
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(Error::backend(
                "copy_out",
                format!(
                    "refusing tar entry `{}` that leaves the target",
                    path.display()
                ),
            ));
        }
        // The archive comes from inside the sandbox: an entry must not
        // reach through a symlink an earlier entry made (`top/l -> /etc`,
        // then `top/l/passwd`).
        refuse_symlinked_parent(host_path, &rest)?;
        let dest = if rest.as_os_str().is_empty() {
            host_path.to_path_buf()
        } else {
            host_path.join(rest)
        };
        if let Some(parent) = dest.parent() {
            if !parent.as_os_str().is_empty() && !parent.exists() {
                std::fs::create_dir_all(parent)
                    .context(|| format!("copy_out: creating {}", parent.display()))?;
            }
        }
        entry
            .unpack(&dest)
            .context(|| format!("copy_out: writing {}", dest.display()))?;
        seen = true;
    }
    if !seen {
        return Err(Error::backend(
            "copy_out",
            format!("the tar stream for {} was empty", host_path.display()),
        ));
    }
    Ok(())
}

/// Fails if `host_path`, or a directory between it and `host_path/rest`,
/// is a symlink (a symlink as the last component is fine: it is what the
/// entry itself makes).
fn refuse_symlinked_parent(host_path: &Path, rest: &Path) -> Result<()> {
    let mut at = host_path.to_path_buf();
    let mut parents: Vec<&std::ffi::OsStr> = rest.iter().collect();
    parents.pop();
    let is_link = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink());
    if !rest.as_os_str().is_empty() && is_link(&at) {
        return Err(escape_error(&at));
    }
    for part in parents {
        at.push(part);
        if is_link(&at) {
            return Err(escape_error(&at));
        }
    }
    Ok(())
}

fn escape_error(at: &Path) -> Error {
    Error::backend(
        "copy_out",
        format!(
            "refusing to write through {}, a symlink the copy made: it would leave the target",
            at.display()
        ),
    )
}

/// Splits a sandbox path into its parent directory and final name.
pub fn split(sandbox_path: &Path) -> Result<(String, String)> {
    match (sandbox_path.parent(), sandbox_path.file_name()) {
        (Some(parent), Some(name)) if sandbox_path.is_absolute() => Ok((
            parent.display().to_string(),
            name.to_string_lossy().into_owned(),
        )),
        _ => Err(Error::InvalidSpec(format!(
            "sandbox path `{}` must be absolute and name a file or directory",
            sandbox_path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_then_unpack_renames_the_top_entry() {
        let dir = std::env::temp_dir().join(format!("cleanroom-copy-{}", std::process::id()));
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/f"), b"\xffdata").unwrap();
        let tar = pack(&src, "top").unwrap();
        let dst = dir.join("dst");
        unpack(&tar, &dst).unwrap();
        assert_eq!(std::fs::read(dst.join("sub/f")).unwrap(), b"\xffdata");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unpack_never_writes_through_a_symlink_it_made() {
        let dir = tempfile_dir("symlink");
        let outside = dir.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        // top/l -> OUTSIDE, then top/l/f: the second entry would land outside.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, "top/", std::io::empty()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "top/l", &outside).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(1);
        b.append_data(&mut h, "top/l/f", &b"x"[..]).unwrap();
        let archive = b.into_inner().unwrap();
        let e = unpack(&archive, &dir.join("dst")).unwrap_err().to_string();
        assert!(e.contains("symlink"), "{e}");
        assert!(!outside.join("f").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir(what: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("cleanroom-copy-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
