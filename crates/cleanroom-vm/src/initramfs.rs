//! The guest's initramfs, built by us: our agent as `/init`, the shared
//! libraries `ldd` lists for it, the kernel modules the guest needs (in load
//! order, listed in `/modules/order`) and the few `/etc` files the native
//! backend reads. Cached per agent binary and kernel.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use cleanroom_core::{Error, Result};

use crate::assets::Kernel;
use crate::cpio::CpioWriter;

/// Bumped whenever the layout below changes, so cached images are rebuilt.
const LAYOUT: u32 = 2;

/// Where the agent finds the modules to load, one file name per line.
pub const MODULE_ORDER: &str = "/modules/order";

/// The initramfs for `agent` and `kernel`, built now unless the cache has
/// it. Returns its path.
pub fn ensure(agent: &Path, kernel: &Kernel) -> Result<PathBuf> {
    let meta = std::fs::metadata(agent)
        .map_err(|e| Error::io(format!("reading the agent {}", agent.display()), e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let key = cleanroom_core::paths::cache_key(
        format!(
            "{LAYOUT}\n{}\n{}\n{mtime}\n{}",
            agent.display(),
            meta.len(),
            kernel.release
        )
        .as_bytes(),
    );
    let dir = crate::assets::cache_root().join("initramfs");
    let path = dir.join(format!("{key}.cpio.gz"));
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let bytes = build(agent, kernel)?;
    // Written aside and renamed, so a concurrent boot never reads half a file.
    let tmp = dir.join(format!(".{key}.{}", std::process::id()));
    std::fs::write(&tmp, &bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(path)
}

/// The gzip-compressed cpio archive.
pub fn build(agent: &Path, kernel: &Kernel) -> Result<Vec<u8>> {
    let io = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| Error::io(format!("building the initramfs: {what}"), e)
    };
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut w = CpioWriter::new(gz);
    for d in [
        "/dev", "/proc", "/sys", "/tmp", "/run", "/etc", "/usr", "/modules", "/lib", "/lib64",
    ] {
        w.dir(d, 0o755).map_err(io(d))?;
    }
    let agent_bytes =
        agent_without_debug_info(agent).map_err(io(&format!("reading {}", agent.display())))?;
    w.file("/init", 0o755, &agent_bytes).map_err(io("/init"))?;

    let mut made_dirs = std::collections::BTreeSet::new();
    for lib in shared_libraries(agent)? {
        let data = std::fs::read(&lib).map_err(io(&format!("reading {}", lib.display())))?;
        let Some(name) = lib.to_str() else { continue };
        // ldd names the path the loader uses (`/lib/x86_64-linux-gnu/...`,
        // `/lib64/ld-linux-x86-64.so.2`): the same paths in the guest.
        let mut parent = Path::new(name).parent();
        let mut missing = Vec::new();
        while let Some(p) = parent {
            let s = p.to_string_lossy().into_owned();
            if s == "/" || s == "/lib" || s == "/lib64" || !made_dirs.insert(s.clone()) {
                break;
            }
            missing.push(s);
            parent = p.parent();
        }
        for d in missing.iter().rev() {
            w.dir(d, 0o755).map_err(io(d))?;
        }
        w.file(name, 0o755, &data).map_err(io(name))?;
    }

    let mut order = String::new();
    for (name, path) in kernel.module_files()? {
        let data = std::fs::read(&path).map_err(io(&format!("reading {}", path.display())))?;
        let file = format!("{name}.ko");
        w.file(&format!("/modules/{file}"), 0o644, &data)
            .map_err(io(&file))?;
        order.push_str(&file);
        order.push('\n');
    }
    w.file(MODULE_ORDER, 0o644, order.as_bytes())
        .map_err(io(MODULE_ORDER))?;

    // The native backend runs as root here: it maps sandboxes to these
    // subordinate ids of `cleanroom` (never the guest's root).
    let subids = format!("{}:100000:65536\n", cleanroom_native::idmap::SUBID_USER);
    for (path, text) in [
        ("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("/etc/group", "root:x:0:\n"),
        ("/etc/subuid", subids.as_str()),
        ("/etc/subgid", subids.as_str()),
        ("/etc/hostname", "cleanroom-vm\n"),
    ] {
        w.file(path, 0o644, text.as_bytes()).map_err(io(path))?;
    }
    let gz = w.finish().map_err(io("finishing the archive"))?;
    let mut gz = gz;
    gz.flush().map_err(io("compressing"))?;
    gz.finish().map_err(io("compressing"))
}

/// The shared libraries the dynamic loader maps for `binary`, by the path
/// it asks for (the loader itself included).
/// The agent's bytes without its debug sections (`objcopy --strip-debug`),
/// else as they are. The initramfs is unpacked into the guest's memory, and
/// a debug build's debug info (300 MB here) would not fit beside a small
/// sandbox's memory limit: the guest ran out of memory before its init ran.
fn agent_without_debug_info(agent: &Path) -> std::io::Result<Vec<u8>> {
    let stripped = tempfile::NamedTempFile::new()?;
    let status = std::process::Command::new("objcopy")
        .arg("--strip-debug")
        .arg(agent)
        .arg(stripped.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => std::fs::read(stripped.path()),
        _ => std::fs::read(agent),
    }
}

fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(binary).output().map_err(|e| {
        Error::backend(
            crate::NAME,
            format!("cannot run ldd on the agent (needed to build the initramfs): {e}"),
        )
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // A statically linked agent has no libraries to carry.
        if text.contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        return Err(Error::backend(
            crate::NAME,
            format!(
                "ldd {} failed: {}",
                binary.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`, or the
        // loader as `/lib64/ld-linux-x86-64.so.2 (0x...)`.
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}
