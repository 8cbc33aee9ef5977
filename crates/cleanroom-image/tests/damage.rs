//! The store under damage: a deleted manifest, a corrupt config, a flipped
//! byte in an unpacked tree, and what killed imports and unpacks leave in
//! `tmp/`. Healthy images stay usable, repair leaves a consistent store,
//! and nothing changed on disk is run from.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use cleanroom_image::Store;
use common::{layer, E};

fn import(store: &Store, dir: &Path, tag: &str, content: &[u8]) {
    let t = layer(&[
        E::Dir("etc", 0o755),
        E::File("etc/os-release", content, 0o644),
        E::File("bin/tool", b"#!/bin/sh\necho hi\n", 0o755),
    ]);
    let p = dir.join(format!("{tag}.tar"));
    fs::write(&p, t).unwrap();
    store
        .import(&format!("tar://{}", p.display()), Some(tag))
        .unwrap();
}

fn manifest_blob(store: &Store, reference: &str) -> PathBuf {
    store.blob_path(&store.resolve(reference).unwrap().digest)
}

#[test]
fn a_deleted_manifest_does_not_hide_the_healthy_images() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    import(&store, tmp.path(), "good", b"ID=good\n");
    import(&store, tmp.path(), "bad", b"ID=bad\n");
    fs::remove_file(manifest_blob(&store, "bad")).unwrap();

    let list = store.list().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let bad = list.iter().find(|i| i.reference == "bad:latest").unwrap();
    let good = list.iter().find(|i| i.reference == "good:latest").unwrap();
    assert!(good.problem.is_none(), "{good:?}");
    let why = bad.problem.as_deref().unwrap();
    assert!(why.contains("missing"), "{why}");
    assert!(
        why.contains("images verify --repair") && why.contains("rmi bad:latest"),
        "{why}"
    );

    // rmi of the broken image works, the healthy one stays.
    store.remove("bad").unwrap();
    let list = store.list().unwrap();
    assert_eq!(list.len(), 1);
    assert!(store.verify(false).unwrap().is_ok());
}

#[test]
fn repairing_a_corrupt_config_drops_the_tag_instead_of_looping() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    import(&store, tmp.path(), "c", b"ID=c\n");
    import(&store, tmp.path(), "ok", b"ID=ok\n");
    let config = store.blob_path(&store.resolve("c").unwrap().config_digest);
    let mut bytes = fs::read(&config).unwrap();
    bytes[5] ^= 1;
    fs::write(&config, &bytes).unwrap();

    let report = store.verify(false).unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.broken_images.len(), 1, "{report:?}");
    assert_eq!(report.broken_images[0].0, "c:latest");

    let report = store.verify(true).unwrap();
    assert_eq!(report.refs_removed, ["c:latest"], "{report:?}");
    assert_eq!(report.blobs_removed, 1);
    // Consistent afterwards: nothing points at what is gone.
    assert!(store.verify(false).unwrap().is_ok());
    let refs: Vec<String> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|i| i.reference)
        .collect();
    assert_eq!(refs, ["ok:latest"]);
    let e = store.resolve("c").unwrap_err().to_string();
    assert!(e.contains("no such image"), "{e}");
    store.rootfs_dir(&store.resolve("ok").unwrap()).unwrap();
}

#[test]
fn a_flipped_byte_in_an_unpacked_tree_is_not_run_from() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    import(&store, tmp.path(), "f", b"ID=flip\n");
    let image = store.resolve("f").unwrap();
    let rootfs = store.rootfs_dir(&image).unwrap();
    assert_eq!(
        store.rootfs_dir(&image).unwrap(),
        rootfs,
        "intact: used again"
    );

    // Same size, one byte different, written in place.
    let tool = rootfs.join("bin/tool");
    let mut f = fs::OpenOptions::new().write(true).open(&tool).unwrap();
    f.write_all(b"#!/bin/sh\necho HI\n").unwrap();
    drop(f);
    let e = store.rootfs_dir(&image).unwrap_err().to_string();
    assert!(e.contains("changed after it was unpacked"), "{e}");
    assert!(e.contains("cleanroom images verify --repair"), "{e}");

    let report = store.verify(false).unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.trees_changed, std::slice::from_ref(&rootfs));
    let report = store.verify(true).unwrap();
    assert_eq!(report.trees_removed, std::slice::from_ref(&rootfs));
    assert!(report.refs_removed.is_empty(), "the image itself is fine");
    // Rebuilt from the verified blobs on the next use.
    let again = store.rootfs_dir(&image).unwrap();
    assert_eq!(
        fs::read(again.join("bin/tool")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert!(store.verify(false).unwrap().is_ok());
}

#[test]
fn a_flipped_byte_in_an_unpacked_layer_is_caught_too() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    import(&store, tmp.path(), "l", b"ID=layer\n");
    let image = store.resolve("l").unwrap();
    let dirs = store.unpack_layers(&image).unwrap();
    let file = dirs[0].dir.join("etc/os-release");
    fs::write(&file, b"ID=LAYER\n").unwrap();
    let e = store.unpack_layers(&image).unwrap_err().to_string();
    assert!(e.contains("changed after it was unpacked"), "{e}");
    let report = store.verify(true).unwrap();
    assert_eq!(report.trees_removed.len(), 1, "{report:?}");
    let dirs = store.unpack_layers(&image).unwrap();
    assert_eq!(
        fs::read(dirs[0].dir.join("etc/os-release")).unwrap(),
        b"ID=layer\n"
    );
}

/// The start time of `/proc/<pid>` (field 22 of its `stat`), as the
/// owner tags of temp names carry it.
fn start_time(pid: &str) -> String {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_string()
}

/// A child process that writes `names` into `tmp/` under its own owner
/// tag, then is killed: its leftovers carry a dead owner.
fn leftovers_of_a_killed_process(tmp_dir: &Path) -> Vec<PathBuf> {
    let mut child = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let pid = child.id();
    let start = start_time(&pid.to_string());
    let file = tmp_dir.join(format!("{pid}.{start}-blob-abc"));
    let dir = tmp_dir.join(format!("{pid}.{start}-layer-def"));
    fs::write(&file, vec![0u8; 4096]).unwrap();
    fs::create_dir_all(dir.join("root/usr/bin")).unwrap();
    fs::write(dir.join("root/usr/bin/x"), b"x").unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    vec![file, dir]
}

#[test]
fn opening_the_store_removes_what_dead_owners_left_and_gc_reports_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let store = Store::open(&root).unwrap();
    import(&store, tmp.path(), "keep", b"ID=keep\n");
    let tmp_dir = root.join("tmp");
    let dead = leftovers_of_a_killed_process(&tmp_dir);
    // A live owner's temp file (this process's) is never touched.
    let me = std::process::id();
    let start = start_time("self");
    let live = tmp_dir.join(format!("{me}.{start}-blob-live"));
    fs::write(&live, b"in progress").unwrap();

    let reopened = Store::open(&root).unwrap();
    for p in &dead {
        assert!(!p.exists(), "{} survived", p.display());
    }
    assert!(live.exists());
    assert!(reopened.verify(false).unwrap().is_ok());

    // gc reports what the open removed, and its own removals, by path.
    let report = reopened.gc().unwrap();
    let mut removed = report.temp_removed.clone();
    removed.sort();
    let mut expected = dead.clone();
    expected.push(live.clone());
    expected.sort();
    assert_eq!(removed, expected);
    assert_eq!(report.total(), 3);
    assert_eq!(reopened.list().unwrap().len(), 1);
}
