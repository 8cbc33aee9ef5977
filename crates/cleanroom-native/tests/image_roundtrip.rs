//! The image issue's acceptance round trip on the native backend: one
//! busybox root filesystem exported as a `docker save` archive (both
//! layouts), an OCI layout (directory and tar) and a rootfs tarball, each
//! imported into the store and run: `cat /etc/os-release` prints the same.
//!
//! The archive builders are the image crate's own test fixtures, shared by path.

#[path = "../../cleanroom-image/tests/common/mod.rs"]
mod common;

use cleanroom_core::{Backend, Cmd, RootFs, SandboxSpec};
use cleanroom_image::Store;
use cleanroom_native::NativeBackend;
use common::{busybox_rootfs, export_every_format, OS_RELEASE};

#[test]
fn every_import_format_runs_the_same_on_native() {
    let tmp = tempfile::tempdir().unwrap();
    // The native backend opens the default store: point it at ours. This
    // binary holds only this test, so no other thread reads the variable.
    std::env::set_var("CLEANROOM_HOME", tmp.path().join("home"));

    let src = tmp.path().join("rootfs");
    busybox_rootfs(&src);
    let sources = export_every_format(&src, tmp.path());
    let store = Store::open_default().unwrap();
    let native = NativeBackend::new();
    for (source, tag) in &sources {
        let info = store
            .import(source, *tag)
            .unwrap_or_else(|e| panic!("importing {source}: {e}"));
        let spec = SandboxSpec::with_rootfs(RootFs::Image(info.reference.clone()));
        let r =
            cleanroom_core::bridge::wait(native.run(&spec, Cmd::from(["cat", "/etc/os-release"])))
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
