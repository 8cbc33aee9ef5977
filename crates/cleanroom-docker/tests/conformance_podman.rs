//! The conformance suite on the podman backend, with the busybox test image
//! that `scripts/setup.d/40-engines.sh` imports (and the config test image,
//! imported here).

mod engine_common;

cleanroom_core::conformance_tests!({
    engine_common::import_config_image(cleanroom_docker::Engine::Podman);
    cleanroom_core::conformance::Harness::new(
        cleanroom_docker::PodmanBackend::new(cleanroom_docker::DEFAULT_IMAGE),
        cleanroom_core::SandboxSpec::with_rootfs(cleanroom_core::RootFs::Image(
            cleanroom_docker::DEFAULT_IMAGE.into(),
        )),
    )
});
