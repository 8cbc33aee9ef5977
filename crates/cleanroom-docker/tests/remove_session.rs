//! What a caller's SIGINT/SIGTERM handler calls: `remove_session` removes
//! every container this process created, even one whose handle leaked and
//! was never dropped, and a pod's containers in any order. Its own test
//! binary, so no other test's containers share the session.

use cleanroom_core::{Backend, Network, RootFs, SandboxSpec};
use cleanroom_docker::{DockerBackend, EngineBackend, PodmanBackend, DEFAULT_IMAGE};

async fn exists(b: &EngineBackend, id: &str) -> bool {
    let docker = b.endpoint().unwrap().connect().unwrap();
    docker.inspect_container(id, None).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_session_removes_leaked_sandboxes_and_pods() {
    for b in [
        DockerBackend::new(DEFAULT_IMAGE),
        PodmanBackend::new(DEFAULT_IMAGE),
    ] {
        let engine = b.name().to_string();
        let spec = SandboxSpec::with_rootfs(RootFs::Image(DEFAULT_IMAGE.into()));
        let leader = b.create(&spec, None).await.expect("create");
        let member_spec = SandboxSpec {
            network: Network::Pod(leader.id().to_string()),
            ..spec.clone()
        };
        let member = b.create(&member_spec, None).await.expect("create member");
        let ids = [leader.id().to_string(), member.id().to_string()];
        std::mem::forget(leader);
        std::mem::forget(member);
        let removed = b.remove_session().await.expect("remove_session");
        for id in &ids {
            assert!(
                removed.iter().any(|l| l.contains(&id[..12])),
                "{engine}: {id} not in {removed:?}"
            );
            assert!(!exists(&b, id).await, "{engine}: {id} survived");
        }
    }
}
