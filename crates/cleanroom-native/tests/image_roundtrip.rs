//! The image issue's acceptance round trip on the native backend: one
//! busybox root filesystem exported as a `docker save` archive (both
//! layouts), an OCI layout (directory and tar) and a rootfs tarball, each
//! imported into the store and run: `cat /etc/os-release` prints the same.
//!
//! The archive builders are the image crate's own test fixtures, shared by path.

#[path = "../../cleanroom-image/tests/common/mod.rs"]
mod common;

use std::fs;

use cleanroom_core::{Backend, Cmd, RootFs, SandboxSpec};
use cleanroom_image::Store;
use cleanroom_native::NativeBackend;
use common::{
    busybox_rootfs, docker_save_old, gzip, oci_layout, tar_dir, tar_of, write_tree, OS_RELEASE,
};

#[test]
fn every_import_format_runs_the_same_on_native() {
    let tmp = tempfile::tempdir().unwrap();
    // The native backend opens the default store: point it at ours. This
    // binary holds only this test, so no other thread reads the variable.
    std::env::set_var("CLEANROOM_HOME", tmp.path().join("home"));

    let src = tmp.path().join("rootfs");
    busybox_rootfs(&src);
    let layer = tar_dir(&src);
    let one = std::slice::from_ref(&layer);

    let docker_old = tmp.path().join("docker-old.tar");
    fs::write(
        &docker_old,
        tar_of(&docker_save_old(one, &["rt/docker-old:1"])),
    )
    .unwrap();
    let docker_new = tmp.path().join("docker-new.tar");
    let new_layout = oci_layout(one, "rt/docker-new:1", Some(&["rt/docker-new:1"]));
    fs::write(&docker_new, tar_of(&new_layout)).unwrap();
    let oci_dir = tmp.path().join("oci-dir");
    write_tree(&oci_dir, &oci_layout(&[gzip(&layer)], "1", None));
    let oci_tar = tmp.path().join("oci.tar");
    fs::write(
        &oci_tar,
        tar_of(&oci_layout(one, "docker.io/rt/oci-tar:1", None)),
    )
    .unwrap();
    let rootfs_tgz = tmp.path().join("rootfs.tar.gz");
    fs::write(&rootfs_tgz, gzip(&layer)).unwrap();

    let store = Store::open_default().unwrap();
    let sources = [
        (docker_old.display().to_string(), None),
        (format!("docker-archive:{}", docker_new.display()), None),
        (format!("oci:{}:1", oci_dir.display()), Some("rt/oci-dir:1")),
        (oci_tar.display().to_string(), None),
        (format!("tar://{}", rootfs_tgz.display()), Some("rt/tar:1")),
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    let native = NativeBackend::new();
    for (source, tag) in &sources {
        let info = store
            .import(source, *tag)
            .unwrap_or_else(|e| panic!("importing {source}: {e}"));
        let spec = SandboxSpec::with_rootfs(RootFs::Image(info.reference.clone()));
        let r = rt
            .block_on(native.run(&spec, Cmd::from(["cat", "/etc/os-release"])))
            .unwrap_or_else(|e| panic!("running in {}: {e}", info.reference));
        assert!(
            r.success(),
            "{}: {} {}",
            info.reference,
            r.status_line(),
            r.stderr_lossy()
        );
        assert_eq!(r.stdout_lossy(), OS_RELEASE, "{}", info.reference);
    }
}
