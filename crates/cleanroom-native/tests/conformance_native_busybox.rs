//! The conformance suite on the native backend with a busybox root
//! filesystem directory (`file://`), which exercises the overlay root
//! instead of the host rootfs's tmpfs-and-binds one.

mod native_common;

cleanroom_core::conformance_tests!({
    native_common::import_config_image();
    cleanroom_core::conformance::Harness::new(
        cleanroom_native::NativeBackend::new(),
        cleanroom_core::SandboxSpec::with_rootfs(cleanroom_core::RootFs::Dir(
            native_common::busybox_rootfs().to_path_buf(),
        )),
    )
});
