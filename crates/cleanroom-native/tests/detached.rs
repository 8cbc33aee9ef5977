//! Named native sandboxes that outlive their creator (issue #13), at the
//! library level, with real namespaces: the acceptance sequence (a second
//! process execs into what the first made), a killed init shown as dead and
//! collected by `gc`, parallel execs and creates, `run -d` logs and exit
//! status, and the owner-only rule across two users.
//!
//! Helper "tests" marked `#[ignore]` are what the child processes run: the
//! test binary starts itself again with `--ignored --exact NAME` and the
//! sandbox's name in `CLEANROOM_TEST_SANDBOX`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cleanroom_core::{
    output_channel, Backend, Cmd, DetachOptions, Detached, LogOptions, SandboxSpec, SandboxState,
    Stream,
};
use cleanroom_native::NativeBackend;

fn name(label: &str) -> String {
    format!("t{}-{label}", std::process::id())
}

/// Removes what a test's sandbox left if the test fails half-way (a named
/// sandbox outlives the test process by design): kills its init and
/// deletes its cgroup and state. Does nothing after a clean `remove`.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(root) = cleanroom_core::detached::state_dir() else {
            return;
        };
        let dir = root.join(&self.0);
        let Ok(bytes) = std::fs::read(dir.join("record.json")) else {
            let _ = std::fs::remove_dir_all(&dir);
            return;
        };
        let record: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        if let Some(pid) = record["init_pid"].as_u64() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            for _ in 0..100 {
                if !alive(pid) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for c in record["cgroup"].as_array().into_iter().flatten() {
            let _ = std::fs::remove_dir(c.as_str().unwrap_or_default());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn options(name: &str) -> DetachOptions {
    DetachOptions {
        name: name.into(),
        labels: [("test".to_string(), "detached".to_string())].into(),
    }
}

async fn create(name: &str, main: Option<Cmd>) -> Box<dyn Detached> {
    NativeBackend::new()
        .create_detached(&SandboxSpec::default(), main, options(name))
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {e}"))
}

async fn state_of(name: &str) -> Option<SandboxState> {
    NativeBackend::new()
        .list(true)
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.name == name)
        .map(|i| i.state)
}

fn record_of(name: &str) -> serde_json::Value {
    let dir = cleanroom_core::detached::state_dir().unwrap().join(name);
    serde_json::from_slice(&std::fs::read(dir.join("record.json")).unwrap()).unwrap()
}

/// Runs the helper test `helper` of this binary in a new process.
fn child(helper: &str, sandbox: &str) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            helper,
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CLEANROOM_TEST_SANDBOX", sandbox)
        .output()
        .unwrap()
}

/// Whether `pid` runs (a zombie waiting for its reaper does not).
fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

/// Waits up to 5 s for `pid` to end: a process closes its files (and
/// so frees the sandbox's lock) a moment before it is gone.
async fn ends(pid: u64) -> bool {
    for _ in 0..250 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn state_persists_between_execs_from_other_processes() {
    let n = name("accept");
    let _cleanup = Cleanup(n.clone());
    let sb = create(&n, None).await;
    let r = sb.exec(Cmd::shell("echo 1 > /tmp/f"), None).await.unwrap();
    assert_eq!(r.exit_code, 0, "{}", r.stderr_lossy());

    // A new process reaches it by name.
    let out = child("helper_cat_tmp_f", &n);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("CAT=[1\n]"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(state_of(&n).await, Some(SandboxState::Running));
    let running = NativeBackend::new().list(false).await.unwrap();
    let me = running
        .iter()
        .find(|i| i.name == n)
        .expect("listed while running");
    assert_eq!(me.labels.get("test").map(String::as_str), Some("detached"));

    let record = record_of(&n);
    let init = record["init_pid"].as_u64().unwrap();
    let supervisor = record["supervisor_pid"].as_u64().unwrap();
    let cgroups: Vec<PathBuf> = record["cgroup"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| PathBuf::from(p.as_str().unwrap()))
        .collect();
    let dir = cleanroom_core::detached::state_dir().unwrap().join(&n);
    assert!(alive(init) && alive(supervisor));
    let sock = dir.join("control.sock");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "state dir mode {mode:o}");

    sb.stop(Duration::from_secs(5)).await.unwrap();
    assert!(matches!(
        state_of(&n).await,
        Some(SandboxState::Exited { .. })
    ));
    let e = sb
        .exec(Cmd::new("true"), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not running"), "{e}");

    sb.remove(false).await.unwrap();
    assert_eq!(state_of(&n).await, None);
    assert!(ends(init).await, "init {init} still runs");
    assert!(ends(supervisor).await, "supervisor {supervisor} still runs");
    assert!(
        !sock.exists() && !dir.exists(),
        "state left in {}",
        dir.display()
    );
    for c in cgroups {
        assert!(!c.exists(), "cgroup {} left", c.display());
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&n), "a mount names the sandbox");
    assert!(NativeBackend::new().attach(&n).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by state_persists_between_execs_from_other_processes"]
async fn helper_cat_tmp_f() {
    let n = std::env::var("CLEANROOM_TEST_SANDBOX").unwrap();
    let sb = NativeBackend::new()
        .attach(&n)
        .await
        .unwrap()
        .expect("attach");
    let r = sb.exec(Cmd::new("cat").arg("/tmp/f"), None).await.unwrap();
    println!("CAT=[{}]", r.stdout_lossy());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_init_is_dead_until_gc_removes_it() {
    let n = name("dead");
    let _cleanup = Cleanup(n.clone());
    let _sb = create(&n, None).await;
    let init = record_of(&n)["init_pid"].as_u64().unwrap();
    // SAFETY-free: a plain kill of a process this test made.
    let status = Command::new("kill")
        .args(["-9", &init.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut state = None;
    for _ in 0..100 {
        state = state_of(&n).await;
        if matches!(state, Some(SandboxState::Dead { .. })) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        matches!(state, Some(SandboxState::Dead { .. })),
        "{state:?}"
    );
    let removed = NativeBackend::new().gc().await.unwrap();
    assert!(
        removed.iter().any(|r| r.what.contains(&format!("`{n}`"))),
        "{removed:?}"
    );
    assert_eq!(state_of(&n).await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn sixteen_parallel_execs_get_their_own_output_and_status() {
    let n = name("par");
    let _cleanup = Cleanup(n.clone());
    let sb: std::sync::Arc<dyn Detached> = create(&n, None).await.into();
    let runs = (0..16).map(|i| {
        let sb = sb.clone();
        tokio::spawn(async move {
            let r = sb
                .exec(
                    Cmd::new("sh").args([
                        "-c",
                        "echo out-$0; echo err-$0 >&2; exit $0",
                        &i.to_string(),
                    ]),
                    None,
                )
                .await
                .unwrap();
            (i, r)
        })
    });
    for run in runs.collect::<Vec<_>>() {
        let (i, r) = run.await.unwrap();
        assert_eq!(r.exit_code, i, "exec {i}");
        assert_eq!(r.stdout_lossy(), format!("out-{i}\n"));
        assert_eq!(r.stderr_lossy(), format!("err-{i}\n"));
    }
    sb.remove(true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn eight_parallel_creates_of_one_name_make_one_sandbox() {
    let n = name("race");
    let _cleanup = Cleanup(n.clone());
    let tries = (0..8).map(|_| {
        let n = n.clone();
        tokio::spawn(async move {
            NativeBackend::new()
                .create_detached(&SandboxSpec::default(), None, options(&n))
                .await
        })
    });
    let mut made = Vec::new();
    let mut refused = 0;
    for t in tries.collect::<Vec<_>>() {
        match t.await.unwrap() {
            Ok(sb) => made.push(sb),
            Err(e) => {
                assert!(e.to_string().contains("name already in use"), "{e}");
                refused += 1;
            }
        }
    }
    assert_eq!((made.len(), refused), (1, 7));
    made.remove(0).remove(true).await.unwrap();
    assert_eq!(state_of(&n).await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_main_command_leaves_logs_and_its_exit_status() {
    let n = name("main");
    let _cleanup = Cleanup(n.clone());
    // The pause keeps the two streams' records in a known order.
    let main = Cmd::shell(
        "echo hello; echo oops >&2; sleep 0.2; for i in 1 2 3; do echo line$i; done; exit 3",
    );
    let sb = create(&n, Some(main)).await;
    let mut state = None;
    for _ in 0..200 {
        state = state_of(&n).await;
        if matches!(state, Some(SandboxState::Exited { .. })) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(state, Some(SandboxState::Exited { code: 3 }));

    let (tx, mut rx) = output_channel(64);
    sb.logs(LogOptions::default(), tx).await.unwrap();
    let mut out = String::new();
    let mut err = String::new();
    while let Some(c) = rx.recv().await {
        match c.stream {
            Stream::Stdout => out.push_str(&String::from_utf8_lossy(&c.bytes)),
            Stream::Stderr => err.push_str(&String::from_utf8_lossy(&c.bytes)),
        }
    }
    assert_eq!(out, "hello\nline1\nline2\nline3\n");
    assert_eq!(err, "oops\n");

    let (tx, mut rx) = output_channel(64);
    let tail = LogOptions {
        tail: Some(2),
        follow: true,
    };
    sb.logs(tail, tx).await.unwrap();
    let mut last = String::new();
    while let Some(c) = rx.recv().await {
        last.push_str(&String::from_utf8_lossy(&c.bytes));
    }
    assert_eq!(last, "line2\nline3\n");
    sb.remove(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_sends_output_as_it_comes_and_stop_ends_it() {
    let n = name("follow");
    let _cleanup = Cleanup(n.clone());
    let main = Cmd::shell("trap 'echo bye; exit 0' TERM; echo start; while :; do sleep 0.05; done");
    let sb: std::sync::Arc<dyn Detached> = create(&n, Some(main)).await.into();
    let (tx, mut rx) = output_channel(64);
    let follower = {
        let sb = sb.clone();
        tokio::spawn(async move {
            sb.logs(
                LogOptions {
                    tail: None,
                    follow: true,
                },
                tx,
            )
            .await
        })
    };
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.bytes, b"start\n");
    sb.stop(Duration::from_secs(5)).await.unwrap();
    let mut rest = String::new();
    while let Some(c) = rx.recv().await {
        // (on stderr the shell may also report the `sleep` the stop ended)
        if c.stream == Stream::Stdout {
            rest.push_str(&String::from_utf8_lossy(&c.bytes));
        }
    }
    follower.await.unwrap().unwrap();
    assert_eq!(rest, "bye\n");
    assert_eq!(state_of(&n).await, Some(SandboxState::Exited { code: 0 }));
    sb.remove(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_and_stats_work_on_a_named_sandbox() {
    let n = name("cp");
    let _cleanup = Cleanup(n.clone());
    let sb = create(&n, None).await;
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in.txt"), "to the sandbox\n").unwrap();
    sb.copy_in(&host.path().join("in.txt"), Path::new("/tmp/in.txt"))
        .await
        .unwrap();
    sb.exec(
        Cmd::shell("cp /tmp/in.txt /tmp/out.txt && chmod 640 /tmp/out.txt"),
        None,
    )
    .await
    .unwrap();
    sb.copy_out(Path::new("/tmp/out.txt"), &host.path().join("out.txt"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(host.path().join("out.txt")).unwrap(),
        "to the sandbox\n"
    );
    let stats = sb.stats().await.unwrap();
    assert_eq!(stats.name, n);
    assert!(
        stats.unavailable.is_some() || stats.memory_bytes.is_some(),
        "{stats:?}"
    );
    sb.remove(true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_names_and_unknown_sandboxes_are_clear_errors() {
    for bad in ["a/b", "a b", ""] {
        let e = NativeBackend::new()
            .create_detached(&SandboxSpec::default(), None, options(bad))
            .await
            .err()
            .expect("refused");
        assert!(e.to_string().contains("is not valid"), "{e}");
    }
    assert!(NativeBackend::new()
        .attach("no-such-sandbox-here")
        .await
        .unwrap()
        .is_none());
    let n = name("running");
    let _cleanup = Cleanup(n.clone());
    let sb = create(&n, None).await;
    let e = sb.remove(false).await.unwrap_err().to_string();
    assert!(e.contains("is running"), "{e}");
    sb.remove(true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn attached_execs_use_the_callers_streams_and_terminal() {
    let n = name("attached");
    let _cleanup = Cleanup(n.clone());
    let sb = create(&n, None).await;

    // Pipes: the child's own stdin, stdout and stderr reach the command.
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_exec_attached",
            "--nocapture",
        ])
        .env("CLEANROOM_TEST_SANDBOX", &n)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(b"piped input\n").unwrap();
    let out = c.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("got: piped input"), "{stdout}\n{stderr}");
    assert!(stderr.contains("to stderr"), "{stderr}");
    assert!(stdout.contains("CODE=4"), "{stdout}");

    // A terminal: `script` gives the child one; the command sees its own.
    let bin = std::env::current_exe().unwrap();
    let line = format!(
        "{} --ignored --exact helper_exec_tty --nocapture",
        bin.display()
    );
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("CLEANROOM_TEST_SANDBOX", &n)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("IS-A-TTY"), "{text}");
    assert!(text.contains("CODE=3"), "{text}");
    sb.remove(true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by attached_execs_use_the_callers_streams_and_terminal"]
async fn helper_exec_attached() {
    let n = std::env::var("CLEANROOM_TEST_SANDBOX").unwrap();
    let sb = NativeBackend::new()
        .attach(&n)
        .await
        .unwrap()
        .expect("attach");
    let stdio = cleanroom_core::ExecStdio {
        stdin: true,
        tty: false,
    };
    let cmd = Cmd::shell("read l; echo \"got: $l\"; echo to stderr >&2; exit 4");
    let code = sb.exec_attached(cmd, stdio).await.unwrap();
    println!("CODE={code}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by attached_execs_use_the_callers_streams_and_terminal"]
async fn helper_exec_tty() {
    let n = std::env::var("CLEANROOM_TEST_SANDBOX").unwrap();
    let sb = NativeBackend::new()
        .attach(&n)
        .await
        .unwrap()
        .expect("attach");
    let stdio = cleanroom_core::ExecStdio {
        stdin: false,
        tty: true,
    };
    let cmd = Cmd::shell("test -t 0 && test -t 1 && echo IS-A-TTY; exit 3");
    let code = sb.exec_attached(cmd, stdio).await.unwrap();
    println!("CODE={code}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_come_from_the_sandbox_cgroup_or_say_why_not() {
    let n = name("stats");
    let _cleanup = Cleanup(n.clone());
    let spec = SandboxSpec {
        memory: Some(256 << 20),
        ..SandboxSpec::default()
    };
    let made = NativeBackend::new()
        .create_detached(&spec, None, options(&n))
        .await;
    let sb = match made {
        Ok(sb) => sb,
        // Rootless on cgroup v1 the limit cannot be enforced (and a
        // strict spec would refuse); nothing to read then.
        Err(e) => {
            eprintln!("no limited sandbox here: {e}");
            return;
        }
    };
    let stats = sb.stats().await.unwrap();
    match &stats.unavailable {
        None => {
            assert!(stats.memory_bytes.is_some_and(|m| m > 0), "{stats:?}");
            assert_eq!(stats.memory_limit, Some(256 << 20), "{stats:?}");
            assert!(stats.pids.is_none_or(|p| p >= 1), "{stats:?}");
        }
        Some(why) => assert!(why.starts_with("not available"), "{why}"),
    }
    sb.remove(true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_init_of_another_version_is_named_not_misread() {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("control.sock");
    let listener = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    rustix::net::bind(&listener, &SocketAddrUnix::new(&path).unwrap()).unwrap();
    rustix::net::listen(&listener, 4).unwrap();
    // What an init of an older and of a newer release say first.
    let hellos: [&[u8]; 2] = [
        br#"{"hello":{"version":1,"release":"0.0.1"}}"#,
        br#"{"hello":{"version":9,"release":"9.0.0","features":["x"]}}"#,
    ];
    let server = std::thread::spawn(move || {
        for hello in hellos {
            let conn = rustix::net::accept(&listener).unwrap();
            rustix::net::send(&conn, hello, rustix::net::SendFlags::empty()).unwrap();
            // Held until the client has read it.
            let mut b = [0u8; 16];
            let _ = rustix::net::recv(&conn, &mut b, rustix::net::RecvFlags::empty());
        }
    });
    for release in ["0.0.1", "9.0.0"] {
        let e = cleanroom_native::client::Channel::connect_path(&path, "old")
            .await
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains(&format!("sandbox was created by cleanroom {release}")),
            "{e}"
        );
    }
    server.join().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exec_whose_caller_is_gone_ends_but_the_main_command_does_not() {
    let n = name("orphan");
    let _cleanup = Cleanup(n.clone());
    let sb = create(&n, Some(Cmd::shell("sleep 30"))).await;
    // A caller that goes away in the middle of its exec.
    let out = child("helper_exec_and_vanish", &n);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("STARTED"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut left = String::new();
    for _ in 0..100 {
        let r = sb.exec(Cmd::shell("ps -eo args"), None).await.unwrap();
        left = r.stdout_lossy().into_owned();
        if !left.contains("sleep 1234") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!left.contains("sleep 1234"), "{left}");
    assert!(
        left.contains("sleep 30"),
        "the main command was killed: {left}"
    );
    assert_eq!(state_of(&n).await, Some(SandboxState::Running));
    sb.remove(true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by an_exec_whose_caller_is_gone_ends_but_the_main_command_does_not"]
async fn helper_exec_and_vanish() {
    let n = std::env::var("CLEANROOM_TEST_SANDBOX").unwrap();
    let sb = NativeBackend::new()
        .attach(&n)
        .await
        .unwrap()
        .expect("attach");
    let run = tokio::spawn(async move { sb.exec(Cmd::shell("sleep 1234"), None).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("STARTED");
    // Ends the process with the exec still running, as a Ctrl-C would.
    drop(run);
    std::process::exit(0);
}
