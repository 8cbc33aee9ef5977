//! The guest kernel: Debian's `linux-image-amd64`, fetched once with
//! `apt-get download` and unpacked with `dpkg-deb -x` into the user's cache
//! (never onto the host's /boot), and the modules the initramfs must carry.

use std::path::{Path, PathBuf};
use std::process::Command;

use cleanroom_core::{Error, Result};

/// Debian's meta package that always depends on the current kernel.
const META_PACKAGE: &str = "linux-image-amd64";

/// The modules the guest needs, by name: the virtio-mmio transport of the
/// `microvm` machine, the virtio-serial port the agent talks over, 9p for
/// the host's directories, and overlayfs for the native backend's roots.
/// Their dependencies are added from each module's own `depends=` list.
pub const MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_console",
    "9pnet_virtio",
    "9p",
    "overlay",
];

/// Where the vm backend keeps its kernel, initramfs and probe results.
pub fn cache_root() -> PathBuf {
    cleanroom_core::paths::cache_dir("vm")
}

/// An unpacked guest kernel.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// The kernel package, e.g. `linux-image-6.1.0-57-amd64`.
    pub package: String,
    /// Its release, as `uname -r` prints it inside the guest.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` of the unpacked package.
    pub modules: PathBuf,
}

impl Kernel {
    /// The kernel `setup` fetched, or an error saying to run it.
    pub fn installed() -> Result<Kernel> {
        let current = cache_root().join("kernel").join("current");
        let package = std::fs::read_to_string(&current)
            .map(|s| s.trim().to_string())
            .map_err(|_| no_kernel(&current))?;
        Kernel::at(&cache_root().join("kernel").join(&package), &package)
            .ok_or_else(|| no_kernel(&current))
    }

    /// The kernel unpacked under `dir`, if it is complete.
    fn at(dir: &Path, package: &str) -> Option<Kernel> {
        let release = package.strip_prefix("linux-image-")?.to_string();
        let vmlinuz = dir.join("boot").join(format!("vmlinuz-{release}"));
        let modules = dir.join("lib/modules").join(&release);
        (vmlinuz.is_file() && modules.is_dir()).then(|| Kernel {
            package: package.to_string(),
            release,
            vmlinuz,
            modules,
        })
    }

    /// What QEMU boots: the uncompressed `vmlinux` (entered through PVH),
    /// made from the bzImage once, when `xz` is here; else the bzImage.
    /// Under software emulation the kernel's own xz decompression costs
    /// seconds of every boot.
    pub fn boot_image(&self) -> PathBuf {
        let vmlinux = self
            .vmlinuz
            .with_file_name(format!("vmlinux-{}", self.release));
        if vmlinux.is_file() || extract_vmlinux(&self.vmlinuz, &vmlinux).is_ok() {
            vmlinux
        } else {
            self.vmlinuz.clone()
        }
    }

    /// The `.ko` files of [`MODULES`] and their dependencies, in an order
    /// that loads each after what it depends on.
    pub fn module_files(&self) -> Result<Vec<(String, PathBuf)>> {
        let mut index = std::collections::HashMap::new();
        index_modules(&self.modules.join("kernel"), &mut index)
            .map_err(|e| Error::io(format!("listing {}", self.modules.display()), e))?;
        let mut ordered: Vec<(String, PathBuf)> = Vec::new();
        for name in MODULES {
            add_with_deps(name, &index, &mut ordered, 0)?;
        }
        Ok(ordered)
    }
}

/// Decompresses the xz payload of a bzImage (the ELF vmlinux) with the `xz`
/// tool, written aside and renamed into place.
fn extract_vmlinux(bzimage: &Path, to: &Path) -> std::io::Result<()> {
    use std::io::Write;
    const XZ_MAGIC: &[u8] = b"\xfd7zXZ\x00";
    let image = std::fs::read(bzimage)?;
    let at = image
        .windows(XZ_MAGIC.len())
        .position(|w| w == XZ_MAGIC)
        .ok_or_else(|| std::io::Error::other("no xz payload in the bzImage"))?;
    let tmp = to.with_extension(format!("tmp{}", std::process::id()));
    let mut child = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create(&tmp)?)
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let fed = stdin.write_all(&image[at..]);
    drop(stdin);
    let status = child.wait()?;
    let elf = std::fs::read(&tmp)
        .map(|b| b.starts_with(b"\x7fELF"))
        .unwrap_or(false);
    // xz stops reading at the end of its stream: the bzImage's tail may
    // then meet a closed pipe, which is no failure.
    let fed = match fed {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    };
    if fed.is_err() || !status.success() || !elf {
        let _ = std::fs::remove_file(&tmp);
        return Err(std::io::Error::other("xz could not unpack the kernel"));
    }
    std::fs::rename(&tmp, to)
}

fn no_kernel(current: &Path) -> Error {
    Error::backend(
        crate::NAME,
        format!(
            "no guest kernel has been fetched ({} is missing): run `cleanroom vm setup`",
            current.display()
        ),
    )
}

/// Module name (dashes as underscores) to file, for every `.ko` under `dir`.
fn index_modules(
    dir: &Path,
    index: &mut std::collections::HashMap<String, PathBuf>,
) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let path = e.path();
        if e.file_type()?.is_dir() {
            index_modules(&path, index)?;
        } else if let Some(stem) = path.file_name().and_then(|n| n.to_str()) {
            if let Some(name) = stem.strip_suffix(".ko") {
                index.insert(name.replace('-', "_"), path.clone());
            }
        }
    }
    Ok(())
}

fn add_with_deps(
    name: &str,
    index: &std::collections::HashMap<String, PathBuf>,
    ordered: &mut Vec<(String, PathBuf)>,
    depth: usize,
) -> Result<()> {
    if ordered.iter().any(|(n, _)| n == name) {
        return Ok(());
    }
    if depth > 32 {
        return Err(Error::backend(
            crate::NAME,
            format!("module dependency loop at {name}"),
        ));
    }
    // A module the kernel has built in is not a file, and needs no loading.
    let Some(path) = index.get(name) else {
        return Ok(());
    };
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    for dep in module_depends(&bytes) {
        add_with_deps(&dep, index, ordered, depth + 1)?;
    }
    ordered.push((name.to_string(), path.clone()));
    Ok(())
}

/// The `depends=` list of a module's `.modinfo` section (NUL-separated
/// `key=value` strings).
fn module_depends(ko: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(at) = ko.windows(KEY.len()).position(|w| w == KEY) else {
        return Vec::new();
    };
    let rest = &ko[at + KEY.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('-', "_"))
        .collect()
}

/// Fetches the current Debian kernel into the cache unless it is there:
/// `apt-get download` of the package `linux-image-amd64` depends on, then
/// `dpkg-deb -x`. Returns the kernel and whether it was fetched now.
pub fn fetch_kernel() -> Result<(Kernel, bool)> {
    let root = cache_root().join("kernel");
    std::fs::create_dir_all(&root)
        .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
    let package = current_package()?;
    let dir = root.join(&package);
    let write_current = || {
        std::fs::write(root.join("current"), format!("{package}\n"))
            .map_err(|e| Error::io(format!("writing {}", root.join("current").display()), e))
    };
    if let Some(k) = Kernel::at(&dir, &package) {
        write_current()?;
        return Ok((k, false));
    }
    let work = root.join(format!(".fetch-{}", std::process::id()));
    let _ = cleanroom_core::paths::remove_all(&work);
    std::fs::create_dir_all(&work)
        .map_err(|e| Error::io(format!("creating {}", work.display()), e))?;
    let result = (|| {
        tool(
            Command::new("apt-get")
                .args(["download", "-q", &package])
                .current_dir(&work),
        )?;
        let deb = std::fs::read_dir(&work)
            .map_err(|e| Error::io(format!("listing {}", work.display()), e))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .ok_or_else(|| {
                Error::backend(
                    crate::NAME,
                    format!("apt-get download {package} left no .deb"),
                )
            })?;
        let unpacked = work.join("root");
        tool(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
        let _ = cleanroom_core::paths::remove_all(&dir);
        std::fs::rename(&unpacked, &dir)
            .map_err(|e| Error::io(format!("moving the kernel to {}", dir.display()), e))
    })();
    let _ = cleanroom_core::paths::remove_all(&work);
    result?;
    let k = Kernel::at(&dir, &package).ok_or_else(|| {
        Error::backend(
            crate::NAME,
            format!(
                "{package} unpacked into {} has no vmlinuz or modules",
                dir.display()
            ),
        )
    })?;
    write_current()?;
    Ok((k, true))
}

/// The kernel package `linux-image-amd64` depends on now.
fn current_package() -> Result<String> {
    let out = tool(Command::new("apt-cache").args(["depends", META_PACKAGE]))?;
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-"))
        .map(String::from)
        .ok_or_else(|| {
            Error::backend(
                crate::NAME,
                format!(
                    "apt-cache knows no kernel package for {META_PACKAGE}: run `apt-get update` \
                     (the vm backend needs Debian's or Ubuntu's package lists)"
                ),
            )
        })
}

/// Runs a setup tool, returning its stdout; a failure names the command and
/// its stderr.
fn tool(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| {
        Error::backend(
            crate::NAME,
            format!(
                "cannot run {shown}: {e} (the vm setup needs apt-get and dpkg-deb, as on Debian)"
            ),
        )
    })?;
    if !out.status.success() {
        return Err(Error::backend(
            crate::NAME,
            format!(
                "{shown} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_are_read_from_modinfo() {
        let ko = b"\x7fELF...\0license=GPL\0depends=virtio,virtio_ring\0vermagic=6.1\0";
        assert_eq!(module_depends(ko), vec!["virtio", "virtio_ring"]);
        assert!(module_depends(b"\0depends=\0").is_empty());
        assert!(module_depends(b"no modinfo").is_empty());
    }
}
