//! Benchmark (not a test): import + unpack of a synthetic multi-layer image
//! of about 200 MB, beside `tar -x` of the same layers in the same run.
//!
//! `cargo run --release -p cleanroom-image --example bench_import [MB]`

use std::fs;
use std::io::Write;
use std::path::Path;
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

/// A layer tar of `files` files of `size` bytes in nested directories.
fn make_layer(path: &Path, n: usize, files: usize, size: usize) -> u64 {
    let f = fs::File::create(path).unwrap();
    let mut b = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, f));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ n as u64;
    let mut data = vec![0u8; size];
    for i in 0..files {
        fill(&mut data, &mut seed);
        let mut h = tar::Header::new_gnu();
        h.set_size(size as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        let name = format!("layer{n}/d{}/e{}/file{i}", i % 16, i % 7);
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap().flush().unwrap();
    fs::metadata(path).unwrap().len()
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

fn main() {
    let total_mb: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let tmp = tempfile::tempdir().unwrap();
    let layers = 4;
    let size = 64 * 1024;
    let files = total_mb * 1_000_000 / layers / size;
    let mut paths = Vec::new();
    let mut bytes = 0;
    for n in 0..layers {
        let p = tmp.path().join(format!("layer{n}.tar"));
        bytes += make_layer(&p, n, files, size);
        paths.push(p);
    }
    // A docker-save archive of those layers.
    let mut entries = Vec::new();
    let mut diff_ids = Vec::new();
    for p in &paths {
        let d = Digest::of(&fs::read(p).unwrap());
        diff_ids.push(d.to_string());
        entries.push(format!("{}/layer.tar", d.hex()));
    }
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    .to_string();
    let archive = tmp.path().join("image.tar");
    {
        let mut b = tar::Builder::new(std::io::BufWriter::new(fs::File::create(&archive).unwrap()));
        let mut add = |name: &str, path: Option<&Path>, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            match path {
                Some(p) => b.append_path_with_name(p, name).unwrap(),
                None => {
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, name, data).unwrap()
                }
            }
        };
        add("config.json", None, config.as_bytes());
        for (p, e) in paths.iter().zip(&entries) {
            add(e, Some(p), &[]);
        }
        let manifest = serde_json::json!([{"Config": "config.json", "RepoTags": ["bench:1"], "Layers": entries}]);
        add("manifest.json", None, manifest.to_string().as_bytes());
        b.into_inner().unwrap().flush().unwrap();
    }
    println!(
        "image: {layers} layers, {} files of {} KiB each, {:.1} MB of layer tars",
        files * layers,
        size / 1024,
        bytes as f64 / 1e6
    );
    Command::new("sync").status().ok();

    // Baseline: tar -x of the same layers, one after the other.
    let out = tmp.path().join("tar-x");
    fs::create_dir(&out).unwrap();
    let t = Instant::now();
    for p in &paths {
        let ok = Command::new("tar")
            .arg("-xf")
            .arg(p)
            .arg("-C")
            .arg(&out)
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let tar_secs = t.elapsed().as_secs_f64();

    let store = Store::open(tmp.path().join("store")).unwrap();
    let t = Instant::now();
    store.import(archive.to_str().unwrap(), None).unwrap();
    let import_secs = t.elapsed().as_secs_f64();
    let img = store.resolve("bench:1").unwrap();
    let t = Instant::now();
    let dirs = store.layer_dirs(&img).unwrap();
    let unpack_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let again = store.layer_dirs(&img).unwrap();
    let cached_secs = t.elapsed().as_secs_f64();
    assert_eq!(dirs, again);
    let t = Instant::now();
    store.rootfs_dir(&img).unwrap();
    let merge_secs = t.elapsed().as_secs_f64();

    println!(
        "tar -x (4 layers, sequential):       {tar_secs:7.2} s  {:7.1} MB/s",
        mbps(bytes, tar_secs)
    );
    println!(
        "import (hash + copy into store):     {import_secs:7.2} s  {:7.1} MB/s",
        mbps(bytes, import_secs)
    );
    println!(
        "unpack layers (verify, parallel):    {unpack_secs:7.2} s  {:7.1} MB/s",
        mbps(bytes, unpack_secs)
    );
    let both = import_secs + unpack_secs;
    println!(
        "import + unpack:                     {both:7.2} s  {:7.1} MB/s",
        mbps(bytes, both)
    );
    println!(
        "layer_dirs again (cached):           {:7.3} ms",
        cached_secs * 1e3
    );
    println!(
        "merged rootfs (copy of all layers):  {merge_secs:7.2} s  {:7.1} MB/s",
        mbps(bytes, merge_secs)
    );
}
