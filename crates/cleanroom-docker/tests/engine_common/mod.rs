//! Test images the conformance suite needs beyond the busybox one the
//! setup script imports: the config test image, imported from a rootfs
//! tarball with `docker import` changes (through Docker's API, and
//! Podman's own CLI).

use bollard::query_parameters::CreateImageOptionsBuilder;
use cleanroom_core::conformance::{config_image_changes, config_image_rootfs_tar, CONFIG_IMAGE};
use cleanroom_docker::{Endpoint, Engine};
use futures_util::StreamExt;

/// Imports [`CONFIG_IMAGE`] into `engine`, once per test process.
pub fn import_config_image(engine: Engine) {
    static DONE: std::sync::Mutex<Vec<Engine>> = std::sync::Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    if done.contains(&engine) {
        return;
    }
    let layer = config_image_rootfs_tar().expect("building the config image's rootfs");
    if engine == Engine::Podman {
        // Podman 4's compatible API takes one change only (Docker splits
        // them at newlines): its own CLI, on the storage its service uses.
        podman_import(&layer);
        done.push(engine);
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the image import");
    rt.block_on(async {
        let ep = Endpoint::discover(engine, None).expect("finding the engine");
        let docker = ep.connect().expect("connecting to the engine");
        // `repo` with the tag in it: Podman's compatible API ignores `tag`.
        let opts = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(CONFIG_IMAGE)
            .changes(config_image_changes())
            .build();
        let mut stream =
            docker.create_image(Some(opts), Some(bollard::body_full(layer.into())), None);
        while let Some(item) = stream.next().await {
            item.unwrap_or_else(|e| panic!("importing {CONFIG_IMAGE} into {engine:?}: {e}"));
        }
    });
    done.push(engine);
}

/// `podman import --change ... - CONFIG_IMAGE` with the rootfs on stdin.
fn podman_import(layer: &[u8]) {
    use std::io::Write;
    let mut cmd = std::process::Command::new("podman");
    cmd.arg("import");
    for c in config_image_changes() {
        cmd.arg("--change").arg(c);
    }
    cmd.args(["-", CONFIG_IMAGE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("running `podman import`");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(layer).expect("feeding `podman import`");
    }
    let out = child
        .wait_with_output()
        .expect("waiting for `podman import`");
    assert!(
        out.status.success(),
        "podman import of {CONFIG_IMAGE} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
