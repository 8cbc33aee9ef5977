//! The guest agent: PID 1 of the VM. It mounts the kernel's filesystems,
//! loads the modules the initramfs carries, mounts the host directories the
//! caller shared over 9p, then serves requests on the virtio-serial port by
//! running each one through the native backend, which makes the sandbox
//! inside the guest exactly as it would on a host.
//!
//! It must never exit: the guest kernel panics when PID 1 does, and (with
//! `panic=-1` and QEMU's `-no-reboot`) the VM ends. A fatal error is printed
//! to the console for the caller to show, and then it does just that.

use std::ffi::CStr;
use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cleanroom_core::{Backend, OutputChunk, Sandbox, Stream};
use rustix::mount::MountFlags;

use crate::protocol::{self, Frame, Reply, Request, WireResult};

/// The name of the virtio-serial port the caller and agent talk over.
pub const PORT_NAME: &str = "cleanroom.agent";

/// The agent's entry point; returns only on a fatal error.
pub fn main() -> String {
    if std::process::id() != 1 {
        return "cleanroom-vm-agent is a guest's PID 1 (its /init); the vm backend starts it \
                inside a VM, it does nothing on a host"
            .into();
    }
    match serve() {
        Ok(()) => "the caller closed the agent's port".into(),
        Err(e) => e,
    }
}

fn serve() -> Result<(), String> {
    leave_initramfs()?;
    mount_kernel_filesystems()?;
    load_modules()?;
    let boot = BootArgs::from_cmdline(
        &std::fs::read_to_string("/proc/cmdline").map_err(|e| format!("/proc/cmdline: {e}"))?,
    )?;
    mount_shares(&boot)?;
    let port = open_port()?;
    let writer = Arc::new(Mutex::new(
        port.try_clone().map_err(|e| format!("port: {e}"))?,
    ));
    let mut reader = BufReader::new(port);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    send(
        &writer,
        &Reply::Ready {
            version: protocol::VERSION,
            kernel: rustix::system::uname()
                .release()
                .to_string_lossy()
                .into_owned(),
            uptime_ms: uptime_ms(),
        },
    )?;
    let mut sandbox: Option<Box<dyn Sandbox>> = None;
    let mut data = Vec::new();
    loop {
        let request = match protocol::read_frame::<Request>(&mut reader) {
            Ok(Some(Frame::Message(r))) => r,
            Ok(Some(Frame::Data(bytes))) => {
                data.extend_from_slice(&bytes);
                continue;
            }
            Ok(Some(_)) => return Err("the caller sent output frames to the agent".into()),
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("reading the port: {e}")),
        };
        let reply = match request {
            Request::Run { spec, cmd } => runtime.block_on(streamed(&writer, |sink| async move {
                cleanroom_native::NativeBackend::new()
                    .run_streaming(&spec, cmd, Some(sink))
                    .await
            })),
            Request::Create { spec, main } => {
                match runtime.block_on(cleanroom_native::NativeBackend::new().create(&spec, main)) {
                    Ok(sb) => {
                        sandbox = Some(sb);
                        Reply::Done
                    }
                    Err(e) => failed(e),
                }
            }
            Request::Exec { cmd } => match &sandbox {
                Some(sb) => runtime.block_on(streamed(&writer, |sink| async move {
                    sb.exec_streaming(cmd, Some(sink)).await
                })),
                None => no_sandbox(),
            },
            Request::CopyIn { path } => match &sandbox {
                Some(sb) => {
                    let bytes = std::mem::take(&mut data);
                    runtime.block_on(copy_in(sb.as_ref(), &bytes, &path))
                }
                None => no_sandbox(),
            },
            Request::CopyOut { path } => match &sandbox {
                Some(sb) => runtime.block_on(copy_out(sb.as_ref(), &path, &writer)),
                None => no_sandbox(),
            },
            Request::Logs => match &sandbox {
                Some(sb) => match runtime.block_on(sb.logs()) {
                    Ok(l) => Reply::Logs {
                        stdout: l.stdout,
                        stderr: l.stderr,
                    },
                    Err(e) => failed(e),
                },
                None => no_sandbox(),
            },
            Request::Stop => match &sandbox {
                Some(sb) => match runtime.block_on(sb.stop()) {
                    Ok(()) => Reply::Done,
                    Err(e) => failed(e),
                },
                None => no_sandbox(),
            },
            Request::Shutdown => {
                if let Some(sb) = sandbox.take() {
                    let _ = runtime.block_on(sb.remove());
                }
                rustix::fs::sync();
                let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
                return Err("power-off failed".into());
            }
        };
        // Everything written to the host's shares is there before the
        // caller hears the request ended (and may kill the VM).
        rustix::fs::sync();
        send(&writer, &reply)?;
    }
}

fn failed(e: cleanroom_core::Error) -> Reply {
    Reply::Failed {
        message: e.to_string(),
    }
}

fn no_sandbox() -> Reply {
    Reply::Failed {
        message: "this VM holds no long-lived sandbox".into(),
    }
}

/// Runs `f` with a sink whose output goes to the caller as it comes; the
/// result's own copies of it are dropped (the caller has them).
async fn streamed<F, Fut>(writer: &Arc<Mutex<File>>, f: F) -> Reply
where
    F: FnOnce(cleanroom_core::OutputSink) -> Fut,
    Fut: std::future::Future<Output = cleanroom_core::Result<cleanroom_core::RunResult>>,
{
    let (sink, mut rx) = cleanroom_core::output_channel(64);
    let w = writer.clone();
    let forward = tokio::task::spawn_blocking(move || {
        while let Some(OutputChunk { stream, bytes }) = rx.blocking_recv() {
            let mut port = w.lock().unwrap_or_else(|p| p.into_inner());
            for piece in bytes.chunks(1 << 20) {
                if protocol::write_output(&mut *port, stream == Stream::Stdout, piece).is_err() {
                    return;
                }
            }
        }
    });
    let result = f(sink).await;
    let _ = forward.await;
    match result {
        Ok(mut r) => {
            r.stdout = Vec::new();
            r.stderr = Vec::new();
            Reply::Finished(Box::new(WireResult::from(r)))
        }
        Err(e) => failed(e),
    }
}

/// A fresh scratch directory in the guest for one copy.
fn scratch() -> Result<PathBuf, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = PathBuf::from(format!(
        "/tmp/copy-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

async fn copy_in(sb: &dyn Sandbox, tar: &[u8], path: &Path) -> Reply {
    let dir = match scratch() {
        Ok(d) => d,
        Err(message) => return Reply::Failed { message },
    };
    let reply = match crate::copy::unpack(tar, &dir) {
        Ok(entry) => match sb.copy_in(&entry, path).await {
            Ok(()) => Reply::Done,
            Err(e) => failed(e),
        },
        Err(e) => Reply::Failed {
            message: format!("unpacking the copy: {e}"),
        },
    };
    let _ = std::fs::remove_dir_all(&dir);
    reply
}

async fn copy_out(sb: &dyn Sandbox, path: &Path, writer: &Mutex<File>) -> Reply {
    let dir = match scratch() {
        Ok(d) => d,
        Err(message) => return Reply::Failed { message },
    };
    let entry = dir.join("entry");
    let reply = match sb.copy_out(path, &entry).await {
        Ok(()) => match crate::copy::pack(&entry) {
            Ok(tar) => {
                let mut port = writer.lock().unwrap_or_else(|p| p.into_inner());
                match protocol::write_data(&mut *port, &tar) {
                    Ok(()) => Reply::Done,
                    Err(e) => Reply::Failed {
                        message: format!("sending the copy: {e}"),
                    },
                }
            }
            Err(e) => Reply::Failed {
                message: format!("packing the copy: {e}"),
            },
        },
        Err(e) => failed(e),
    };
    let _ = std::fs::remove_dir_all(&dir);
    reply
}

fn send(writer: &Mutex<File>, reply: &Reply) -> Result<(), String> {
    let mut port = writer.lock().unwrap_or_else(|p| p.into_inner());
    protocol::write_message(&mut *port, reply).map_err(|e| format!("writing the port: {e}"))
}

fn uptime_ms() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map(|s| (s * 1000.0) as u64)
        .unwrap_or(0)
}

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

fn mount_kernel_filesystems() -> Result<(), String> {
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
fn leave_initramfs() -> Result<(), String> {
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

fn load_modules() -> Result<(), String> {
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

fn mount_shares(boot: &BootArgs) -> Result<(), String> {
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

/// The virtio-serial port named [`PORT_NAME`], opened for reading and writing.
fn open_port() -> Result<File, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(list) = std::fs::read_dir("/sys/class/virtio-ports") {
            for e in list.flatten() {
                let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
                if name.trim() == PORT_NAME {
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
            return Err(format!("no virtio-serial port named {PORT_NAME} appeared"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Prints `msg` where the caller reads the console, then lets the kernel
/// end the VM.
pub fn fatal(msg: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "cleanroom-vm-agent: {msg}");
    rustix::fs::sync();
    let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
    std::process::exit(1)
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
