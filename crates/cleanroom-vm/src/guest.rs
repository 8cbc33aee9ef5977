//! The guest's own setup at boot, before the agent serves anything: the
//! initramfs traded for a tmpfs root, the kernel's filesystems, the
//! modules, the host's 9p shares and links the caller put on the kernel
//! command line ([`BootArgs`]), and the agent's virtio-serial port.

use std::ffi::CStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::mount::MountFlags;

fn mount(
    src: &str,
    target: &str,
    fstype: &str,
    flags: MountFlags,
    data: &CStr,
) -> Result<(), String> {
    std::fs::create_dir_all(target).map_err(|e| format!("mkdir {target}: {e}"))?;
    rustix::mount::mount(src, target, fstype, flags, data)
        .map_err(|e| format!("mounting {fstype} at {target}: {e}"))
}

pub fn mount_kernel_filesystems() -> Result<(), String> {
    let none = MountFlags::empty();
    let safe = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    mount("proc", "/proc", "proc", safe, c"")?;
    mount("sysfs", "/sys", "sysfs", safe, c"")?;
    mount(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MountFlags::NOSUID,
        c"mode=0755",
    )?;
    mount(
        "tmpfs",
        "/tmp",
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        c"mode=1777",
    )?;
    mount(
        "tmpfs",
        "/run",
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        c"mode=0755",
    )?;
    mount("cgroup2", "/sys/fs/cgroup", "cgroup2", safe, c"")?;
    // /dev/shm and /dev/pts for what the native backend binds from /dev.
    let _ = mount(
        "tmpfs",
        "/dev/shm",
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        c"mode=1777",
    );
    let _ = mount("devpts", "/dev/pts", "devpts", none, c"");
    Ok(())
}

/// Moves the initramfs's files onto a tmpfs and makes that the root, as
/// `switch_root` does: the kernel refuses `pivot_root` out of the initial
/// rootfs, and the native backend pivots every sandbox's root.
pub fn leave_initramfs() -> Result<(), String> {
    const NEW: &str = "/newroot";
    mount("tmpfs", NEW, "tmpfs", MountFlags::empty(), c"mode=0755")?;
    let list = std::fs::read_dir("/").map_err(|e| format!("listing /: {e}"))?;
    for e in list.flatten() {
        let name = e.file_name();
        if name == "newroot" {
            continue;
        }
        let from = Path::new("/").join(&name);
        copy_tree(&from, &Path::new(NEW).join(&name))
            .map_err(|e| format!("copying {} to the new root: {e}", from.display()))?;
        // Freed from the initramfs's memory (it cannot be unmounted).
        let _ = if from.is_dir() && !from.is_symlink() {
            std::fs::remove_dir_all(&from)
        } else {
            std::fs::remove_file(&from)
        };
    }
    std::env::set_current_dir(NEW).map_err(|e| format!("chdir {NEW}: {e}"))?;
    rustix::mount::mount_move(".", "/").map_err(|e| format!("moving {NEW} to /: {e}"))?;
    rustix::process::chroot(".").map_err(|e| format!("chroot into the new root: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(from)?;
    if meta.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)
    } else if meta.is_dir() {
        std::fs::create_dir(to)?;
        std::fs::set_permissions(
            to,
            std::fs::Permissions::from_mode(meta.permissions().mode()),
        )?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
        Ok(())
    } else if meta.is_file() {
        std::fs::copy(from, to).map(|_| ())
    } else {
        // Device nodes (the kernel's /dev/console): devtmpfs brings its own.
        Ok(())
    }
}

pub fn load_modules() -> Result<(), String> {
    let order = std::fs::read_to_string(crate::initramfs::MODULE_ORDER)
        .map_err(|e| format!("{}: {e}", crate::initramfs::MODULE_ORDER))?;
    for file in order.lines().filter(|l| !l.is_empty()) {
        let path = Path::new("/modules").join(file);
        let image = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        match rustix::system::init_module(&image, c"") {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(format!("loading module {file}: {e}")),
        }
    }
    // The modules are loaded; their files are only dead weight in memory.
    let _ = std::fs::remove_dir_all("/modules");
    Ok(())
}

/// What the caller put on the kernel command line for the agent.
#[derive(Debug, Default, PartialEq)]
pub struct BootArgs {
    /// 9p shares: tag, guest path, read-only.
    pub shares: Vec<(String, PathBuf, bool)>,
    /// Top-level symlinks to make once the shares are mounted (name, target).
    pub links: Vec<(String, String)>,
}

/// The command-line key of a share: `cleanroom.share=TAG,ro|rw,HEXPATH`.
pub const SHARE_KEY: &str = "cleanroom.share=";
/// The command-line key of a link: `cleanroom.link=NAME,HEXTARGET`.
pub const LINK_KEY: &str = "cleanroom.link=";

/// Paths on the command line are hex, so spaces and commas survive.
pub fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if s.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

impl BootArgs {
    pub fn from_cmdline(cmdline: &str) -> Result<BootArgs, String> {
        let mut args = BootArgs::default();
        for word in cmdline.split_whitespace() {
            if let Some(v) = word.strip_prefix(SHARE_KEY) {
                let mut f = v.splitn(3, ',');
                let (tag, mode, path) = (f.next(), f.next(), f.next().and_then(unhex));
                match (tag, mode, path) {
                    (Some(t), Some(m @ ("ro" | "rw")), Some(p)) => {
                        args.shares
                            .push((t.to_string(), PathBuf::from(p), m == "ro"))
                    }
                    _ => return Err(format!("bad {SHARE_KEY} on the kernel command line: {v}")),
                }
            } else if let Some(v) = word.strip_prefix(LINK_KEY) {
                match v.split_once(',').and_then(|(n, t)| Some((n, unhex(t)?))) {
                    Some((n, t)) => args.links.push((n.to_string(), t)),
                    None => return Err(format!("bad {LINK_KEY} on the kernel command line: {v}")),
                }
            }
        }
        Ok(args)
    }

    /// The words for the kernel command line.
    pub fn to_cmdline(&self) -> String {
        let mut words = Vec::new();
        for (tag, path, ro) in &self.shares {
            let mode = if *ro { "ro" } else { "rw" };
            words.push(format!(
                "{SHARE_KEY}{tag},{mode},{}",
                hex(&path.to_string_lossy())
            ));
        }
        for (name, target) in &self.links {
            words.push(format!("{LINK_KEY}{name},{}", hex(target)));
        }
        words.join(" ")
    }
}

pub fn mount_shares(boot: &BootArgs) -> Result<(), String> {
    for (tag, path, ro) in &boot.shares {
        let target = path.to_string_lossy();
        // The initramfs's own /lib and /lib64 (the agent's libraries) step
        // aside for the host's; the agent keeps what it has mapped.
        if matches!(target.as_ref(), "/lib" | "/lib64") {
            // (Renamed within the initramfs: /run is another filesystem.)
            let _ = std::fs::rename(&*target, format!("/.initramfs{}", target.replace('/', "-")));
        }
        let mut flags = MountFlags::NOSUID | MountFlags::NODEV;
        if *ro {
            flags |= MountFlags::RDONLY;
        }
        // A read-only share may be cached; a writable one writes through,
        // so the host sees every write when the command ends.
        let options = if *ro {
            c"trans=virtio,version=9p2000.L,msize=262144,cache=loose"
        } else {
            c"trans=virtio,version=9p2000.L,msize=262144"
        };
        mount(tag, &target, "9p", flags, options)?;
    }
    for (name, link) in &boot.links {
        let at = Path::new("/").join(name);
        if at.is_dir() && !at.is_symlink() {
            let _ = std::fs::rename(&at, format!("/.initramfs-{name}"));
        }
        std::os::unix::fs::symlink(link, &at)
            .map_err(|e| format!("symlink {} -> {link}: {e}", at.display()))?;
    }
    // The host files the native backend's `host` rootfs binds from /etc.
    let host_etc = Path::new(crate::vm::HOST_ETC);
    if host_etc.is_dir() {
        for name in [
            "ld.so.cache",
            "ssl",
            "ca-certificates",
            "pki",
            "alternatives",
        ] {
            let src = host_etc.join(name);
            let dst = Path::new("/etc").join(name);
            // Bound, not linked: the native backend reaches these through
            // its old root, where an absolute link would point elsewhere.
            let made = if src.is_dir() {
                std::fs::create_dir_all(&dst)
            } else if src.is_file() {
                std::fs::write(&dst, b"")
            } else {
                continue;
            };
            made.map_err(|e| format!("creating {}: {e}", dst.display()))?;
            rustix::mount::mount_bind_recursive(&src, &dst)
                .map_err(|e| format!("binding {} on {}: {e}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}

/// The virtio-serial port called `port_name` (see [`crate::agent::PORT_NAME`]),
/// opened for reading and writing.
pub fn open_port(port_name: &str) -> Result<File, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(list) = std::fs::read_dir("/sys/class/virtio-ports") {
            for e in list.flatten() {
                let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
                if name.trim() == port_name {
                    let dev = Path::new("/dev").join(e.file_name());
                    if let Ok(f) = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&dev)
                    {
                        return Ok(f);
                    }
                }
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("no virtio-serial port named {port_name} appeared"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_args_round_trip_odd_paths() {
        let args = BootArgs {
            shares: vec![
                ("usr".into(), PathBuf::from("/usr"), true),
                ("m0".into(), PathBuf::from("/run/a b,c"), false),
            ],
            links: vec![("lib".into(), "usr/lib".into())],
        };
        let line = format!("console=ttyS0 quiet {}", args.to_cmdline());
        assert_eq!(BootArgs::from_cmdline(&line).unwrap(), args);
        assert!(BootArgs::from_cmdline("cleanroom.share=x,maybe,00").is_err());
    }
}
