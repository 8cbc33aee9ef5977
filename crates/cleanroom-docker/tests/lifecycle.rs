//! What the conformance suite cannot see from inside: dropping a sandbox
//! removes its container, `gc` removes the container of a caller killed
//! with SIGKILL, and pod members talk over 127.0.0.1 — on both engines.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cleanroom_core::{Backend, Cmd, Network, RootFs, SandboxSpec};
use cleanroom_docker::{DockerBackend, EngineBackend, PodmanBackend, DEFAULT_IMAGE};

/// Set in the child process of the gc test: the engine to create a sandbox on.
const CHILD_ENV: &str = "CLEANROOM_DOCKER_TEST_GC_CHILD";

fn spec() -> SandboxSpec {
    SandboxSpec::with_rootfs(RootFs::Image(DEFAULT_IMAGE.into()))
}

fn backend(engine: &str) -> EngineBackend {
    match engine {
        "docker" => DockerBackend::new(DEFAULT_IMAGE),
        "podman" => PodmanBackend::new(DEFAULT_IMAGE),
        other => panic!("unknown engine {other}"),
    }
}

async fn exists(b: &EngineBackend, id: &str) -> bool {
    let docker = b.endpoint().unwrap().connect().unwrap();
    docker.inspect_container(id, None).await.is_ok()
}

async fn drop_removes(engine: &str) {
    let b = backend(engine);
    let sb = b.create(&spec(), None).await.expect("create");
    let id = sb.id().to_string();
    assert!(exists(&b, &id).await, "{engine}: {id} not created");
    drop(sb);
    assert!(
        !exists(&b, &id).await,
        "{engine}: container {id} still exists after its sandbox was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_drop_removes_the_container() {
    drop_removes("docker").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_drop_removes_the_container() {
    drop_removes("podman").await;
}

/// The child half of the gc test. Inert unless the parent test started
/// this binary with CHILD_ENV set: then it creates a sandbox, prints its
/// id and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_child_helper() {
    let Ok(engine) = std::env::var(CHILD_ENV) else {
        return;
    };
    let sb = backend(&engine)
        .create(&spec(), None)
        .await
        .expect("create");
    println!("SANDBOX {}", sb.id());
    tokio::time::sleep(Duration::from_secs(600)).await;
    drop(sb);
}

async fn gc_after_sigkill(engine: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "gc_child_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, engine)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning the child test process");
    let stdout = child.stdout.take().unwrap();
    let id = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| {
                l.split_once("SANDBOX ")
                    .map(|(_, id)| id.trim().to_string())
            })
    })
    .await
    .unwrap();
    child.kill().expect("SIGKILL the child");
    let _ = child.wait();
    let id = id.expect("the child printed no sandbox id");

    let b = backend(engine);
    assert!(
        exists(&b, &id).await,
        "{engine}: the killed child's container {id} is already gone, so this test proves nothing"
    );
    let removed = b.gc().await.expect("gc");
    assert!(
        removed.iter().any(|l| l.contains(&id[..12])),
        "{engine}: gc did not report {id}: {removed:?}"
    );
    assert!(!exists(&b, &id).await, "{engine}: {id} survived gc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_gc_removes_what_a_killed_caller_left() {
    gc_after_sigkill("docker").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_gc_removes_what_a_killed_caller_left() {
    gc_after_sigkill("podman").await;
}

async fn pod_members_talk(engine: &str) {
    let b = backend(engine);
    let server = b
        .create(
            &spec(),
            Some(Cmd::shell(
                "while :; do echo pong-from-server | nc -l -p 8080; done",
            )),
        )
        .await
        .expect("create the server");
    let client_spec = SandboxSpec {
        network: Network::Pod(server.id().to_string()),
        ..spec()
    };
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < Duration::from_secs(20) {
        let r = b
            .run(
                &client_spec,
                Cmd::shell("nc 127.0.0.1 8080 </dev/null").timeout(Duration::from_secs(10)),
            )
            .await
            .expect("run the client");
        if r.stdout == b"pong-from-server\n" {
            last = None;
            break;
        }
        last = Some(r);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.remove().await.expect("remove");
    if let Some(r) = last {
        panic!(
            "{engine}: the pod member never reached 127.0.0.1:8080: {} {:?} {:?}",
            r.status_line(),
            r.stdout_lossy(),
            r.stderr_lossy()
        );
    }
    // Without the pod, 127.0.0.1:8080 is someone else's loopback: nothing there.
    let server = b
        .create(&spec(), Some(Cmd::shell("echo pong | nc -l -p 8080")))
        .await
        .expect("create");
    let r = b
        .run(&spec(), Cmd::shell("nc 127.0.0.1 8080 </dev/null"))
        .await
        .expect("run");
    server.remove().await.expect("remove");
    assert!(
        r.stdout.is_empty(),
        "{engine}: reached a server outside the pod: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_pod_members_talk_over_loopback() {
    pod_members_talk("docker").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_pod_members_talk_over_loopback() {
    pod_members_talk("podman").await;
}

async fn host_network_is_shared_only_when_asked(engine: &str) {
    let b = backend(engine);
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    let own = own.display().to_string();
    let probe = Cmd::new("readlink").arg("/proc/self/ns/net");
    let host = SandboxSpec {
        network: Network::Host,
        ..spec()
    };
    let r = b.run(&host, probe.clone()).await.expect("run");
    assert_eq!(r.stdout_lossy().trim(), own, "{engine}: network host");
    let r = b.run(&spec(), probe).await.expect("run");
    assert_ne!(r.stdout_lossy().trim(), own, "{engine}: network none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_host_network_is_opt_in() {
    host_network_is_shared_only_when_asked("docker").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_host_network_is_opt_in() {
    host_network_is_shared_only_when_asked("podman").await;
}
