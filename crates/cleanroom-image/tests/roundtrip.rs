//! Acceptance round trip: one busybox root filesystem, exported as a
//! `docker save` archive (both layouts), an OCI layout (directory and tar),
//! a rootfs tarball and a directory; each imported and unpacked holds the
//! same /etc/os-release and the same busybox, merged or as overlay layers.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use cleanroom_image::Store;
use common::{busybox_rootfs, export_every_format, OS_RELEASE};

fn run_cat(root: &Path) -> String {
    // The static busybox of the image runs on the host too.
    let out = Command::new(root.join("bin/busybox"))
        .arg("cat")
        .arg(root.join("etc/os-release"))
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_format_round_trips_to_the_same_rootfs() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("rootfs");
    busybox_rootfs(&src);
    let busybox = fs::read(src.join("bin/busybox")).unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let mut sources = export_every_format(&src, tmp.path());
    sources.push((format!("file://{}", src.display()), Some("rt/dir:1")));
    let mut seen = Vec::new();
    for (source, tag) in &sources {
        let info = store
            .import(source, *tag)
            .unwrap_or_else(|e| panic!("{source}: {e}"));
        let img = store.resolve(&info.reference).unwrap();
        let root = store.rootfs_dir(&img).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("etc/os-release")).unwrap(),
            OS_RELEASE,
            "{source}"
        );
        assert_eq!(
            fs::read(root.join("bin/busybox")).unwrap(),
            busybox,
            "{source}"
        );
        assert_eq!(
            fs::read_link(root.join("bin/cat")).unwrap(),
            Path::new("busybox"),
            "{source}"
        );
        assert_eq!(run_cat(&root), OS_RELEASE, "{source}");
        let dirs = store.layer_dirs(&img).unwrap();
        let top = dirs.last().unwrap();
        assert_eq!(
            fs::read_to_string(top.join("etc/os-release")).unwrap(),
            OS_RELEASE,
            "{source}"
        );
        seen.push(info.reference);
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "rt/dir:1",
            "rt/docker-new:1",
            "rt/docker-old:1",
            "rt/oci-dir:1",
            "rt/oci-tar:1",
            "rt/tar:1"
        ]
    );
    assert!(store.verify(false).unwrap().is_ok());
    // Same uncompressed layer, one unpacked directory for the four formats that share it.
    let layer_dirs = store.root().join("layers").read_dir().unwrap().count();
    assert!(layer_dirs <= 4, "{layer_dirs} layer dirs");
}
