//! Root filesystems other than the host's reach the guest read-only over
//! 9p: a directory (`file://`) and a tarball (`tar://`, unpacked inside).

mod vm_common;

use std::path::Path;

use cleanroom_core::{Backend, Cmd, RootFs, SandboxSpec};
use cleanroom_vm::VmBackend;

/// A busybox root: `/bin/busybox` with the applets the test uses, and
/// `/etc/marker`.
fn busybox_root(at: &Path) {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("busybox is needed for the rootfs tests (install busybox-static)");
    for d in ["bin", "etc", "proc", "dev", "tmp"] {
        std::fs::create_dir_all(at.join(d)).unwrap();
    }
    std::fs::copy(busybox, at.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", at.join("bin").join(applet)).unwrap();
    }
    std::fs::write(at.join("etc/marker"), "busybox-rootfs\n").unwrap();
}

fn marker(rootfs: RootFs) -> String {
    vm_common::setup();
    let spec = SandboxSpec::with_rootfs(rootfs);
    let r = vm_common::block_on(VmBackend::new().run(&spec, Cmd::new("cat").arg("/etc/marker")))
        .unwrap();
    assert!(r.success(), "{r:?}");
    r.stdout_lossy().into_owned()
}

#[test]
fn directory_and_tarball_roots() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    busybox_root(&root);
    assert_eq!(marker(RootFs::Dir(root.clone())), "busybox-rootfs\n");

    let tar = tmp.path().join("root.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tar).unwrap());
    b.follow_symlinks(false);
    b.append_dir_all(".", &root).unwrap();
    b.finish().unwrap();
    drop(b);
    assert_eq!(marker(RootFs::Tar(tar)), "busybox-rootfs\n");
}
