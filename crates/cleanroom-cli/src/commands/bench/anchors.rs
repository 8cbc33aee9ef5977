//! What our numbers stand beside: the anchors (bubblewrap, `docker run`,
//! `podman run`), the `cleanroom` binary as a user runs it, and the busybox
//! rootfs they all use.

use std::path::{Path, PathBuf};
use std::process::Command;

use cleanroom::{BackendChoice, Error, Result, RootFs, SandboxSpec};

/// The anchor: `bwrap --unshare-all --ro-bind ROOTFS / --proc /proc
/// --dev /dev /bin/true`.
pub(super) fn bwrap_command(
    bwrap: Option<&Path>,
    rootfs: &Path,
) -> std::result::Result<Command, String> {
    let bwrap = bwrap.ok_or("bwrap is not installed (apt-get install bubblewrap)")?;
    let mut c = Command::new(bwrap);
    c.args(["--unshare-all", "--ro-bind"]).arg(rootfs).args([
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "/bin/true",
    ]);
    Ok(c)
}

/// `bwrap --version`, the anchor of `cleanroom --version`.
pub(super) fn bwrap_version(bwrap: Option<&Path>) -> std::result::Result<Command, String> {
    let bwrap = bwrap.ok_or("bwrap is not installed (apt-get install bubblewrap)")?;
    let mut c = Command::new(bwrap);
    c.arg("--version");
    Ok(c)
}

/// `docker run --rm --network none IMAGE true` (or podman's).
pub(super) fn engine_command(
    choice: BackendChoice,
    image: &str,
) -> std::result::Result<Command, String> {
    let cli = choice.as_str();
    let bin = which(cli).ok_or(format!("the {cli} CLI is not installed"))?;
    let mut c = Command::new(bin);
    c.args(["run", "--rm", "--network", "none", image, "true"]);
    Ok(c)
}

/// The same one-shot through the `cleanroom` binary, as a user runs it:
/// on a rootfs directory `/bin/true`, the program the bubblewrap anchor
/// runs (by name, the sandbox's `PATH` tries five directories before
/// `/bin`); in an image `true`, as the engine anchors run it.
pub(super) fn cli_command(exe: &Path, choice: BackendChoice, spec: &SandboxSpec) -> Command {
    let program = match spec.rootfs {
        RootFs::Dir(_) => "/bin/true",
        _ => "true",
    };
    let mut c = Command::new(exe);
    c.args(["run", "-q", "--backend", choice.as_str()]);
    if let Some(bytes) = spec.memory {
        c.arg("--memory").arg(format!("{}M", bytes >> 20));
    }
    c.arg("--image")
        .arg(spec.rootfs.to_string())
        .args(["--", program]);
    c
}

pub(super) fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// A minimal rootfs of busybox and its applet links, in a temporary directory.
pub(super) fn busybox_rootfs() -> Result<tempfile::TempDir> {
    let busybox = which("busybox").ok_or_else(|| Error::Config {
        origin: "cleanroom bench".into(),
        message: "busybox is not installed; install busybox-static (scripts/bench does)".into(),
    })?;
    let dir = tempfile::Builder::new()
        .prefix("cleanroom-bench-rootfs-")
        .tempdir()
        .map_err(|e| Error::io("creating the benchmark rootfs", e))?;
    let io = |what: &str, e| Error::io(format!("building the benchmark rootfs: {what}"), e);
    for d in ["bin", "etc", "tmp", "proc", "dev", "workdir"] {
        std::fs::create_dir_all(dir.path().join(d)).map_err(|e| io(d, e))?;
    }
    std::fs::copy(&busybox, dir.path().join("bin/busybox")).map_err(|e| io("busybox", e))?;
    let list = Command::new(&busybox)
        .arg("--list")
        .output()
        .map_err(|e| io("busybox --list", e))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = dir.path().join("bin").join(applet.trim());
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link).map_err(|e| io(applet, e))?;
        }
    }
    std::fs::write(
        dir.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/workdir:/bin/sh\n",
    )
    .map_err(|e| io("etc/passwd", e))?;
    std::fs::write(dir.path().join("etc/group"), "root:x:0:\nuser:x:1000:\n")
        .map_err(|e| io("etc/group", e))?;
    Ok(dir)
}
