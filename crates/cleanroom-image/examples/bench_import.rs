//! Benchmark (not a test): import of a `docker save` archive of about 200 MB
//! in 4 layers plus the unpack a first run needs (the merged rootfs), beside
//! `tar -x` of the same layers into one directory, in the same run, on the
//! same filesystem, taking turns (A B A B ...), medians. Layers plain and
//! gzip-compressed (`tar -xzf` then). Before every measurement the outputs
//! of the last one are deleted and `sync`ed, so each starts with the inputs
//! in the page cache and no dirty pages.
//!
//! `cargo run --profile profiling -p cleanroom-image --example bench_import -- [MB] [ROUNDS]`
//!
//! `BENCH_CASES=plain` (or `gzip`) runs one case only. `BENCH_FRESH_FS=1`
//! (root) gives every measurement a new ext4 filesystem (see [`Target`]).
//!
//! With `CLEANROOM_BIN=path/to/cleanroom` it also times the CLI as whole
//! processes: `cleanroom import FILE` and the first
//! `cleanroom run --backend native --image bench:1 -- /bin/true` (the first
//! layer carries a static busybox, so that run really runs).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cleanroom_image::{Digest, Store};

/// Deterministic, incompressible-ish bytes.
fn fill(buf: &mut [u8], seed: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let b = seed.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

/// A layer tar of `files` files of `size` bytes in nested directories; the
/// first layer also holds /bin/busybox and /bin/true.
fn make_layer(path: &Path, n: usize, files: usize, size: usize) {
    let f = fs::File::create(path).unwrap();
    let mut b = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, f));
    if n == 0 {
        if let Ok(bb) = fs::read("/usr/bin/busybox") {
            let mut h = tar::Header::new_gnu();
            h.set_size(bb.len() as u64);
            h.set_mode(0o755);
            b.append_data(&mut h, "bin/busybox", bb.as_slice()).unwrap();
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, "bin/true", "busybox").unwrap();
        }
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ n as u64;
    let mut data = vec![0u8; size];
    for i in 0..files {
        fill(&mut data, &mut seed);
        // A quarter of each file compresses, like real binaries.
        data[..size / 4].fill(b'x');
        let mut h = tar::Header::new_gnu();
        h.set_size(size as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        let name = format!("layer{n}/d{}/e{}/file{i}", i % 16, i % 7);
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap().flush().unwrap();
}

fn gzip(src: &Path, dst: &Path) {
    let mut enc =
        flate2::write::GzEncoder::new(fs::File::create(dst).unwrap(), flate2::Compression::fast());
    std::io::copy(&mut fs::File::open(src).unwrap(), &mut enc).unwrap();
    enc.finish().unwrap();
}

/// A `docker save` archive (the layout before Docker 25) of `layers`, tagged `bench:1`.
fn make_archive(archive: &Path, layers: &[PathBuf], diff_ids: &[String]) {
    let mut entries = Vec::new();
    for p in layers {
        let d = Digest::of(&fs::read(p).unwrap());
        entries.push(format!("{}/layer.tar", d.hex()));
    }
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    .to_string();
    let manifest =
        serde_json::json!([{"Config": "config.json", "RepoTags": ["bench:1"], "Layers": entries}])
            .to_string();
    let mut b = tar::Builder::new(std::io::BufWriter::new(fs::File::create(archive).unwrap()));
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("config.json", config.as_bytes());
    add("manifest.json", manifest.as_bytes());
    for (p, e) in layers.iter().zip(&entries) {
        b.append_path_with_name(p, e).unwrap();
    }
    b.into_inner().unwrap().flush().unwrap();
}

/// Where the outputs go, made empty before every measurement.
///
/// By default a directory beside the inputs, emptied and `sync`ed. On a
/// journal-less ext4 the inode allocator then skips every inode freed in the
/// last minute, and a disk mounted with `discard` adds delays of its own, so
/// one contender's time swings 3x between rounds (measured: `tar -x` from
/// 0.18 to 0.58 s). With `BENCH_FRESH_FS=1` (root, `mkfs.ext4` and loop
/// devices needed) every measurement gets a new ext4 made on a loop file
/// instead: all contenders start from the same empty filesystem.
struct Target {
    dir: PathBuf,
    image: Option<PathBuf>,
}

impl Target {
    fn new(parent: &Path, total_mb: usize) -> Target {
        let dir = parent.join("target");
        fs::create_dir(&dir).unwrap();
        let image = std::env::var("BENCH_FRESH_FS")
            .is_ok_and(|v| v == "1")
            .then(|| {
                let image = parent.join("target.ext4");
                // Room for the store and the unpacked tree, sparse.
                let f = fs::File::create(&image).unwrap();
                f.set_len((total_mb as u64 * 4 + 512) << 20).unwrap();
                image
            });
        Target { dir, image }
    }

    fn reset(&self) {
        match &self.image {
            Some(image) => {
                let _ = Command::new("umount")
                    .arg(&self.dir)
                    .stderr(std::process::Stdio::null())
                    .status();
                run(Command::new("mkfs.ext4")
                    .args(["-q", "-F", "-O", "^has_journal"])
                    .arg(image));
                run(Command::new("mount")
                    .args(["-o", "loop"])
                    .arg(image)
                    .arg(&self.dir));
            }
            None => {
                for e in fs::read_dir(&self.dir).unwrap() {
                    let _ = Command::new("rm")
                        .arg("-rf")
                        .arg(e.unwrap().path())
                        .status();
                }
            }
        }
        Command::new("sync").status().unwrap();
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if self.image.is_some() {
            let _ = Command::new("umount").arg(&self.dir).status();
        }
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// CPU seconds (user + system) used so far by this process and by its
/// waited-for children, from `/proc/self/stat`.
fn cpu() -> (f64, f64) {
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<f64> = after
        .split(' ')
        .skip(11)
        .take(4)
        .map(|x| x.parse().unwrap())
        .collect();
    let tick = 100.0; // USER_HZ
    ((f[0] + f[1]) / tick, (f[2] + f[3]) / tick)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Case {
    name: &'static str,
    layers: Vec<PathBuf>,
    archive: PathBuf,
    gz: bool,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let total_mb: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(200);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let cli = std::env::var_os("CLEANROOM_BIN").map(PathBuf::from);
    let tmp = tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or(".".into())).unwrap();
    let dir = tmp.path();
    let n_layers = 4;
    let size = 64 * 1024;
    let files = total_mb * 1_000_000 / n_layers / size;
    let mut plain = Vec::new();
    let mut gz = Vec::new();
    let mut diff_ids = Vec::new();
    for n in 0..n_layers {
        let p = dir.join(format!("layer{n}.tar"));
        make_layer(&p, n, files, size);
        diff_ids.push(Digest::of(&fs::read(&p).unwrap()).to_string());
        let g = dir.join(format!("layer{n}.tar.gz"));
        gzip(&p, &g);
        plain.push(p);
        gz.push(g);
    }
    let bytes: u64 = plain.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    let gz_bytes: u64 = gz.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    let cases = [
        Case {
            name: "plain",
            archive: dir.join("image.tar"),
            layers: plain,
            gz: false,
        },
        Case {
            name: "gzip",
            archive: dir.join("image-gz.tar"),
            layers: gz,
            gz: true,
        },
    ];
    let only = std::env::var("BENCH_CASES").ok();
    let cases: Vec<Case> = cases
        .into_iter()
        .filter(|c| only.as_deref().is_none_or(|o| o == c.name))
        .collect();
    for c in &cases {
        make_archive(&c.archive, &c.layers, &diff_ids);
    }
    println!(
        "image: {n_layers} layers, {} files of {} KiB, {:.1} MB of layer tars ({:.1} MB gzipped), {rounds} rounds, medians, in {}",
        files * n_layers,
        size / 1024,
        bytes as f64 / 1e6,
        gz_bytes as f64 / 1e6,
        dir.display()
    );
    let target = Target::new(dir, total_mb);
    println!(
        "outputs: {}",
        if target.image.is_some() {
            "a new ext4 on a loop file for every measurement (BENCH_FRESH_FS=1)"
        } else {
            "a directory emptied and synced before every measurement"
        }
    );
    let out = target.dir.join("out");
    let store_dir = target.dir.join("store");
    for c in &cases {
        let (mut tar_t, mut imp_t, mut unp_t, mut lib_t) = (vec![], vec![], vec![], vec![]);
        let (mut cli_imp, mut cli_run, mut cli_t) = (vec![], vec![], vec![]);
        let (mut tar_cpu, mut lib_cpu, mut cli_cpu) = (vec![], vec![], vec![]);
        for _ in 0..rounds {
            // A: tar -x of the layers into one directory, one after the other.
            target.reset();
            fs::create_dir(&out).unwrap();
            let c0 = cpu().1;
            let t = Instant::now();
            for p in &c.layers {
                let x = if c.gz { "-xzf" } else { "-xf" };
                run(Command::new("tar").arg(x).arg(p).arg("-C").arg(&out));
            }
            tar_t.push(t.elapsed().as_secs_f64());
            tar_cpu.push(cpu().1 - c0);

            // B: the library: import, then the merged rootfs a first run needs.
            target.reset();
            let c0 = cpu().0;
            let t = Instant::now();
            let store = Store::open(&store_dir).unwrap();
            store.import(c.archive.to_str().unwrap(), None).unwrap();
            let i = t.elapsed().as_secs_f64();
            let img = store.resolve("bench:1").unwrap();
            store.rootfs_dir(&img).unwrap();
            let all = t.elapsed().as_secs_f64();
            imp_t.push(i);
            unp_t.push(all - i);
            lib_t.push(all);
            lib_cpu.push(cpu().0 - c0);

            // C: the CLI as whole processes.
            if let Some(bin) = &cli {
                target.reset();
                let c0 = cpu().1;
                let t = Instant::now();
                run(Command::new(bin)
                    .env("CLEANROOM_HOME", &store_dir)
                    .arg("import")
                    .arg(&c.archive));
                let i = t.elapsed().as_secs_f64();
                run(Command::new(bin).env("CLEANROOM_HOME", &store_dir).args([
                    "run",
                    "--backend",
                    "native",
                    "--image",
                    "bench:1",
                    "--",
                    "/bin/true",
                ]));
                let all = t.elapsed().as_secs_f64();
                cli_imp.push(i);
                cli_run.push(all - i);
                cli_t.push(all);
                cli_cpu.push(cpu().1 - c0);
            }
        }
        target.reset();
        let mbps = |s: f64| bytes as f64 / 1e6 / s;
        let tar = median(&mut tar_t);
        let row = |what: &str, s: f64| {
            println!(
                "{:5} {what:44} {s:6.3} s {:7.1} MB/s  {:5.2}x tar -x",
                c.name,
                mbps(s),
                tar / s
            )
        };
        println!(
            "{:5} {:44} {tar:6.3} s {:7.1} MB/s",
            c.name,
            if c.gz {
                "tar -xzf (4 layers)"
            } else {
                "tar -xf (4 layers)"
            },
            mbps(tar)
        );
        row("library: import", median(&mut imp_t));
        row(
            "library: merged rootfs (first run's unpack)",
            median(&mut unp_t),
        );
        row("library: import + merged rootfs", median(&mut lib_t));
        println!(
            "{:5} CPU seconds (user + system), medians: tar {:.2}, library {:.2}{}",
            c.name,
            median(&mut tar_cpu),
            median(&mut lib_cpu),
            if cli.is_some() {
                format!(", cli {:.2}", median(&mut cli_cpu))
            } else {
                String::new()
            }
        );
        if cli.is_some() {
            row("cli: `cleanroom import` process", median(&mut cli_imp));
            row("cli: first `cleanroom run` process", median(&mut cli_run));
            row("cli: import + first run (processes)", median(&mut cli_t));
        }
    }
}
