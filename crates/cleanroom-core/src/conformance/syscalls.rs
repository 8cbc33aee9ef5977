//! One syscall policy on every isolating backend: no new namespaces, no
//! mount, no ptrace of another process, no keyctl, no bpf. Each probe
//! first checks a canary (the sandbox's own hostname and PID namespace)
//! and does nothing if the sandbox is not one, and each is harmless if the
//! policy were missing: a namespace that runs `true`, a tmpfs on an empty
//! directory of the sandbox's own `/tmp`, an attach to the probe's own
//! child, a read of the session keyring's id, a `bpf` call with no
//! attributes.

use std::path::PathBuf;

use super::checks::{check, expect, host_dir, own_ns, reported_not_enforced, set_mode, sh, show};
use super::{Check, CheckFuture, CheckResult, Harness, Outcome};
use crate::enforcement::Constraint;
use crate::spec::{Mount, SandboxSpec, User};

pub(super) fn all() -> Vec<Check> {
    vec![
        check!(
            no_new_namespaces,
            "unshare -U, -m and -n fail inside (the syscall policy)"
        ),
        check!(no_mount, "mount fails inside, even for uid 0"),
        check!(no_ptrace, "ptrace of another process fails"),
        check!(no_keyctl, "the kernel keyring is out of reach (keyctl)"),
        check!(no_bpf, "bpf fails"),
    ]
}

/// Where the probe helper is mounted inside.
const HELPER_DIR: &str = "/cleanroom-syscall-probe";

/// A static helper for the calls busybox has no applet for: `probe CALL
/// [PID]` makes the call once, prints `CALL=RESULT errno=N` and exits 0 if
/// it succeeded, 1 if not.
const HELPER_C: &str = r#"#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long r = -1;
    errno = EINVAL;
    if (argc > 2 && strcmp(argv[1], "ptrace") == 0)
        r = syscall(SYS_ptrace, 16L /* PTRACE_ATTACH */, atol(argv[2]), 0L, 0L);
    else if (argc > 1 && strcmp(argv[1], "keyctl") == 0)
        r = syscall(SYS_keyctl, 0L /* KEYCTL_GET_KEYRING_ID */, -3L /* session */, 0L);
    else if (argc > 1 && strcmp(argv[1], "bpf") == 0)
        r = syscall(SYS_bpf, 0L /* BPF_MAP_CREATE */, 0L, 0L);
    printf("%s=%ld errno=%d\n", argc > 1 ? argv[1] : "?", r, r < 0 ? errno : 0);
    return r < 0 ? 1 : 0;
}
"#;

/// The helper's directory on the host, removed when the check is done.
struct HelperDir(PathBuf);

impl Drop for HelperDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The helper, compiled for one check with the host's C compiler
/// (statically, so any image runs it), in a directory of its own that the
/// check removes: nothing of the suite stays in the host's temp directory.
fn helper_dir() -> Result<HelperDir, String> {
    let dir = HelperDir(host_dir("syscall-probe")?);
    let src = dir.0.join("probe.c");
    std::fs::write(&src, HELPER_C).map_err(|e| format!("writing {}: {e}", src.display()))?;
    let out = std::process::Command::new("cc")
        .args(["-static", "-Os", "-o"])
        .arg(dir.0.join("probe"))
        .arg(&src)
        .output()
        .map_err(|e| {
            format!("running `cc` for the syscall probe: {e}; install gcc and libc6-dev")
        })?;
    if !out.status.success() {
        return Err(format!(
            "`cc -static` of the syscall probe failed (install libc6-dev): {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    set_mode(&dir.0, 0o755)?;
    Ok(dir)
}

/// A shell line that stops the script unless it runs in a sandbox: the
/// spec's hostname and a PID namespace other than the caller's.
fn canary(spec: &SandboxSpec) -> String {
    format!(
        "[ \"$(cat /proc/sys/kernel/hostname)\" = '{}' ] && \
         [ \"$(readlink /proc/self/ns/pid)\" != '{}' ] || {{ echo canary-failed; exit 99; }}\n",
        spec.hostname,
        own_ns("pid")
    )
}

/// Runs `script` after the canary with `spec` (as the policy is claimed
/// for it) and returns its output lines; `None` when the backend does not
/// claim the policy, after checking that the run says so.
async fn probe(h: &Harness, spec: &SandboxSpec, script: &str) -> Result<Vec<String>, CheckResult> {
    if !h.claims(spec, Constraint::Seccomp) {
        return Err(reported_not_enforced(h, spec, Constraint::Seccomp).await);
    }
    let r = h
        .run(spec, sh(&format!("{}{script}", canary(spec))))
        .await
        .map_err(Err)?;
    if r.exit_code == 99 || r.stdout_lossy().contains("canary-failed") {
        return Err(Err(format!(
            "canary failed (not the spec's hostname or the caller's own PID namespace), so \
             nothing was probed: {}",
            show(&r)
        )));
    }
    Ok(r.stdout_lossy().lines().map(str::to_string).collect())
}

/// Every line must say `refused`.
fn all_refused(lines: &[String], want: usize) -> CheckResult {
    let refused = lines.iter().filter(|l| l.ends_with(": refused")).count();
    expect(refused == want, || {
        format!("want {want} refusals, got: {lines:?}")
    })?;
    Ok(Outcome::Verified)
}

async fn no_new_namespaces(h: &Harness) -> CheckResult {
    let script = "for f in -U -m -n; do \
                  if unshare $f true 2>/dev/null; then echo \"unshare $f: allowed\"; \
                  else echo \"unshare $f: refused\"; fi; done";
    match probe(h, &h.spec(), script).await {
        Ok(lines) => all_refused(&lines, 3),
        Err(outcome) => outcome,
    }
}

async fn no_mount(h: &Harness) -> CheckResult {
    let spec = SandboxSpec {
        user: User::ROOT,
        ..h.spec()
    };
    let script = "d=/tmp/cleanroom-mount-probe; mkdir -p $d; \
                  if mount -t tmpfs none $d 2>/dev/null; then echo 'mount: allowed'; umount $d; \
                  else echo 'mount: refused'; fi";
    match probe(h, &spec, script).await {
        Ok(lines) => all_refused(&lines, 1),
        Err(outcome) => outcome,
    }
}

/// Runs the helper's `call` (with a sleeping child's pid for ptrace).
async fn helper_refused(h: &Harness, call: &str) -> CheckResult {
    let mut spec = h.spec();
    if !h.claims(&spec, Constraint::Seccomp) {
        return reported_not_enforced(h, &spec, Constraint::Seccomp).await;
    }
    let dir = helper_dir()?;
    spec.mounts
        .push(Mount::read_only(dir.0.clone(), HELPER_DIR));
    let run = match call {
        "ptrace" => format!("sleep 100 & p=$!; {HELPER_DIR}/probe ptrace $p; rc=$?; kill $p"),
        _ => format!("{HELPER_DIR}/probe {call}; rc=$?"),
    };
    let script = format!(
        "{run}\nif [ $rc = 0 ]; then echo '{call}: allowed'; \
         elif [ $rc = 1 ]; then echo '{call}: refused'; else echo \"{call}: no probe ($rc)\"; fi"
    );
    match probe(h, &spec, &script).await {
        Ok(lines) => {
            expect(
                lines.iter().any(|l| l.starts_with(&format!("{call}="))),
                || format!("the probe helper did not run: {lines:?}"),
            )?;
            all_refused(&lines, 1)
        }
        Err(outcome) => outcome,
    }
}

async fn no_ptrace(h: &Harness) -> CheckResult {
    helper_refused(h, "ptrace").await
}

async fn no_keyctl(h: &Harness) -> CheckResult {
    helper_refused(h, "keyctl").await
}

async fn no_bpf(h: &Harness) -> CheckResult {
    helper_refused(h, "bpf").await
}
