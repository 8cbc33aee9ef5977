//! Copying files in and out of a container as tar streams.
//!
//! The engines' archive endpoints cannot do it for a hardened sandbox:
//! Docker refuses them on a read-only root ("container rootfs is marked
//! read-only") and does not see tmpfs mounts such as the working directory.
//! So the tar stream goes through an exec of the sandbox's own `tar`, as the
//! sandbox's user, which sees exactly what commands inside see.

use std::path::{Component, Path, PathBuf};

use cleanroom_core::{Error, IoContext, Result};

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
}
