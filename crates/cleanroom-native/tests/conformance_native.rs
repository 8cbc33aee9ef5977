//! The conformance suite on the native backend, host rootfs. Run as root by
//! `cargo test` and as an unprivileged user by scripts/check.d/20-native-rootless.sh.

mod native_common;

cleanroom_core::conformance_tests!({
    native_common::import_config_image();
    cleanroom_core::conformance::Harness::new(
        cleanroom_native::NativeBackend::new(),
        cleanroom_core::SandboxSpec::default(),
    )
});
