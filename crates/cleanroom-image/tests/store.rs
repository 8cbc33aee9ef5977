//! The store itself: import, list, resolve, remove, gc, corruption
//! detection and repair, and concurrent imports.

mod common;

use std::fs;
use std::path::Path;

use cleanroom_image::Store;
use common::{layer, E};

fn sample_tar(dir: &Path, content: &[u8]) -> std::path::PathBuf {
    let t = layer(&[
        E::Dir("etc", 0o755),
        E::File("etc/os-release", content, 0o644),
        E::File("bin/tool", b"#!/bin/sh\necho hi\n", 0o755),
    ]);
    let p = dir.join("rootfs.tar");
    fs::write(&p, t).unwrap();
    p
}

#[test]
fn import_list_resolve_remove_gc() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let src = sample_tar(tmp.path(), b"ID=one\n");
    let info = store
        .import(
            &format!("tar://{}", src.display()),
            Some("docker.io/library/sample"),
        )
        .unwrap();
    assert_eq!(info.reference, "sample:latest");
    assert!(info.size > 1000, "{info:?}");
    let list = store.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0], info);

    // Every spelling of the name, the digest and an ID prefix resolve.
    for r in ["sample", "sample:latest", "docker.io/library/sample:latest"] {
        assert_eq!(store.resolve(r).unwrap().digest, info.digest, "{r}");
    }
    let pinned = format!("sample@{}", info.digest);
    assert_eq!(store.resolve(&pinned).unwrap().digest, info.digest);
    assert_eq!(
        store.resolve(&info.id.hex()[..12]).unwrap().digest,
        info.digest
    );
    let e = store.resolve("sample:other").unwrap_err().to_string();
    assert!(
        e.contains("sample:other") && e.contains("cleanroom images"),
        "{e}"
    );

    let img = store.resolve("sample").unwrap();
    let rootfs = store.rootfs_dir(&img).unwrap();
    assert_eq!(
        fs::read(rootfs.join("etc/os-release")).unwrap(),
        b"ID=one\n"
    );
    // The merged rootfs streams the layer blobs straight into one tree:
    // no layer directory is made on the way.
    assert_eq!(store.root().join("layers").read_dir().unwrap().count(), 0);
    store.unpack_layers(&img).unwrap();
    assert_eq!(store.root().join("layers").read_dir().unwrap().count(), 1);

    let removed = store.remove("sample").unwrap();
    assert_eq!(removed.untagged, ["sample:latest"]);
    assert_eq!(removed.gc.blobs_removed, 3, "{removed:?}");
    assert_eq!(removed.gc.layers_removed, 1);
    assert_eq!(removed.gc.rootfs_removed, 1);
    assert!(store.list().unwrap().is_empty());
    assert_eq!(
        store
            .root()
            .join("blobs/sha256")
            .read_dir()
            .unwrap()
            .count(),
        0
    );
    assert_eq!(store.root().join("layers").read_dir().unwrap().count(), 0);
    let e = store.remove("sample").unwrap_err().to_string();
    assert!(e.contains("no such image"), "{e}");
}

#[test]
fn shared_blobs_survive_removing_one_of_two_names() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let src = sample_tar(tmp.path(), b"ID=x\n");
    let a = store
        .import(&format!("tar://{}", src.display()), Some("a:1"))
        .unwrap();
    let b = store
        .import(&format!("tar://{}", src.display()), Some("b:1"))
        .unwrap();
    store.remove("a:1").unwrap();
    let img = store.resolve("b:1").unwrap();
    assert_eq!(img.digest, b.digest);
    assert!(store.verify(false).unwrap().is_ok());
    let _ = a;
}

#[test]
fn default_root_follows_the_environment_rule() {
    // Only reads the variables; the test process's own environment decides.
    let root = cleanroom_image::default_root().unwrap();
    if let Some(h) = std::env::var_os("CLEANROOM_HOME").filter(|v| !v.is_empty()) {
        assert_eq!(root, Path::new(&h));
    } else if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        assert_eq!(root, Path::new(&x).join("cleanroom"));
    } else {
        let home = std::env::var_os("HOME").unwrap();
        assert_eq!(root, Path::new(&home).join(".local/share/cleanroom"));
    }
}

fn layer_blob(store: &Store, reference: &str) -> std::path::PathBuf {
    let img = store.resolve(reference).unwrap();
    store.blob_path(&img.layers[0].digest)
}

#[test]
fn truncated_layer_is_caught_before_use_and_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let src = sample_tar(tmp.path(), b"ID=t\n");
    store
        .import(&format!("tar://{}", src.display()), Some("t"))
        .unwrap();
    let blob = layer_blob(&store, "t");
    let digest = format!("sha256:{}", blob.file_name().unwrap().to_str().unwrap());
    let len = fs::metadata(&blob).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&blob)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let e = store.resolve("t").unwrap_err().to_string();
    assert!(e.contains(&digest), "{e}");
    assert!(e.contains("cleanroom images verify --repair"), "{e}");

    let report = store.verify(false).unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.corrupt.len(), 1);
    assert_eq!(report.corrupt[0].to_string(), digest);
    assert!(blob.exists(), "verify without repair changes nothing");

    let report = store.verify(true).unwrap();
    assert_eq!(report.refs_removed, ["t:latest"]);
    assert_eq!(report.blobs_removed, 1);
    assert!(store.list().unwrap().is_empty());
    assert!(store.verify(false).unwrap().is_ok());
    // Re-importing brings it back.
    store
        .import(&format!("tar://{}", src.display()), Some("t"))
        .unwrap();
    let img = store.resolve("t").unwrap();
    store.rootfs_dir(&img).unwrap();
}

#[test]
fn flipped_byte_in_a_layer_is_caught_when_unpacking() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let src = sample_tar(tmp.path(), b"ID=flip\n");
    store
        .import(&format!("tar://{}", src.display()), Some("f"))
        .unwrap();
    let blob = layer_blob(&store, "f");
    let mut bytes = fs::read(&blob).unwrap();
    // Inside the content of etc/os-release (second 512-byte block of the tar).
    bytes[1024 + 3] ^= 0x20;
    fs::write(&blob, &bytes).unwrap();
    let digest = format!("sha256:{}", blob.file_name().unwrap().to_str().unwrap());

    let img = store.resolve("f").unwrap(); // same size: only hashing can tell
    let e = store.rootfs_dir(&img).unwrap_err().to_string();
    assert!(e.contains(&digest) && e.contains("corrupt"), "{e}");
    assert!(e.contains("cleanroom images verify --repair"), "{e}");
    // Nothing half-unpacked is left visible.
    assert_eq!(store.root().join("layers").read_dir().unwrap().count(), 0);
    assert_eq!(store.root().join("rootfs").read_dir().unwrap().count(), 0);
    assert_eq!(store.verify(false).unwrap().corrupt.len(), 1);
}

#[test]
fn flipped_byte_in_the_config_is_caught_on_resolve() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let src = sample_tar(tmp.path(), b"ID=c\n");
    let info = store
        .import(&format!("tar://{}", src.display()), Some("c"))
        .unwrap();
    let blob = store.blob_path(&info.id);
    let mut bytes = fs::read(&blob).unwrap();
    bytes[5] ^= 1;
    fs::write(&blob, &bytes).unwrap();
    let e = store.resolve("c").unwrap_err().to_string();
    assert!(
        e.contains(&info.id.to_string()) && e.contains("corrupt"),
        "{e}"
    );
}

#[test]
fn concurrent_imports_from_threads_are_safe() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let src = sample_tar(tmp.path(), b"ID=par\n");
    let source = format!("tar://{}", src.display());
    std::thread::scope(|s| {
        for i in 0..4 {
            let (root, source) = (&root, &source);
            s.spawn(move || {
                let store = Store::open(root).unwrap();
                store.import(source, Some(&format!("par:{i}"))).unwrap();
                store.import(source, Some("par:same")).unwrap();
                let img = store.resolve(&format!("par:{i}")).unwrap();
                store.layer_dirs(&img).unwrap();
                store.gc().unwrap();
            });
        }
    });
    let store = Store::open(&root).unwrap();
    assert_eq!(store.list().unwrap().len(), 5);
    let report = store.verify(false).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(store.root().join("tmp").read_dir().unwrap().count(), 0);
}

/// Run by `concurrent_imports_from_processes_are_safe` in child processes.
#[test]
fn child_process_import() {
    let (Some(root), Some(source), Some(tag)) = (
        std::env::var_os("CLEANROOM_TEST_CHILD_STORE"),
        std::env::var_os("CLEANROOM_TEST_CHILD_SOURCE"),
        std::env::var_os("CLEANROOM_TEST_CHILD_TAG"),
    ) else {
        return; // not a child: nothing to do
    };
    let store = Store::open(root).unwrap();
    for _ in 0..3 {
        store
            .import(source.to_str().unwrap(), Some(tag.to_str().unwrap()))
            .unwrap();
        store
            .import(source.to_str().unwrap(), Some("shared:tag"))
            .unwrap();
    }
}

#[test]
fn concurrent_imports_from_processes_are_safe() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let src = sample_tar(tmp.path(), b"ID=proc\n");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..3)
        .map(|i| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "child_process_import",
                    "--test-threads=1",
                    "--quiet",
                ])
                .env("CLEANROOM_TEST_CHILD_STORE", &root)
                .env(
                    "CLEANROOM_TEST_CHILD_SOURCE",
                    format!("tar://{}", src.display()),
                )
                .env("CLEANROOM_TEST_CHILD_TAG", format!("proc:{i}"))
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let store = Store::open(&root).unwrap();
    let names: Vec<String> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|i| i.reference)
        .collect();
    assert_eq!(names, ["proc:0", "proc:1", "proc:2", "shared:tag"]);
    assert!(store.verify(false).unwrap().is_ok());
}

#[test]
fn a_leased_image_survives_remove_and_gc_until_released() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let src = sample_tar(tmp.path(), b"ID=lease\n");
    store
        .import(&format!("tar://{}", src.display()), Some("l"))
        .unwrap();
    let img = store.resolve("l").unwrap();
    let dirs = store.layer_dirs(&img).unwrap();
    let rootfs = store.rootfs_dir(&img).unwrap();
    let lease = store.lease(&img).unwrap();
    let report = store.remove("l").unwrap();
    assert_eq!(report.gc.blobs_removed, 0, "{report:?}");
    assert!(dirs[0].join("etc/os-release").exists() && rootfs.join("etc/os-release").exists());
    // gc alone keeps it too (flock is per open file, so other processes see it as well).
    let gc = store.gc().unwrap();
    assert_eq!(gc.layers_removed, 0);
    drop(lease);
    let gc = store.gc().unwrap();
    assert_eq!(
        (gc.blobs_removed, gc.layers_removed, gc.rootfs_removed),
        (3, 1, 1),
        "{gc:?}"
    );
    assert!(!dirs[0].exists() && !rootfs.exists());
    assert_eq!(
        store.root().join("leases").read_dir().unwrap().count(),
        0,
        "stale lease files go too"
    );
}
