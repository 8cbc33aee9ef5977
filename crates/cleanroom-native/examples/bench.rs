//! Side-by-side numbers for the native backend (not a test):
//! `cargo run --release -p cleanroom-native --example bench`.
//!
//! Medians of: one-shot `true` in a busybox rootfs with every namespace,
//! seccomp and (as root) a memory limit, against `bwrap --unshare-all
//! --ro-bind ROOTFS / --proc /proc --dev /dev /bin/true` when bubblewrap is
//! installed; exec of `true` into a warm sandbox; one-shot sandboxes per
//! second, 4 at a time; and the memory (PSS) of an idle long-lived sandbox.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cleanroom_core::{Backend, Cmd, RootFs, SandboxSpec};
use cleanroom_native::NativeBackend;

fn busybox_rootfs() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cleanroom-bench-rootfs-{}", std::process::id()));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox (busybox-static) is needed for the bench rootfs");
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    for applet in ["sh", "true", "cat", "sleep"] {
        let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
    }
    for d in ["proc", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    dir
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Proportional set size of `pid` in KiB.
fn pss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn sandbox_processes() -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().into_owned();
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            let ppid_chain_ours = comm.trim() == "cleanroom-init" || comm.trim() == "cleanroom-ns";
            ppid_chain_ours.then_some(pid)
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let n = 50;
    let rootfs = busybox_rootfs();
    let backend = NativeBackend::new();
    let root = nix::unistd::geteuid().is_root();
    let spec = SandboxSpec {
        rootfs: RootFs::Dir(rootfs.clone()),
        memory: Some(256 << 20),
        ..SandboxSpec::default()
    };
    let report = backend.enforcement(&spec);
    println!(
        "native one-shot spec: busybox rootfs, all namespaces, seccomp {}, memory limit {}",
        if report.is_enforced(cleanroom_core::Constraint::Seccomp) {
            "on"
        } else {
            "off"
        },
        if report.is_enforced(cleanroom_core::Constraint::MemoryLimit) {
            "on"
        } else {
            "not enforced (rootless)"
        },
    );
    let _ = backend.run(&spec, Cmd::new("true")).await.unwrap();

    // Interleaved, so both see the same machine load.
    let has_bwrap = Path::new("/usr/bin/bwrap").exists();
    let plain = SandboxSpec {
        memory: None,
        ..spec.clone()
    };
    let (mut native, mut native_plain, mut bwrap) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        let r = backend.run(&spec, Cmd::new("true")).await.unwrap();
        assert!(r.success(), "{}", r.stderr_lossy());
        native.push(t.elapsed());
        let t = Instant::now();
        let r = backend.run(&plain, Cmd::new("true")).await.unwrap();
        assert!(r.success(), "{}", r.stderr_lossy());
        native_plain.push(t.elapsed());
        if has_bwrap {
            let t = Instant::now();
            let s = std::process::Command::new("bwrap")
                .args(["--unshare-all", "--ro-bind"])
                .arg(&rootfs)
                .args(["/", "--proc", "/proc", "--dev", "/dev", "/bin/true"])
                .status()
                .unwrap();
            assert!(s.success());
            bwrap.push(t.elapsed());
        }
    }
    let native = median(native);
    let native_plain = median(native_plain);
    let bwrap = has_bwrap.then(|| median(bwrap));

    let sb = backend.create(&spec, None).await.unwrap();
    let mut warm = Vec::new();
    for _ in 0..(n * 4) {
        let t = Instant::now();
        let r = sb.exec(Cmd::new("true")).await.unwrap();
        assert!(r.success());
        warm.push(t.elapsed());
    }
    let warm = median(warm);
    sb.remove().await.unwrap();

    let total = 100;
    let t = Instant::now();
    let mut next = 0;
    while next < total {
        let batch: Vec<_> = (0..4)
            .map(|_| {
                let b = backend.clone();
                let s = spec.clone();
                tokio::spawn(async move { b.run(&s, Cmd::new("true")).await.unwrap() })
            })
            .collect();
        for b in batch {
            b.await.unwrap();
        }
        next += 4;
    }
    let per_sec = total as f64 / t.elapsed().as_secs_f64();

    let idle_spec = SandboxSpec {
        memory: None,
        ..spec.clone()
    };
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(backend.create(&idle_spec, None).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let procs = sandbox_processes();
    let pss: u64 = procs.iter().map(|p| pss_kib(p)).sum();
    let per_sandbox = pss as f64 / idle.len() as f64 / 1024.0;
    for s in &idle {
        s.remove().await.unwrap();
    }
    let _ = std::fs::remove_dir_all(&rootfs);

    println!("| measure | native | bubblewrap |");
    println!("|---|---|---|");
    match bwrap {
        Some(b) => println!(
            "| one-shot `true` (median of {n}) | {} | {} (ratio {:.2}) |",
            ms(native),
            ms(b),
            native.as_secs_f64() / b.as_secs_f64()
        ),
        None => println!(
            "| one-shot `true` (median of {n}) | {} | not installed |",
            ms(native)
        ),
    }
    match bwrap {
        Some(b) => println!(
            "| one-shot `true`, no memory limit (median of {n}) | {} | {} (ratio {:.2}) |",
            ms(native_plain),
            ms(b),
            native_plain.as_secs_f64() / b.as_secs_f64()
        ),
        None => println!(
            "| one-shot `true`, no memory limit (median of {n}) | {} | not installed |",
            ms(native_plain)
        ),
    }
    println!(
        "| warm exec `true` (median of {}) | {} | - |",
        n * 4,
        ms(warm)
    );
    println!("| one-shot sandboxes per second (4 at a time) | {per_sec:.0} | - |");
    println!("| idle long-lived sandbox, PSS of its 2 processes | {per_sandbox:.2} MiB | - |");
    println!("(caller is {})", if root { "root" } else { "unprivileged" });
}
