//! Small filesystem helpers shared by import, unpack and gc.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::path::Path;

use cleanroom_core::{IoContext, Result};

/// Whether this process runs as root (and may chown and mknod).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Removes a file, symlink or tree (see [`cleanroom_core::paths::remove_all`]).
pub fn remove_all(path: &Path) -> Result<()> {
    cleanroom_core::paths::remove_all(path).context(|| format!("removing {}", path.display()))
}

/// The names in `dir`, sorted, so walks are in a stable order.
pub fn sorted_names(dir: &Path) -> Result<Vec<OsString>> {
    let mut names: Vec<OsString> = fs::read_dir(dir)
        .context(|| format!("listing {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .context(|| format!("listing {}", dir.display()))?;
    names.sort();
    Ok(names)
}

/// The host platform as OCI names it (`amd64`, `arm64`, ...).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Reads until `buf` is full or the source ends; the bytes read. A source
/// that returns a little at a time (a decompressor, a network body, a tar
/// entry) still fills whole buffers, so writes and hand-overs stay large.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
