//! Every import source, and the errors for sources that are not there,
//! not a format we know, or do not hold the tag asked for.

mod common;

use std::fs;
use std::path::Path;

use cleanroom_image::{Source, Store};
use common::{docker_save_old, gzip, layer, oci_layout, tar_of, write_tree, zstd, E};

fn layers() -> Vec<Vec<u8>> {
    vec![
        layer(&[
            E::Dir("etc", 0o755),
            E::File("etc/os-release", b"ID=base\n", 0o644),
            E::File("etc/gone", b"x", 0o644),
        ]),
        gzip(&layer(&[
            E::File("etc/.wh.gone", b"", 0o644),
            E::File("etc/motd", b"hi\n", 0o644),
        ])),
    ]
}

fn check(store: &Store, reference: &str) {
    let img = store.resolve(reference).unwrap();
    assert_eq!(img.layers.len(), 2);
    let rc = img.runtime_config();
    assert_eq!(rc.working_dir.as_deref(), Some("/srv"));
    assert_eq!(rc.user.as_deref(), Some("1000:1000"));
    assert_eq!(rc.env_map()["GREETING"], "hello");
    assert_eq!(rc.argv(&[]), ["/bin/sh"]);
    let root = store.rootfs_dir(&img).unwrap();
    assert_eq!(fs::read(root.join("etc/os-release")).unwrap(), b"ID=base\n");
    assert_eq!(fs::read(root.join("etc/motd")).unwrap(), b"hi\n");
    assert!(!root.join("etc/gone").exists(), "whiteout applied");
}

fn store(dir: &Path) -> Store {
    Store::open(dir.join("store")).unwrap()
}

#[test]
fn docker_save_old_layout_tar_and_gzipped_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let files = docker_save_old(&layers(), &["example.com/app:1.0"]);
    let p = tmp.path().join("app.tar");
    fs::write(&p, tar_of(&files)).unwrap();
    let info = s.import(p.to_str().unwrap(), None).unwrap();
    assert_eq!(info.reference, "example.com/app:1.0");
    assert_eq!(info.created, "2024-05-01T12:00:00Z");
    check(&s, "example.com/app:1.0");

    let pz = tmp.path().join("app.tar.gz");
    fs::write(&pz, gzip(&tar_of(&files))).unwrap();
    let again = s
        .import(&format!("docker-archive:{}", pz.display()), Some("again"))
        .unwrap();
    assert_eq!(
        again.digest, info.digest,
        "same content, same manifest digest"
    );
}

#[test]
fn docker_save_new_layout_and_unpacked_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let files = oci_layout(&layers(), "busybox:latest", Some(&["busybox:latest"]));
    let p = tmp.path().join("new.tar");
    fs::write(&p, tar_of(&files)).unwrap();
    let info = s.import(p.to_str().unwrap(), None).unwrap();
    assert_eq!(info.reference, "busybox:latest");
    check(&s, "busybox");

    let d = tmp.path().join("new-dir");
    write_tree(&d, &files);
    s.import(d.to_str().unwrap(), Some("dir:1")).unwrap();
    check(&s, "dir:1");
}

#[test]
fn oci_layout_directory_and_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let files = oci_layout(&layers(), "v2", None);
    let d = tmp.path().join("layout");
    write_tree(&d, &files);
    // The layout only names a tag, so a name must be given.
    let e = s.import(d.to_str().unwrap(), None).unwrap_err().to_string();
    assert!(e.contains("--tag"), "{e}");
    s.import(&format!("oci:{}:v2", d.display()), Some("app:v2"))
        .unwrap();
    check(&s, "app:v2");
    let e = s
        .import(&format!("oci:{}:v3", d.display()), Some("app:v3"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no image tagged `v3`") && e.contains("v2"),
        "{e}"
    );

    let t = tmp.path().join("layout.tar");
    fs::write(&t, tar_of(&files)).unwrap();
    s.import(t.to_str().unwrap(), Some("app:tar")).unwrap();
    check(&s, "app:tar");
}

#[test]
fn oci_layout_with_a_corrupt_blob_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let mut files = oci_layout(&layers(), "x:1", None);
    // Corrupt the second layer blob (keeping its name).
    let idx = files
        .iter()
        .position(|(n, d)| n.starts_with("blobs/") && d.starts_with(&[0x1f, 0x8b]))
        .unwrap();
    let last = files[idx].1.len() - 10;
    files[idx].1[last] ^= 0xff;
    let d = tmp.path().join("bad");
    write_tree(&d, &files);
    let e = s
        .import(d.to_str().unwrap(), Some("x:1"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not match its digest"), "{e}");
    assert!(s.list().unwrap().is_empty());
    assert_eq!(
        s.root().join("blobs/sha256").read_dir().unwrap().count(),
        0,
        "nothing stored"
    );
}

#[test]
fn rootfs_tarballs_plain_gzip_zstd_and_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let plain = layer(&[
        E::File("hello.txt", b"hello\n", 0o644),
        E::Symlink("link", "hello.txt"),
    ]);
    for (name, bytes) in [
        ("plain.tar", plain.clone()),
        ("gz.tgz", gzip(&plain)),
        ("z.tar.zst", zstd(&plain)),
    ] {
        let p = tmp.path().join(name);
        fs::write(&p, bytes).unwrap();
        let tag = format!("rootfs:{}", name.replace('.', "-"));
        s.import(&format!("tar://{}", p.display()), Some(&tag))
            .unwrap();
        let img = s.resolve(&tag).unwrap();
        let root = s.rootfs_dir(&img).unwrap();
        assert_eq!(
            fs::read(root.join("hello.txt")).unwrap(),
            b"hello\n",
            "{name}"
        );
        assert_eq!(
            fs::read_link(root.join("link")).unwrap(),
            Path::new("hello.txt")
        );
        assert_eq!(
            img.config.rootfs().diff_ids()[0],
            cleanroom_image::Digest::of(&plain).to_string()
        );
    }

    let dir = tmp.path().join("tree");
    fs::create_dir_all(dir.join("a/b")).unwrap();
    fs::write(dir.join("a/b/f"), "data").unwrap();
    fs::hard_link(dir.join("a/b/f"), dir.join("a/hl")).unwrap();
    std::os::unix::fs::symlink("b/f", dir.join("a/sl")).unwrap();
    let one = s
        .import(&format!("file://{}", dir.display()), Some("tree:1"))
        .unwrap();
    let two = s
        .import(&format!("file://{}", dir.display()), Some("tree:2"))
        .unwrap();
    assert_eq!(
        s.resolve("tree:1").unwrap().layers,
        s.resolve("tree:2").unwrap().layers,
        "packing a directory is reproducible"
    );
    let _ = (one, two);
    let root = s.rootfs_dir(&s.resolve("tree:1").unwrap()).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(root.join("a/b/f")).unwrap().ino(),
        fs::metadata(root.join("a/hl")).unwrap().ino()
    );
    assert_eq!(fs::read_link(root.join("a/sl")).unwrap(), Path::new("b/f"));
}

#[test]
fn clear_errors_for_missing_unknown_and_untagged_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let missing = tmp.path().join("nope.tar");
    for src in [
        missing.display().to_string(),
        format!("tar://{}", missing.display()),
    ] {
        let e = s.import(&src, Some("x")).unwrap_err().to_string();
        assert!(e.contains("nope.tar") && e.contains("no such file"), "{e}");
    }
    let junk = tmp.path().join("junk.bin");
    fs::write(&junk, vec![7u8; 4096]).unwrap();
    for src in [
        junk.display().to_string(),
        format!("tar://{}", junk.display()),
    ] {
        let e = s.import(&src, Some("x")).unwrap_err().to_string();
        assert!(
            e.contains("junk.bin") && e.contains("unknown image format"),
            "{e}"
        );
        assert!(
            e.contains("docker save") && e.contains("OCI") && e.contains("tar://"),
            "{e}"
        );
    }
    // A tar that is a plain rootfs, given without tar://.
    let rootfs = tmp.path().join("rootfs.tar");
    fs::write(&rootfs, layer(&[E::File("x", b"x", 0o644)])).unwrap();
    let e = s
        .import(rootfs.to_str().unwrap(), Some("x"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("tar://PATH"), "{e}");
    // No name anywhere.
    let e = s
        .import(&format!("tar://{}", rootfs.display()), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--tag"), "{e}");
    // A docker archive without the asked-for tag.
    let files = docker_save_old(&layers(), &["a:1", "a:2"]);
    let mut two = files.clone();
    let mut m: serde_json::Value = serde_json::from_slice(&files.last().unwrap().1).unwrap();
    let first = m[0].clone();
    m.as_array_mut().unwrap().push(serde_json::json!({"Config": first["Config"], "RepoTags": ["b:1"], "Layers": first["Layers"]}));
    two.last_mut().unwrap().1 = m.to_string().into_bytes();
    let p = tmp.path().join("two.tar");
    fs::write(&p, tar_of(&two)).unwrap();
    let e = s
        .import(&format!("docker-archive:{}:c:1", p.display()), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no image tagged `c:1`") && e.contains("a:1, a:2") && e.contains("b:1"),
        "{e}"
    );
    let e = s.import(p.to_str().unwrap(), None).unwrap_err().to_string();
    assert!(e.contains("holds 2 images"), "{e}");
    let info = s
        .import(&format!("docker-archive:{}:b:1", p.display()), None)
        .unwrap();
    assert_eq!(info.reference, "b:1");
    assert!(
        s.import(p.to_str().unwrap(), Some("a:2")).is_ok(),
        "--tag selects when it matches"
    );
    assert!(s.list().unwrap().iter().any(|i| i.reference == "a:2"));
}

#[test]
fn source_strings_parse() {
    assert_eq!(
        Source::parse("docker-archive:/x/y.tar:busybox:1").unwrap(),
        Source::DockerArchive {
            path: "/x/y.tar:busybox".into(),
            select: Some("1".into())
        }
    );
    assert_eq!(
        Source::parse("tar:///x.tar").unwrap(),
        Source::RootfsTar("/x.tar".into())
    );
    assert_eq!(
        Source::parse("file:///r").unwrap(),
        Source::RootfsDir("/r".into())
    );
    assert!(matches!(
        Source::parse("docker://localhost:5000/b:1").unwrap(),
        Source::Registry(_)
    ));
    assert_eq!(
        Source::parse("/a.tar").unwrap(),
        Source::Detect("/a.tar".into())
    );
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

/// Wraps the single manifest of a layout in a nested multi-arch index
/// whose other entries point at blobs that are not there.
fn multi_arch(files: &mut Vec<(String, Vec<u8>)>, arches: &[&str]) {
    let pos = files.iter().position(|(n, _)| n == "index.json").unwrap();
    let index: serde_json::Value = serde_json::from_slice(&files[pos].1).unwrap();
    let real = index["manifests"][0].clone();
    let entries: Vec<serde_json::Value> = arches
        .iter()
        .map(|a| {
            let mut d = if *a == "HOST" {
                real.clone()
            } else {
                let fake = cleanroom_image::Digest::of(a.as_bytes()).to_string();
                serde_json::json!({"mediaType": real["mediaType"], "digest": fake, "size": 10})
            };
            let arch = if *a == "HOST" { host_arch() } else { a };
            d.as_object_mut().unwrap().remove("annotations");
            d["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
            d
        })
        .collect();
    let nested = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries})
        .to_string()
        .into_bytes();
    let nd = cleanroom_image::Digest::of(&nested);
    files.push((format!("blobs/sha256/{}", nd.hex()), nested.clone()));
    files[pos].1 = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": nd.to_string(), "size": nested.len(),
        "annotations": {"org.opencontainers.image.ref.name": "multi:1"}}]})
    .to_string()
    .into_bytes();
}

#[test]
fn multi_arch_index_picks_the_host_platform() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let mut files = oci_layout(&layers(), "x", None);
    multi_arch(&mut files, &["s390x", "HOST", "riscv64"]);
    let d = tmp.path().join("multi");
    write_tree(&d, &files);
    let info = s.import(d.to_str().unwrap(), None).unwrap();
    assert_eq!(info.reference, "multi:1");
    check(&s, "multi:1");

    let mut files = oci_layout(&layers(), "x", None);
    multi_arch(&mut files, &["s390x", "riscv64"]);
    let d = tmp.path().join("foreign");
    write_tree(&d, &files);
    let e = s.import(d.to_str().unwrap(), None).unwrap_err().to_string();
    assert!(
        e.contains(&format!("linux/{}", host_arch())) && e.contains("linux/s390x, linux/riscv64"),
        "{e}"
    );
}

/// Importing a `docker save` archive builds the merged rootfs on the way
/// (each layer read once): it is there, sealed, right after the import, and
/// holds what building it from the stored blobs holds.
#[test]
fn docker_save_import_builds_the_merged_rootfs_on_the_way() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let p = tmp.path().join("app.tar");
    fs::write(&p, tar_of(&docker_save_old(&layers(), &["app:1"]))).unwrap();
    let info = s.import(p.to_str().unwrap(), None).unwrap();
    let ready = s.root().join("rootfs").join(info.digest.hex());
    assert!(ready.is_dir(), "the import left no merged rootfs");
    let listing = |root: &Path| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("find . -printf '%p %y %m %s\\n' | sort")
            .current_dir(root)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let prebuilt = listing(&ready);
    check(&s, "app:1");
    assert!(
        s.verify(false).unwrap().is_ok(),
        "the seal matches the tree"
    );

    // The same tree when built from the blobs on first use.
    fs::remove_dir_all(&ready).unwrap();
    let img = s.resolve("app:1").unwrap();
    assert_eq!(listing(&s.rootfs_dir(&img).unwrap()), prebuilt);
}

/// A layer the extractor refuses does not fail the import (its blobs are
/// verified): no tree is kept, and the first use says what is wrong.
#[test]
fn a_refused_layer_in_a_docker_save_archive_fails_at_first_use() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let evil = vec![layer(&[
        E::Symlink("link", "/tmp"),
        E::File("link/evil", b"pwned", 0o644),
    ])];
    let p = tmp.path().join("evil.tar");
    fs::write(&p, tar_of(&docker_save_old(&evil, &["evil:1"]))).unwrap();
    s.import(p.to_str().unwrap(), None).unwrap();
    assert_eq!(s.root().join("rootfs").read_dir().unwrap().count(), 0);
    let img = s.resolve("evil:1").unwrap();
    let e = s.rootfs_dir(&img).unwrap_err().to_string();
    assert!(e.contains("refusing to unpack"), "{e}");
    assert!(!Path::new("/tmp/evil").exists());
}

/// A compressed layer whose tar stream does not match the config's diff ID
/// fails the import (hashed by the unpacking thread), storing nothing.
#[test]
fn a_compressed_layer_with_the_wrong_diff_id_fails_the_import() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let mut files = docker_save_old(&layers(), &["bad:1"]);
    // Swap the gzip layer for another one; the config still names the old one.
    let other = gzip(&layer(&[E::File("etc/motd", b"changed\n", 0o644)]));
    for (name, data) in files.iter_mut() {
        if name.ends_with("layer.tar") && data.starts_with(&[0x1f, 0x8b]) {
            *data = other.clone();
        }
    }
    let p = tmp.path().join("bad.tar");
    fs::write(&p, tar_of(&files)).unwrap();
    let e = s.import(p.to_str().unwrap(), None).unwrap_err().to_string();
    assert!(e.contains("but the config expects"), "{e}");
    assert!(s.list().unwrap().is_empty());
    assert_eq!(s.root().join("rootfs").read_dir().unwrap().count(), 0);
}
