//! Test images beyond the busybox one the setup script imports, made from
//! the conformance suite's rootfs with `docker import` changes (through
//! Docker's API, and Podman's own CLI): the config test image and others.

use bollard::query_parameters::CreateImageOptionsBuilder;
use cleanroom_core::conformance::{config_image_changes, config_image_rootfs_tar, CONFIG_IMAGE};
use cleanroom_docker::{Endpoint, Engine};
use futures_util::StreamExt;

/// Imports [`CONFIG_IMAGE`] into `engine`, once per test process.
#[allow(dead_code)] // used by some of the test binaries that include this module
pub fn import_config_image(engine: Engine) {
    import_once(engine, CONFIG_IMAGE, &config_image_changes());
}

/// Imports the conformance rootfs as `name` with `changes` into `engine`,
/// once per test process.
pub fn import_once(engine: Engine, name: &str, changes: &[String]) {
    static DONE: std::sync::Mutex<Vec<(Engine, String)>> = std::sync::Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    let key = (engine, name.to_string());
    if done.contains(&key) {
        return;
    }
    let layer = config_image_rootfs_tar().expect("building the test image's rootfs");
    if engine == Engine::Podman {
        // Podman 4's compatible API takes one change only (Docker splits
        // them at newlines): its own CLI, on the storage its service uses.
        podman_import(&layer, name, changes);
    } else {
        docker_import(layer, name, changes);
    }
    done.push(key);
}

fn docker_import(layer: Vec<u8>, name: &str, changes: &[String]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the image import");
    rt.block_on(async {
        let ep = Endpoint::discover(Engine::Docker, None).expect("finding the engine");
        let docker = ep.connect().expect("connecting to the engine");
        let opts = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(name)
            .changes(changes.to_vec())
            .build();
        let mut stream =
            docker.create_image(Some(opts), Some(bollard::body_full(layer.into())), None);
        while let Some(item) = stream.next().await {
            item.unwrap_or_else(|e| panic!("importing {name} into docker: {e}"));
        }
    });
}

/// `podman import --change ... - NAME` with the rootfs on stdin.
fn podman_import(layer: &[u8], name: &str, changes: &[String]) {
    use std::io::Write;
    let mut cmd = std::process::Command::new("podman");
    cmd.arg("import");
    for c in changes {
        cmd.arg("--change").arg(c);
    }
    cmd.args(["-", name])
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
        "podman import of {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
