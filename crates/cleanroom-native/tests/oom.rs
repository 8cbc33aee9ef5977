//! Out of memory on native: the kernel's OOM killer ends the sandbox's
//! command, never our own helper or the sandbox's init, and the result says
//! `oom_killed` with exit 137, whether the memory went to the command's own
//! pages or to a tmpfs (whose pages are charged to the sandbox too).

use std::time::Duration;

use cleanroom_core::{Backend, Cmd, Constraint, RunResult, SandboxSpec, Status};
use cleanroom_native::NativeBackend;

fn limited() -> SandboxSpec {
    SandboxSpec {
        memory: Some(64 << 20),
        ..SandboxSpec::default()
    }
}

/// Whether the memory limit is enforced here; where it is not (rootless
/// without a delegated cgroup), the report must say so with a reason, and
/// there is nothing more to check.
fn memory_limit_enforced(spec: &SandboxSpec) -> bool {
    let e = NativeBackend::new().enforcement(spec);
    if e.is_enforced(Constraint::MemoryLimit) {
        return true;
    }
    let status = e.status(Constraint::MemoryLimit);
    assert!(
        matches!(status, Some(Status::NotEnforced { reason }) if !reason.is_empty()),
        "memory limit neither enforced nor reported with a reason: {status:?}"
    );
    eprintln!("memory limit not enforced here, as reported: {status:?}");
    false
}

async fn run(spec: &SandboxSpec, script: &str) -> RunResult {
    NativeBackend::new()
        .run(spec, Cmd::shell(script).timeout(Duration::from_secs(120)))
        .await
        .unwrap_or_else(|e| panic!("`{script}` did not give a result (our helper died?): {e}"))
}

fn assert_oom(r: &RunResult) {
    assert!(
        r.oom_killed && r.exit_code == 137 && !r.timed_out,
        "expected oom_killed with exit 137: {} stdout={:?} stderr={:?}",
        r.status_line(),
        r.stdout_lossy(),
        r.stderr_lossy()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn filling_the_workdir_tmpfs_past_the_limit_is_an_oom_kill() {
    let spec = limited();
    if !memory_limit_enforced(&spec) {
        return;
    }
    // tmpfs pages are not in any process's RSS: the biggest process in
    // the cgroup used to be our helper (a copy of the caller), so the
    // kernel killed it and the run failed with no result.
    let r = run(&spec, "dd if=/dev/zero of=/workdir/big bs=1M count=200").await;
    assert_oom(&r);
    let r = run(&spec, "dd if=/dev/zero of=/tmp/big bs=1M count=200; exit 3").await;
    assert!(
        r.exit_code == 3 || r.oom_killed,
        "a shell that outlives its OOM-killed dd ends as it chooses: {}",
        r.status_line()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_memory_hog_is_an_oom_kill() {
    let spec = limited();
    if !memory_limit_enforced(&spec) {
        return;
    }
    let r = run(&spec, "x=0123456789abcdef; while :; do x=\"$x$x\"; done").await;
    assert_oom(&r);
    let r = run(&spec, "echo fine").await;
    assert!(r.success() && !r.oom_killed, "{}", r.status_line());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_lived_sandbox_survives_an_oom_kill_of_its_command() {
    let spec = limited();
    if !memory_limit_enforced(&spec) {
        return;
    }
    let sb = NativeBackend::new().create(&spec, None).await.unwrap();
    let r = sb
        .exec(
            Cmd::shell("dd if=/dev/zero of=/workdir/big bs=1M count=200")
                .timeout(Duration::from_secs(120)),
        )
        .await
        .expect("the exec that ran out of memory gives a result");
    assert_oom(&r);
    // The init lived through it: the sandbox still serves commands (the
    // tmpfs is emptied first, its pages still count against the limit).
    let r = sb
        .exec(Cmd::shell("rm -f /workdir/big; echo alive").timeout(Duration::from_secs(30)))
        .await
        .expect("the sandbox still runs commands after an OOM kill");
    assert_eq!(r.stdout_lossy(), "alive\n", "{}", r.status_line());
    assert!(!r.oom_killed, "{}", r.status_line());
    // A later SIGKILL that is not the OOM killer's is not reported as one.
    let r = sb
        .exec(Cmd::shell("kill -9 $$").timeout(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(r.exit_code == 137 && !r.oom_killed, "{}", r.status_line());
    sb.remove().await.unwrap();
}
