//! Fault injection: SIGKILL the real CLI at random points of `cleanroom
//! import <docker-archive>` and of the first unpack of a `tar://` rootfs
//! (`cleanroom run --image tar://...` on native), 20 times each. Without any
//! `gc`, the next start leaves nothing of the killed ones in
//! `$CLEANROOM_HOME/tmp` nor `.unpacking-*` in the tarball cache, and the
//! store verifies.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const KILLS: usize = 20;
/// Sizes of the big file in the image, large enough that a kill lands
/// mid-way: hashing on import is slow in a debug build, unpacking is fast.
const IMPORT_MIB: usize = 16;
const UNPACK_MIB: usize = 96;

mod common;

use common::{native_available, text};

fn cmd(home: &Path, args: &[&str]) -> Command {
    let mut c = common::command(home, args);
    c.env("CLEANROOM_HOME", home).stdin(Stdio::null());
    c
}

fn run(home: &Path, args: &[&str]) -> Output {
    cmd(home, args)
        .output()
        .expect("running the cleanroom binary")
}

fn sh(script: &str) {
    let out = Command::new("sh").args(["-ec", script]).output().unwrap();
    assert!(out.status.success(), "{script}: {}", text(&out.stderr));
}

/// A rootfs tarball (busybox and a big file of changing bytes) and a
/// `docker save`-style archive of it as one layer.
fn inputs(dir: &Path, big_mib: usize) -> (PathBuf, PathBuf) {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("data")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("/bin/busybox (Debian's busybox-static) is needed");
    for tool in ["sh", "true"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool)).unwrap();
    }
    let mut big = Vec::with_capacity(big_mib << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while big.len() < big_mib << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(rootfs.join("data/big.bin"), &big).unwrap();
    let layer = dir.join("layer.tar");
    sh(&format!(
        "tar -C {} --numeric-owner --owner=0 --group=0 -cf {} .",
        rootfs.display(),
        layer.display()
    ));

    let archive_dir = dir.join("archive");
    std::fs::create_dir_all(&archive_dir).unwrap();
    std::fs::rename(&layer, archive_dir.join("layer.tar")).unwrap();
    let diff_id = Command::new("sha256sum")
        .arg(archive_dir.join("layer.tar"))
        .output()
        .unwrap();
    let diff_id = text(&diff_id.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{diff_id}")] },
    });
    std::fs::write(archive_dir.join("config.json"), config.to_string()).unwrap();
    let manifest = serde_json::json!([{
        "Config": "config.json",
        "RepoTags": ["big:1"],
        "Layers": ["layer.tar"],
    }]);
    std::fs::write(archive_dir.join("manifest.json"), manifest.to_string()).unwrap();
    let archive = dir.join("big-docker.tar");
    sh(&format!(
        "tar -C {} -cf {} manifest.json config.json layer.tar",
        archive_dir.display(),
        archive.display()
    ));
    let rootfs_tar = dir.join("rootfs.tar");
    std::fs::rename(archive_dir.join("layer.tar"), &rootfs_tar).unwrap();
    (archive, rootfs_tar)
}

/// A small xorshift generator, seeded from the clock; the seed is printed
/// so a failing sequence of kill points can be replayed by reading it.
struct Points(u64);

impl Points {
    fn new() -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        eprintln!("kill points seed: {seed}");
        Points(seed)
    }

    /// A point in `0..span`.
    fn within(&mut self, span: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        span.mul_f64((self.0 % 10_000) as f64 / 10_000.0)
    }
}

/// Starts `args`, SIGKILLs it after `delay` (unless it ended first), and
/// says whether the kill landed.
fn kill_after(home: &Path, args: &[&str], delay: Duration) -> bool {
    let mut child = cmd(home, args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let landed = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    child.wait().unwrap();
    landed
}

/// How long `args` takes when left alone.
fn timed(home: &Path, args: &[&str]) -> Duration {
    let start = Instant::now();
    let out = run(home, args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    start.elapsed()
}

/// The shortest of three timings, less a tenth: kill points are drawn
/// below it, so a slow first run (a cold page cache, a busy machine) does
/// not put points after the end of a fast one, where they cannot land.
fn shortest(mut time: impl FnMut() -> Duration) -> Duration {
    let best = (0..3).map(|_| time()).min().unwrap();
    best.mul_f64(0.9)
}

fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(list) => list
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn killed_imports_leave_nothing_once_the_store_is_opened_again() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, _) = inputs(dir.path(), IMPORT_MIB);
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let archive = archive.to_str().unwrap();
    let whole = shortest(|| {
        let took = timed(&home, &["import", archive]);
        let out = run(&home, &["rmi", "big:1"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        took
    });

    let mut points = Points::new();
    let mut landed = 0;
    for _ in 0..KILLS {
        if kill_after(&home, &["import", archive], points.within(whole)) {
            landed += 1;
        }
    }
    eprintln!("{landed} of {KILLS} kills landed during an import of {whole:?}");
    assert!(
        landed >= KILLS / 2,
        "too few kills landed mid-import: {landed}"
    );

    // The next start (any command that opens the store), no gc.
    let out = run(&home, &["images"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let left = entries(&home.join("tmp"));
    assert!(left.is_empty(), "left in $CLEANROOM_HOME/tmp: {left:?}");
    let out = run(&home, &["images", "verify"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // And an import still completes.
    let out = run(&home, &["import", archive]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(entries(&home.join("tmp")).is_empty());
}

#[test]
fn killed_tar_unpacks_leave_nothing_after_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    if !native_available(&home) {
        return;
    }
    let (_, rootfs_tar) = inputs(dir.path(), UNPACK_MIB);
    let image = format!("tar://{}", rootfs_tar.display());
    let args = [
        "run",
        "--backend",
        "native",
        "-q",
        "--image",
        &image,
        "--",
        "true",
    ];
    let cache = home.join("cache/native-tar");
    let drop_cache = || {
        for name in entries(&cache) {
            if name.starts_with("tar-") {
                std::fs::remove_dir_all(cache.join(name)).unwrap();
            }
        }
    };
    let whole = shortest(|| {
        let took = timed(&home, &args);
        drop_cache();
        took
    });

    let mut points = Points::new();
    let mut landed = 0;
    for _ in 0..KILLS {
        // Every attempt is a first unpack: no finished tree to reuse.
        drop_cache();
        if kill_after(&home, &args, points.within(whole)) {
            landed += 1;
        }
    }
    eprintln!("{landed} of {KILLS} kills landed during a first tar:// run of {whole:?}");
    assert!(
        landed >= KILLS / 2,
        "too few kills landed mid-unpack: {landed}"
    );

    // The next start, no gc: it sweeps what dead callers left, and runs.
    drop_cache();
    let out = run(&home, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let left: Vec<String> = entries(&cache)
        .into_iter()
        .filter(|n| n.starts_with(".unpacking-"))
        .collect();
    assert!(left.is_empty(), "left in {}: {left:?}", cache.display());
    let unpacked = entries(&cache)
        .into_iter()
        .filter(|n| n.starts_with("tar-"));
    assert_eq!(unpacked.count(), 1, "one complete tree, the last run's");
}
