//! Builders for the archives the tests import: layer tarballs (including
//! malicious ones), `docker save` archives in both layouts, OCI layouts,
//! and a busybox root filesystem.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::Path;

use cleanroom_image::Digest;

/// One entry of a layer tarball.
pub enum E<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str, u32),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    CharDev(&'a str, u32, u32),
}

fn header(kind: tar::EntryType, name: &str, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    // Write the name bytes directly: `set_path` refuses `..` and absolute paths,
    // which the malicious-archive tests need.
    let raw = &mut h.as_old_mut().name;
    raw.fill(0);
    raw[..name.len()].copy_from_slice(name.as_bytes());
    h
}

fn set_link(h: &mut tar::Header, target: &str) {
    let raw = &mut h.as_old_mut().linkname;
    raw.fill(0);
    raw[..target.len()].copy_from_slice(target.as_bytes());
}

/// A tar stream of `entries`, in order.
pub fn layer(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::File(name, data, mode) => {
                let mut h = header(tar::EntryType::Regular, name, data.len() as u64, *mode);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            E::Dir(name, mode) => {
                let mut h = header(tar::EntryType::Directory, name, 0, *mode);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            E::Symlink(name, target) => {
                let mut h = header(tar::EntryType::Symlink, name, 0, 0o777);
                set_link(&mut h, target);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            E::Hardlink(name, target) => {
                let mut h = header(tar::EntryType::Link, name, 0, 0o644);
                set_link(&mut h, target);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            E::CharDev(name, major, minor) => {
                let mut h = header(tar::EntryType::Char, name, 0, 0o666);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 1).unwrap()
}

/// A tar archive of named files (for bundles).
pub fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

/// Writes named files below `dir`.
pub fn write_tree(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (name, data) in files {
        let p = dir.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }
}

fn sha(data: &[u8]) -> Digest {
    Digest::of(data)
}

/// A Docker-style image config for uncompressed `layers`.
pub fn config(layers: &[Vec<u8>]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| sha(&decompressed(l)).to_string())
        .collect();
    serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2024-05-01T12:00:00Z",
        "docker_version": "24.0.7",
        "config": {"Env": ["PATH=/bin", "GREETING=hello"], "WorkingDir": "/srv", "User": "1000:1000",
                   "Entrypoint": null, "Cmd": ["/bin/sh"], "OnBuild": null, "Labels": null},
        "container_config": {"Hostname": "abc"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-05-01T12:00:00Z", "created_by": "test"}]
    })
    .to_string()
    .into_bytes()
}

pub fn decompressed(l: &[u8]) -> Vec<u8> {
    use std::io::Read;
    if l.starts_with(&[0x1f, 0x8b]) {
        let mut v = Vec::new();
        flate2::read::GzDecoder::new(l).read_to_end(&mut v).unwrap();
        v
    } else if l.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::decode_all(l).unwrap()
    } else {
        l.to_vec()
    }
}

/// The files of a `docker save` archive in the layout before Docker 25.
pub fn docker_save_old(layers: &[Vec<u8>], tags: &[&str]) -> Vec<(String, Vec<u8>)> {
    let cfg = config(layers);
    let cfg_name = format!("{}.json", sha(&cfg).hex());
    let mut files = vec![(cfg_name.clone(), cfg)];
    let mut names = Vec::new();
    for l in layers {
        let id = sha(l).hex().to_owned();
        names.push(format!("{id}/layer.tar"));
        files.push((format!("{id}/VERSION"), b"1.0".to_vec()));
        files.push((format!("{id}/layer.tar"), l.clone()));
    }
    let manifest = serde_json::json!([{ "Config": cfg_name, "RepoTags": tags, "Layers": names }]);
    files.push(("manifest.json".into(), manifest.to_string().into_bytes()));
    files
}

/// An OCI layout (files) for `layers` with the given `ref.name` annotation,
/// plus, when `docker` is set, the `manifest.json` Docker 25+ adds.
pub fn oci_layout(
    layers: &[Vec<u8>],
    ref_name: &str,
    docker_tags: Option<&[&str]>,
) -> Vec<(String, Vec<u8>)> {
    let cfg = config(layers);
    let mut files = vec![(format!("blobs/sha256/{}", sha(&cfg).hex()), cfg.clone())];
    let mut descs = Vec::new();
    for l in layers {
        let mt = if l.starts_with(&[0x1f, 0x8b]) {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        } else if l.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            "application/vnd.oci.image.layer.v1.tar+zstd"
        } else {
            "application/vnd.oci.image.layer.v1.tar"
        };
        descs.push(
            serde_json::json!({"mediaType": mt, "digest": sha(l).to_string(), "size": l.len()}),
        );
        files.push((format!("blobs/sha256/{}", sha(l).hex()), l.clone()));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&cfg).to_string(), "size": cfg.len()},
        "layers": descs,
    })
    .to_string()
    .into_bytes();
    files.push((
        format!("blobs/sha256/{}", sha(&manifest).hex()),
        manifest.clone(),
    ));
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha(&manifest).to_string(), "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": ref_name}}],
    });
    files.push(("index.json".into(), index.to_string().into_bytes()));
    files.push((
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    ));
    if let Some(tags) = docker_tags {
        let layer_names: Vec<String> = layers
            .iter()
            .map(|l| format!("blobs/sha256/{}", sha(l).hex()))
            .collect();
        let m = serde_json::json!([{ "Config": format!("blobs/sha256/{}", sha(&cfg).hex()), "RepoTags": tags, "Layers": layer_names }]);
        files.push(("manifest.json".into(), m.to_string().into_bytes()));
    }
    files
}

pub const OS_RELEASE: &str =
    "PRETTY_NAME=\"Cleanroom Test Linux\"\nID=cleanroom-test\nVERSION_ID=1\n";

/// A busybox root filesystem in `dir` (from Debian's busybox-static).
pub fn busybox_rootfs(dir: &Path) {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: install Debian's busybox-static (scripts/setup.d/30-registry.sh does)"
    );
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::create_dir_all(dir.join("tmp")).unwrap();
    fs::copy(busybox, dir.join("bin/busybox")).unwrap();
    for tool in ["sh", "cat", "ls", "echo", "true"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(tool)).unwrap();
    }
    fs::write(dir.join("etc/os-release"), OS_RELEASE).unwrap();
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
}

/// `dir` packed into an uncompressed tar (via the system `tar`, as users would).
pub fn tar_dir(dir: &Path) -> Vec<u8> {
    let out = std::process::Command::new("tar")
        .args(["-C"])
        .arg(dir)
        .args(["--numeric-owner", "--owner=0", "--group=0", "-cf", "-", "."])
        .output()
        .expect("running tar");
    assert!(
        out.status.success(),
        "tar failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The root filesystem `src` exported into `dir` in every archive format the
/// store imports: a `docker save` archive in the old and the new (OCI)
/// layout, an OCI layout as a directory and as a tar, and a gzipped rootfs
/// tarball. Returns each as `(source, tag to import it under)`.
pub fn export_every_format(src: &Path, dir: &Path) -> Vec<(String, Option<&'static str>)> {
    let layer = tar_dir(src);
    let one = std::slice::from_ref(&layer);
    let docker_old = dir.join("docker-old.tar");
    fs::write(
        &docker_old,
        tar_of(&docker_save_old(one, &["rt/docker-old:1"])),
    )
    .unwrap();
    let docker_new = dir.join("docker-new.tar");
    let new_layout = oci_layout(one, "rt/docker-new:1", Some(&["rt/docker-new:1"]));
    fs::write(&docker_new, tar_of(&new_layout)).unwrap();
    let oci_dir = dir.join("oci-dir");
    write_tree(&oci_dir, &oci_layout(&[gzip(&layer)], "1", None));
    let oci_tar = dir.join("oci.tar");
    fs::write(
        &oci_tar,
        tar_of(&oci_layout(one, "docker.io/rt/oci-tar:1", None)),
    )
    .unwrap();
    let rootfs_tgz = dir.join("rootfs.tar.gz");
    fs::write(&rootfs_tgz, gzip(&layer)).unwrap();
    vec![
        (docker_old.display().to_string(), None),
        (format!("docker-archive:{}", docker_new.display()), None),
        (format!("oci:{}:1", oci_dir.display()), Some("rt/oci-dir:1")),
        (oci_tar.display().to_string(), None),
        (format!("tar://{}", rootfs_tgz.display()), Some("rt/tar:1")),
    ]
}
