//! An image whose WorkingDir the image itself lacks (made by `docker import
//! --change WORKDIR`) still runs there, with a read-only root and from a
//! warm pool alike: the engine makes it, as `docker run` does.

mod engine_common;

use cleanroom_core::{Backend, Cmd, RootFs, SandboxSpec};
use cleanroom_docker::{Engine, EngineBackend, DEFAULT_IMAGE};

const IMAGE: &str = "cleanroom-test-missing-workdir:1";

fn check(engine: Engine) {
    engine_common::import_once(engine, IMAGE, &["WORKDIR /nowhere/deep".to_string()]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(runs_there(engine));
}

async fn runs_there(engine: Engine) {
    let spec = SandboxSpec::with_rootfs(RootFs::Image(IMAGE.into()));
    for backend in [
        EngineBackend::new(engine, DEFAULT_IMAGE),
        EngineBackend::new(engine, DEFAULT_IMAGE).with_warm_pool(1),
    ] {
        for _ in 0..2 {
            let r = backend
                .run(&spec, Cmd::new("pwd"))
                .await
                .unwrap_or_else(|e| panic!("{engine:?}: {e}"));
            assert_eq!(
                r.stdout_lossy(),
                "/nowhere/deep\n",
                "{engine:?}: {}",
                r.stderr_lossy()
            );
        }
        let sb = backend.create(&spec, None).await.unwrap();
        let r = sb.exec(Cmd::new("pwd")).await.unwrap();
        let _ = sb.remove().await;
        assert_eq!(r.stdout_lossy(), "/nowhere/deep\n", "{engine:?}");
    }
}

#[test]
fn docker_makes_a_missing_working_dir() {
    check(Engine::Docker);
}

#[test]
fn podman_makes_a_missing_working_dir() {
    check(Engine::Podman);
}
