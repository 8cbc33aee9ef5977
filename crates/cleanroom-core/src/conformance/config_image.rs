//! Images run with their own configuration on every backend: the test
//! image [`CONFIG_IMAGE`] (static busybox, `/data/hello.txt`, and a config
//! setting Env, WorkingDir, User, Entrypoint and Cmd), which each isolating
//! backend's test file imports, and the check that runs it.

use std::path::Path;

use super::checks::{check, expect, reported_not_enforced, sh, show};
use super::{Check, CheckFuture, CheckResult, Harness, Outcome};
use crate::cmd::Cmd;
use crate::enforcement::Constraint;
use crate::image_config::ImageConfig;
use crate::spec::{RootFs, SandboxSpec, User};

/// The reference the test image is imported under.
pub const CONFIG_IMAGE: &str = "cleanroom-conformance-config:1";

/// The content of `/data/hello.txt` in the test image.
pub const HELLO: &str = "hello from the image\n";

/// The test image's config.
pub fn config_image_config() -> ImageConfig {
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    ImageConfig {
        env: s(&["FOO=yes", "PATH=/bin:/image-path"]),
        working_dir: Some("/data".into()),
        user: Some("4242:4242".into()),
        entrypoint: s(&["env", "FROM_ENTRYPOINT=yes"]),
        cmd: s(&["sh", "-c", "echo default-cmd $FROM_ENTRYPOINT $FOO"]),
    }
}

/// The test image's config as `docker import --change` lines.
pub fn config_image_changes() -> Vec<String> {
    let c = config_image_config();
    let json = |v: &[String]| {
        let quoted: Vec<String> = v.iter().map(|a| format!("\"{a}\"")).collect();
        format!("[{}]", quoted.join(","))
    };
    let mut out: Vec<String> = c.env.iter().map(|e| format!("ENV {e}")).collect();
    out.extend(c.working_dir.map(|d| format!("WORKDIR {d}")));
    out.extend(c.user.map(|u| format!("USER {u}")));
    out.push(format!("ENTRYPOINT {}", json(&c.entrypoint)));
    out.push(format!("CMD {}", json(&c.cmd)));
    out
}

/// The test image's root filesystem as an uncompressed tar stream: the
/// host's static busybox with a symlink per applet, `/etc/passwd` and
/// `/etc/group`, `/data/hello.txt`, and the usual mount points.
pub fn config_image_rootfs_tar() -> Result<Vec<u8>, String> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or("the config test image needs a static busybox (install busybox-static)")?;
    let bin = std::fs::read(busybox).map_err(|e| format!("reading {}: {e}", busybox.display()))?;
    let list = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| format!("busybox --list: {e}"))?;
    let mut t = Tar::default();
    for d in ["bin", "etc", "tmp", "proc", "dev", "sys", "data", "workdir"] {
        t.entry(d, b'5', 0o755, b"", "");
    }
    t.entry("bin/busybox", b'0', 0o755, &bin, "");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.contains('/') {
            t.entry(&format!("bin/{applet}"), b'2', 0o777, b"", "busybox");
        }
    }
    t.entry(
        "etc/passwd",
        b'0',
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nimage:x:4242:4242::/data:/bin/sh\n",
        "",
    );
    t.entry("etc/group", b'0', 0o644, b"root:x:0:\nimage:x:4242:\n", "");
    t.entry("data/hello.txt", b'0', 0o644, HELLO.as_bytes(), "");
    Ok(t.finish())
}

/// A minimal ustar writer (entries owned by 0:0, mtime 0): enough for a
/// root filesystem, without a tar dependency in the core crate.
#[derive(Default)]
struct Tar {
    out: Vec<u8>,
}

impl Tar {
    fn entry(&mut self, name: &str, kind: u8, mode: u32, data: &[u8], link: &str) {
        let mut h = [0u8; 512];
        let put = |h: &mut [u8; 512], at: usize, bytes: &[u8]| {
            h[at..at + bytes.len()].copy_from_slice(bytes);
        };
        put(&mut h, 0, name.as_bytes());
        put(&mut h, 100, format!("{mode:07o}\0").as_bytes());
        put(&mut h, 108, b"0000000\0");
        put(&mut h, 116, b"0000000\0");
        put(&mut h, 124, format!("{:011o}\0", data.len()).as_bytes());
        put(&mut h, 136, b"00000000000\0");
        put(&mut h, 148, b"        ");
        h[156] = kind;
        put(&mut h, 157, link.as_bytes());
        put(&mut h, 257, b"ustar\x0000");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
        self.out.extend_from_slice(&h);
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
    }

    fn finish(mut self) -> Vec<u8> {
        self.out.extend([0u8; 1024]);
        self.out
    }
}

pub(super) fn all() -> Vec<Check> {
    vec![check!(
        image_config,
        "an image's Env, WorkingDir, User and Entrypoint/Cmd apply under the spec's own settings"
    )]
}

async fn image_config(h: &Harness) -> CheckResult {
    let spec = SandboxSpec {
        rootfs: RootFs::Image(CONFIG_IMAGE.into()),
        ..h.spec()
    };
    if !h.claims(&spec, Constraint::FilesystemIsolation) {
        return reported_not_enforced(h, &spec, Constraint::FilesystemIsolation).await;
    }
    let probe = "echo \"$FOO $FROM_ENTRYPOINT $PATH\"; pwd; id -u; id -g; cat hello.txt";

    // The image's config, the entrypoint kept in front of the command.
    let r = h.run(&spec, sh(probe)).await?;
    let want = format!("yes yes /bin:/image-path\n/data\n4242\n4242\n{HELLO}");
    expect(r.stdout_lossy() == want, || {
        format!("the image's own config: want {want:?}, got {}", show(&r))
    })?;

    // The spec's settings win.
    let mut over = SandboxSpec {
        user: User {
            uid: 2000,
            gid: 2001,
        },
        workdir: "/work".into(),
        ..spec.clone()
    };
    over.env.insert("FOO".into(), "from-spec".into());
    over.env.insert("PATH".into(), "/bin:/usr/bin".into());
    let r = h
        .run(
            &over,
            sh("echo \"$FOO $FROM_ENTRYPOINT $PATH\"; pwd; id -u; id -g"),
        )
        .await?;
    let want = "from-spec yes /bin:/usr/bin\n/work\n2000\n2001\n";
    expect(r.stdout_lossy() == want, || {
        format!("the spec over the image: want {want:?}, got {}", show(&r))
    })?;

    // No command: Entrypoint + Cmd.
    let r = h.run(&spec, Cmd::default()).await?;
    expect(r.stdout == b"default-cmd yes yes\n", || {
        format!("a run without a command: {}", show(&r))
    })?;

    // An exec into a running sandbox runs as given (no entrypoint), in the
    // image's directory, as the image's user.
    let sb = h
        .backend
        .create(&spec, None)
        .await
        .map_err(|e| format!("create: {e}"))?;
    let r = sb
        .exec(sh("echo \"${FROM_ENTRYPOINT:-none} $FOO\"; pwd; id -u"))
        .await;
    let _ = sb.remove().await;
    let r = r.map_err(|e| format!("exec: {e}"))?;
    expect(r.stdout == b"none yes\n/data\n4242\n", || {
        format!("an exec in a sandbox of the image: {}", show(&r))
    })?;
    Ok(Outcome::Verified)
}
