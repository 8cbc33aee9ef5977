//! What users see when something is off: availability with reasons and
//! hints, a missing image, a rootfs an engine cannot use, a stopped sandbox.

use std::os::unix::fs::PermissionsExt;

use cleanroom_core::{Backend, Cmd, Error, RootFs, SandboxSpec};
use cleanroom_docker::{DockerBackend, EngineBackend, PodmanBackend, DEFAULT_IMAGE};

fn both() -> [EngineBackend; 2] {
    [
        DockerBackend::new(DEFAULT_IMAGE),
        PodmanBackend::new(DEFAULT_IMAGE),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn availability_names_endpoint_and_default_image() {
    for b in both() {
        let a = b.availability().await;
        assert!(a.available, "{}: {a:?}", b.name());
        assert!(
            a.reason.contains("answers at unix://")
                && a.reason.contains(&format!("`{DEFAULT_IMAGE}` present")),
            "{}: {}",
            b.name(),
            a.reason
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_from_the_docker_cli_context_is_unavailable_with_a_hint() {
    let dir = std::env::temp_dir().join(format!("cleanroom-fake-docker-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = dir.join("docker");
    let sock = dir.join("nothing.sock");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho '[{{\"Endpoints\":{{\"docker\":{{\"Host\":\"unix://{}\"}}}}}}]'\n",
            sock.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let b = DockerBackend::new(DEFAULT_IMAGE).docker_bin(&fake);
    let a = b.availability().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!a.available, "{a:?}");
    assert!(a.reason.contains(&sock.display().to_string()), "{a:?}");
    assert!(a.hint.unwrap_or_default().contains("dockerd"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_says_how_to_import_it() {
    let image = "localhost:1/cleanroom-no-such-image:latest";
    for b in both() {
        let spec = SandboxSpec::with_rootfs(RootFs::Image(image.into()));
        match b.run(&spec, Cmd::new("true")).await {
            Err(Error::Image { reference, message }) => {
                assert_eq!(reference, image);
                assert!(message.contains("import"), "{}: {message}", b.name());
            }
            other => panic!("{}: want an image error, got {other:?}", b.name()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_rootfs_is_refused_with_what_to_do() {
    for b in both() {
        let spec = SandboxSpec::with_rootfs(RootFs::Dir("/srv/rootfs".into()));
        let err = b.run(&spec, Cmd::new("true")).await.unwrap_err();
        assert!(
            matches!(err, Error::Unsupported { .. }) && err.to_string().contains("import"),
            "{}: {err}",
            b.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_in_a_stopped_sandbox_says_it_is_gone() {
    for b in both() {
        let spec = SandboxSpec::with_rootfs(RootFs::Host);
        let sb = b.create(&spec, None).await.expect("create");
        sb.stop().await.expect("stop");
        let err = sb.exec(Cmd::new("true")).await.unwrap_err();
        sb.remove().await.unwrap();
        assert!(
            matches!(err, Error::SandboxGone { .. }),
            "{}: {err}",
            b.name()
        );
    }
}
