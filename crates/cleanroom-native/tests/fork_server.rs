//! Sandboxes started off the main thread are forked by the fork server, as
//! children of the caller; the server holds none of the caller's
//! descriptors; and a server that dies is replaced without losing a
//! sandbox. One test: the server is per process.

use std::time::{Duration, Instant};

use cleanroom_core::{Backend, Cmd, SandboxSpec};
use cleanroom_native::NativeBackend;

/// `(pid, comm, ppid)` of every child of this process (of any thread).
fn children() -> Vec<(i32, String, i32)> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        pids.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    pids.into_iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let open = stat.find('(')?;
            let close = stat.rfind(')')?;
            let comm = stat[open + 1..close].to_string();
            let ppid = stat[close + 2..].split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, comm, ppid))
        })
        .collect()
}

fn server_pid() -> Option<i32> {
    children()
        .into_iter()
        .find(|(_, comm, _)| comm == "cleanroom-fork")
        .map(|(pid, _, _)| pid)
}

async fn echo_in_a_live_sandbox(backend: &NativeBackend, word: &str) {
    let sandbox = backend
        .create(&SandboxSpec::default(), None)
        .await
        .expect("creating a sandbox");
    let r = sandbox
        .exec(Cmd::new("echo").arg(word))
        .await
        .expect("running echo");
    assert_eq!(r.stdout_lossy().trim(), word, "{}", r.stderr_lossy());
    sandbox.remove().await.expect("removing the sandbox");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fork_server_forks_children_of_the_caller_and_is_replaced_when_killed() {
    let backend = NativeBackend::new();
    let me = std::process::id() as i32;
    let before = cleanroom_native::fork_server::forked();

    let sandbox = backend
        .create(&SandboxSpec::default(), None)
        .await
        .expect("creating a sandbox");
    assert_eq!(
        cleanroom_native::fork_server::forked(),
        before + 1,
        "a sandbox made off the main thread goes through the fork server"
    );
    let kids = children();
    let first = kids
        .iter()
        .find(|(_, comm, _)| comm == "cleanroom-ns")
        .unwrap_or_else(|| panic!("no first child among our children: {kids:?}"));
    assert_eq!(first.2, me, "the first child's parent is the caller");
    let server = server_pid().unwrap_or_else(|| panic!("no fork server: {kids:?}"));
    // Its standard streams (/dev/null) and its socket: nothing else of ours.
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{server}/fd"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut sorted = fds.clone();
    sorted.sort();
    assert_eq!(sorted, ["0", "1", "2", "3"], "the server's descriptors");
    let r = sandbox.exec(Cmd::new("echo").arg("one")).await.unwrap();
    assert_eq!(r.stdout_lossy().trim(), "one");
    sandbox.remove().await.unwrap();

    // Killed: the next sandbox is forked here, a new server takes the rest.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &server.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{server}/stat")).is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "the server did not die");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let through = cleanroom_native::fork_server::forked();
    for word in ["two", "three", "four"] {
        echo_in_a_live_sandbox(&backend, word).await;
    }
    assert_eq!(
        cleanroom_native::fork_server::forked(),
        through + 2,
        "one sandbox forked directly, then a new server for the others"
    );
    let new = server_pid().expect("a new fork server");
    assert_ne!(new, server);
    assert!(
        !std::path::Path::new(&format!("/proc/{server}")).exists(),
        "the dead server was reaped"
    );
}
