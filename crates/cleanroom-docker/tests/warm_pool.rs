//! The warm pool: runs take containers that were started before they were
//! asked for, no container serves two runs, and dropping the backend
//! removes what is still waiting — on both engines.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use cleanroom_core::{Backend, Cmd, RootFs, SandboxSpec};
use cleanroom_docker::{DockerBackend, EngineBackend, PodmanBackend, DEFAULT_IMAGE, LABEL_SESSION};

/// Ids of this process's containers on the engine.
async fn ours(b: &EngineBackend) -> HashSet<String> {
    let docker = b.endpoint().unwrap().connect().unwrap();
    let filters: HashMap<&str, Vec<String>> = HashMap::from([(
        "label",
        vec![format!("{LABEL_SESSION}={}", cleanroom_docker::session())],
    )]);
    cleanroom_docker::list_labelled(&docker, &filters)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

async fn wait_warm(b: &EngineBackend, n: usize) {
    let started = Instant::now();
    while b.warm_containers() < n {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}: the pool did not fill to {n} within 30 s",
            b.name()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn pool_serves_each_container_once(b: EngineBackend) {
    let name = b.name().to_string();
    let spec = SandboxSpec::with_rootfs(RootFs::Image(DEFAULT_IMAGE.into()));
    // The first run of a spec starts a container itself and fills the pool.
    let r = b.run(&spec, Cmd::shell("echo first")).await.unwrap();
    assert_eq!(r.stdout, b"first\n");
    let mut seen = HashSet::new();
    for i in 0..4 {
        wait_warm(&b, 2).await;
        let warm = ours(&b).await;
        let r = b
            .run(
                &spec,
                Cmd::shell(
                    "test -e /tmp/used && echo reused; touch /tmp/used; \
                     grep -o '[0-9a-f]\\{64\\}' /proc/self/cgroup | head -n 1",
                ),
            )
            .await
            .unwrap();
        let out = r.stdout_lossy();
        assert!(
            !out.contains("reused"),
            "{name}: run {i} got a used container: {out}"
        );
        let id = out.trim().to_string();
        assert!(
            warm.contains(&id),
            "{name}: run {i} ran in {id:?}, not one of the warm containers {warm:?}"
        );
        assert!(
            seen.insert(id.clone()),
            "{name}: container {id} served two runs"
        );
    }
    wait_warm(&b, 2).await;
    drop(b);
    // The last run's container was released: the engine removes it in
    // its own time, the spare ones went with the backend.
    let other = DockerOrPodman::backend(&name);
    let started = Instant::now();
    let mut left = ours(&other).await;
    while !left.is_empty() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = ours(&other).await;
    }
    assert!(
        left.is_empty(),
        "{name}: dropping the backend left {left:?}"
    );
}

struct DockerOrPodman;

impl DockerOrPodman {
    fn backend(name: &str) -> EngineBackend {
        match name {
            "docker" => DockerBackend::new(DEFAULT_IMAGE),
            _ => PodmanBackend::new(DEFAULT_IMAGE),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_warm_pool_serves_each_container_once() {
    pool_serves_each_container_once(DockerBackend::new(DEFAULT_IMAGE).with_warm_pool(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_warm_pool_serves_each_container_once() {
    pool_serves_each_container_once(PodmanBackend::new(DEFAULT_IMAGE).with_warm_pool(2)).await;
}
