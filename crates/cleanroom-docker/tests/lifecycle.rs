//! What the conformance suite cannot see from inside: dropping a sandbox
//! removes its container, the containers of a caller killed with SIGKILL
//! end by themselves, `gc` removes what a dead caller left, and pod members
//! talk over 127.0.0.1 — on both engines.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, StartContainerOptions};
use cleanroom_core::{Backend, Cmd, Network, Removed, RootFs, SandboxSpec};
use cleanroom_docker::{
    DockerBackend, EngineBackend, PodmanBackend, CREATED_BY, DEFAULT_IMAGE, LABEL_CREATED_BY,
    LABEL_HOST, LABEL_PID, LABEL_SESSION,
};

/// Set in the child process of the kill tests: the engine to use.
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

/// The child half of the kill tests. Inert unless the parent test started
/// this binary with CHILD_ENV set: then it keeps every kind of container
/// (a warm one in the pool, an idle sandbox, a pod member, one with a main
/// command, a running one-shot), prints its session and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_child_helper() {
    let Ok(engine) = std::env::var(CHILD_ENV) else {
        return;
    };
    let pooled = backend(&engine).with_warm_pool(1);
    let r = pooled.run(&spec(), Cmd::new("true")).await.expect("run");
    assert!(r.success(), "{r:?}");
    let b = backend(&engine);
    let leader = b.create(&spec(), None).await.expect("create");
    let member_spec = SandboxSpec {
        network: Network::Pod(leader.id().to_string()),
        ..spec()
    };
    let member = b.create(&member_spec, None).await.expect("create member");
    let main = b
        .create(&spec(), Some(Cmd::shell("echo up; sleep 1000")))
        .await
        .expect("create with main");
    while pooled.warm_containers() < 1 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A one-shot still running when its caller dies: its container's
    // watcher must end it (the command runs as the main process's child,
    // not in an exec that the keep-alive's end would take down).
    let running = tokio::spawn({
        let b = b.clone();
        async move { b.run(&spec(), Cmd::new("sleep").arg("1000")).await }
    });
    let shown = std::time::Instant::now();
    while of_session(&b, cleanroom_docker::session()).await.len() < 5
        && shown.elapsed() < Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("SESSION {}", cleanroom_docker::session());
    tokio::time::sleep(Duration::from_secs(600)).await;
    drop((leader, member, main, pooled, running));
}

/// Runs [`killed_child_helper`] for `engine` and returns it with its session.
fn start_child(engine: &str) -> (std::process::Child, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "killed_child_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, engine)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning the child test process");
    let stdout = child.stdout.take().unwrap();
    let session = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.split_once("SESSION ").map(|(_, s)| s.trim().to_string()));
    match session {
        Some(s) => (child, s),
        None => {
            let _ = child.kill();
            panic!("{engine}: the child printed no session");
        }
    }
}

/// Ids of the containers labelled with `session`, in any state.
async fn of_session(b: &EngineBackend, session: &str) -> Vec<String> {
    let docker = b.endpoint().unwrap().connect().unwrap();
    let filters: HashMap<&str, Vec<String>> =
        HashMap::from([("label", vec![format!("{LABEL_SESSION}={session}")])]);
    cleanroom_docker::list_labelled(&docker, &filters)
        .await
        .expect("listing containers")
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

/// A container labelled as ours whose owner is dead (a pid above the
/// kernel's maximum), never started: what a caller killed between the
/// engine's create and start leaves.
async fn plant_unstarted(b: &EngineBackend) -> String {
    let docker = b.endpoint().unwrap().connect().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let body = ContainerCreateBody {
        image: Some(DEFAULT_IMAGE.into()),
        entrypoint: Some(vec!["true".into()]),
        labels: Some(HashMap::from([
            (LABEL_CREATED_BY.to_string(), CREATED_BY.to_string()),
            (LABEL_PID.to_string(), DEAD_PID.to_string()),
            (LABEL_HOST.to_string(), host.trim().to_string()),
            (LABEL_SESSION.to_string(), format!("{DEAD_PID}-planted")),
        ])),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    docker
        .create_container(None::<CreateContainerOptions>, body)
        .await
        .expect("planting a container")
        .id
}

/// Above the kernel's pid limit: never a live process.
const DEAD_PID: u32 = 4_194_305;

async fn wait_gone(b: &EngineBackend, ids: &[String], within: Duration) -> Vec<String> {
    let started = Instant::now();
    loop {
        let mut left = Vec::new();
        for id in ids {
            if exists(b, id).await {
                left.push(id.clone());
            }
        }
        if left.is_empty() || started.elapsed() > within {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 12, point 2: a caller killed with SIGKILL takes its containers
/// with it, pooled, idle, pod member, with a main command or running a
/// one-shot, with nobody
/// running `gc`; and the next caller removes an unstarted one.
async fn containers_die_with_their_owner(engine: &str) {
    let b = backend(engine);
    let planted = plant_unstarted(&b).await;
    let (mut child, session) = start_child(engine);
    let ids = of_session(&b, &session).await;
    let left = wait_gone(&b, std::slice::from_ref(&planted), Duration::from_secs(20)).await;
    child.kill().expect("SIGKILL the child");
    let _ = child.wait();
    assert!(
        left.is_empty(),
        "{engine}: the next caller did not remove a dead owner's unstarted container {planted}"
    );
    assert!(
        ids.len() >= 5,
        "{engine}: the child should hold at least 5 containers, has {ids:?}"
    );
    let left = wait_gone(&b, &ids, Duration::from_secs(30)).await;
    assert!(
        left.is_empty(),
        "{engine}: containers of a killed caller still there 30 s later: {left:?} of {ids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_containers_die_with_their_owner() {
    containers_die_with_their_owner("docker").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_containers_die_with_their_owner() {
    containers_die_with_their_owner("podman").await;
}

/// `gc` removes a dead owner's container in any state and reports it as one.
async fn gc_removes_and_reports(engine: &str) {
    let b = backend(engine);
    let id = plant_unstarted(&b).await;
    let docker = b.endpoint().unwrap().connect().unwrap();
    // Started and exited: not the next caller's business, only gc's.
    docker
        .start_container(&id, None::<StartContainerOptions>)
        .await
        .expect("start");
    let removed = b.gc().await.expect("gc");
    assert!(
        removed
            .iter()
            .any(|r| r.kind == Removed::CONTAINER && r.count == 1 && r.what.contains(&id[..12])),
        "{engine}: gc did not report {id}: {removed:?}"
    );
    assert!(!exists(&b, &id).await, "{engine}: {id} survived gc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_gc_removes_a_dead_owners_container() {
    gc_removes_and_reports("docker").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_gc_removes_a_dead_owners_container() {
    gc_removes_and_reports("podman").await;
}

/// A stopped sandbox's container is removed by the engine (auto-remove),
/// but its main process's output stays readable, as on native.
async fn logs_outlive_stop(engine: &str) {
    let b = backend(engine);
    let sb = b
        .create(
            &spec(),
            Some(Cmd::shell("echo up; echo err >&2; sleep 1000")),
        )
        .await
        .expect("create");
    let started = Instant::now();
    let mut logs = sb.logs().await.expect("logs");
    while logs.stdout != b"up\n" && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        logs = sb.logs().await.expect("logs");
    }
    sb.stop().await.expect("stop");
    let after = sb.logs().await.expect("logs after stop");
    assert_eq!(after.stdout, b"up\n", "{engine}: {after:?}");
    assert_eq!(after.stderr, b"err\n", "{engine}: {after:?}");
    assert!(
        sb.exec(Cmd::new("true")).await.is_err(),
        "{engine}: exec in a stopped sandbox succeeded"
    );
    let id = sb.id().to_string();
    assert!(
        wait_gone(&b, std::slice::from_ref(&id), Duration::from_secs(20))
            .await
            .is_empty(),
        "{engine}: the stopped container {id} was not removed"
    );
    sb.remove().await.expect("remove after stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_logs_outlive_stop() {
    logs_outlive_stop("docker").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_logs_outlive_stop() {
    logs_outlive_stop("podman").await;
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
