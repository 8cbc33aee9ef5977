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
async fn probe_run_really_runs_a_container() {
    for b in both() {
        let a = b.probe_run().await;
        assert!(
            a.available && a.reason.contains("runs containers"),
            "{}: {a:?}",
            b.name()
        );
    }
    let missing = DockerBackend::new("localhost:1/cleanroom-no-such-image:latest");
    let a = missing.probe_run().await;
    assert!(
        !a.available && a.hint.clone().unwrap_or_default().contains("import"),
        "{a:?}"
    );
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

/// A tar of a root with busybox's `cat` (the keep-alive) but no `sh`.
fn rootfs_without_sh() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_path_with_name("/bin/busybox", "bin/busybox")
        .unwrap();
    for dir in ["tmp", "workdir"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o1777);
        h.set_size(0);
        b.append_data(&mut h, dir, std::io::empty()).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    b.append_link(&mut h, "bin/cat", "busybox").unwrap();
    b.into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_without_sh_says_what_it_needs() {
    use bollard::query_parameters::{CreateImageOptionsBuilder, RemoveImageOptionsBuilder};
    use futures_util::StreamExt;
    let image = format!("cleanroom-test-nosh-{}:latest", std::process::id());
    for b in both() {
        let docker = b.endpoint().unwrap().connect().unwrap();
        let (repo, tag) = image.split_once(':').unwrap();
        let opts = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .build();
        let mut import = docker.create_image(
            Some(opts),
            Some(bollard::body_full(rootfs_without_sh().into())),
            None,
        );
        while let Some(item) = import.next().await {
            item.unwrap_or_else(|e| panic!("{}: importing {image}: {e}", b.name()));
        }
        let spec = SandboxSpec::with_rootfs(RootFs::Image(image.clone()));
        let res = b.run(&spec, Cmd::new("true")).await;
        let _ = docker
            .remove_image(
                &image,
                Some(RemoveImageOptionsBuilder::new().force(true).build()),
                None,
            )
            .await;
        let err = res.expect_err("a run without sh in the image succeeded");
        assert!(err.to_string().contains("`sh`"), "{}: {err}", b.name());
    }
}
