//! The checks themselves. Each is an `async fn(&Harness) -> CheckResult`;
//! `all()` names them. Commands use only what busybox and a Debian host
//! both have.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Check, CheckFuture, CheckResult, Harness, Outcome, CANARY_VAR};
use crate::cmd::Cmd;
use crate::enforcement::{Constraint, Status};
use crate::error::Error;
use crate::output::{output_channel, Stream};
use crate::result::RunResult;
use crate::spec::{Mount, SandboxSpec, User};

macro_rules! check {
    ($name:ident, $about:expr) => {
        Check {
            name: stringify!($name),
            about: $about,
            run: |h| -> CheckFuture<'_> { Box::pin($name(h)) },
        }
    };
}
pub(super) use check;

pub(super) fn all() -> Vec<Check> {
    vec![
        check!(exit_codes, "exit codes come back as the command set them"),
        check!(
            command_not_found,
            "a missing program is exit 127 or a clear error naming it"
        ),
        check!(
            signal_exit,
            "a command killed by signal N reports N and exit 128+N"
        ),
        check!(
            timeout_kills_tree,
            "a timeout kills the whole process tree and says timed_out"
        ),
        check!(
            background_processes_die,
            "a one-shot run ends when its command does, killing what it left running"
        ),
        check!(
            stdout_stderr_separate,
            "stdout and stderr are separate streams"
        ),
        check!(
            non_utf8_output,
            "output bytes are kept exactly, UTF-8 or not"
        ),
        check!(
            large_output_no_deadlock,
            "50 MiB on each stream at once neither deadlocks nor loses bytes"
        ),
        check!(
            output_truncation,
            "output past the limit is dropped and flagged, and the command still finishes"
        ),
        check!(
            stdin_bytes,
            "stdin bytes reach the command exactly, 1 MiB without deadlock"
        ),
        check!(
            empty_stdin,
            "without stdin the command reads end-of-file, never the caller's terminal"
        ),
        check!(
            env_isolation,
            "only the fixed base, the spec's and the command's variables are set"
        ),
        check!(
            workdir,
            "commands start in a writable working directory; a command may choose another"
        ),
        check!(
            filesystem_isolation,
            "host files not mounted are invisible; /tmp is writable"
        ),
        check!(
            read_only_root,
            "the root filesystem is read-only, even for uid 0"
        ),
        check!(
            writable_root_discarded,
            "with read_only_root = false, writes succeed and vanish with the sandbox"
        ),
        check!(
            mounts,
            "mounts are read-only unless asked; read-write mounts reach the host"
        ),
        check!(user, "commands run as 1000:1000 by default"),
        check!(capabilities, "no capability in any set"),
        check!(no_new_privs, "no_new_privs is set"),
        check!(seccomp, "a seccomp filter is in force"),
        check!(network_none, "network none: own namespace, loopback only"),
        check!(pid_namespace, "own PID namespace"),
        check!(hostname, "the fixed hostname in its own UTS namespace"),
        check!(umask, "umask is 022"),
        check!(
            pids_limit,
            "a fork bomb stops at the pids limit and the run still ends"
        ),
        check!(
            memory_limit,
            "exceeding the memory limit kills the command and reports oom_killed"
        ),
        check!(
            memory_limit_tmpfs,
            "filling a tmpfs past the memory limit is an OOM kill (137), not a failed run"
        ),
        check!(
            tmpfs_sizes,
            "/tmp, the working directory and /dev/shm are sized as reported: tmpfs_size, else the memory limit, at most 1 GiB (/dev/shm 64 MiB)"
        ),
        check!(
            strict_mode,
            "strict mode refuses, before running, what the backend cannot enforce"
        ),
        check!(
            enforcement_report,
            "every requested constraint is in the report; each one not enforced warns"
        ),
        check!(streaming, "output streams while the command runs"),
        check!(
            long_lived,
            "a long-lived sandbox supports exec, copy in/out, logs, stop and remove"
        ),
    ]
    .into_iter()
    .chain(super::probe::all())
    .chain(super::syscalls::all())
    .chain(super::config_image::all())
    .chain(super::detached::all())
    .collect()
}

pub(super) fn sh(script: &str) -> Cmd {
    Cmd::shell(script)
}

pub(super) fn expect(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

pub(super) fn show(r: &RunResult) -> String {
    format!(
        "{} stdout={:?} stderr={:?}",
        r.status_line(),
        truncate(&r.stdout_lossy()),
        truncate(&r.stderr_lossy())
    )
}

fn truncate(s: &str) -> String {
    if s.len() > 400 {
        let mut end = 400;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s.to_string()
    }
}

/// For a property the backend does not claim: the run must say so, with a
/// reason and a warning. Returns the matching outcome.
pub(super) async fn reported_not_enforced(
    h: &Harness,
    spec: &SandboxSpec,
    c: Constraint,
) -> CheckResult {
    let r = h.run(spec, Cmd::new("true")).await?;
    match r.enforcement.status(c) {
        Some(Status::NotEnforced { reason }) if !reason.is_empty() => {}
        other => {
            return Err(format!(
                "backend does not claim {c} but the run reports {other:?} for it"
            ))
        }
    }
    let needle = format!("backend cannot enforce {}", c.describe());
    expect(
        r.enforcement.warnings().iter().any(|w| w.contains(&needle)),
        || {
            format!(
                "no warning containing `{needle}` in {:?}",
                r.enforcement.warnings()
            )
        },
    )?;
    Ok(Outcome::ReportedNotEnforced(c))
}

/// A name unlikely to clash with anything else on the machine.
pub(super) fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A fresh host directory, world-writable so any sandbox uid may write to it.
pub(super) fn host_dir(label: &str) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(unique(&format!("cleanroom-conformance-{label}")));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    set_mode(&dir, 0o777)?;
    Ok(dir)
}

pub(super) fn set_mode(p: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", p.display()))
}

async fn exit_codes(h: &Harness) -> CheckResult {
    let spec = h.spec();
    for (script, want) in [("exit 0", 0), ("exit 3", 3), ("exit 255", 255)] {
        let r = h.run(&spec, sh(script)).await?;
        expect(
            r.exit_code == want && r.signal.is_none() && !r.timed_out,
            || format!("`{script}` gave {}", show(&r)),
        )?;
    }
    let r = h.run(&spec, Cmd::new("false")).await?;
    expect(r.exit_code == 1 && !r.success(), || {
        format!("`false` gave {}", show(&r))
    })?;
    Ok(Outcome::Verified)
}

async fn command_not_found(h: &Harness) -> CheckResult {
    let program = "cleanroom-no-such-program";
    match h.backend.run(&h.spec(), Cmd::new(program)).await {
        Ok(r) => expect(r.exit_code == 127, || {
            format!("missing program gave {} (want exit 127)", show(&r))
        })?,
        Err(e) => expect(e.to_string().contains(program), || {
            format!("error for a missing program does not name it: {e}")
        })?,
    }
    Ok(Outcome::Verified)
}

async fn signal_exit(h: &Harness) -> CheckResult {
    for sig in [9, 15] {
        let r = h.run(&h.spec(), sh(&format!("kill -{sig} $$"))).await?;
        expect(
            r.signal == Some(sig) && r.exit_code == 128 + sig && !r.timed_out,
            || format!("self-kill with {sig} gave {}", show(&r)),
        )?;
    }
    Ok(Outcome::Verified)
}

async fn timeout_kills_tree(h: &Harness) -> CheckResult {
    let spec = h.spec();
    let started = Instant::now();
    let r = h
        .run(
            &spec,
            sh("sleep 100 & sleep 100").timeout(Duration::from_secs(1)),
        )
        .await?;
    expect(r.timed_out && !r.success(), || {
        format!("one-shot past its timeout gave {}", show(&r))
    })?;
    expect(started.elapsed() < Duration::from_secs(30), || {
        format!("timeout of 1 s took {:?} to return", started.elapsed())
    })?;

    // In a long-lived sandbox an exec's timeout must kill its grandchildren
    // too: look for them afterwards.
    let marker = 3000 + (std::process::id() % 997);
    let sb = h
        .backend
        .create(&spec, None)
        .await
        .map_err(|e| format!("create: {e}"))?;
    let outcome = async {
        let r = sb
            .exec(sh(&format!("sleep {marker} & sleep {marker}")).timeout(Duration::from_secs(1)))
            .await
            .map_err(|e| format!("exec: {e}"))?;
        expect(r.timed_out, || {
            format!("exec past its timeout gave {}", show(&r))
        })?;
        let needle = format!("sleep {marker}");
        let mut last = String::new();
        for _ in 0..20 {
            let ps = sb
                .exec(sh("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\000' ' '"))
                .await
                .map_err(|e| format!("exec: {e}"))?;
            last = ps.stdout_lossy().into_owned();
            if !last.contains(&needle) {
                return Ok(Outcome::Verified);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "`{needle}` still running 2 s after the exec timed out: {}",
            truncate(&last)
        ))
    }
    .await;
    let _ = sb.remove().await;
    outcome
}

async fn background_processes_die(h: &Harness) -> CheckResult {
    let started = Instant::now();
    let r = h
        .run(
            &h.spec(),
            sh("sleep 1000 & echo started").timeout(Duration::from_secs(30)),
        )
        .await?;
    expect(
        r.exit_code == 0 && !r.timed_out && r.stdout == b"started\n",
        || format!("gave {}", show(&r)),
    )?;
    expect(started.elapsed() < Duration::from_secs(15), || {
        format!(
            "the run waited {:?} for a background process",
            started.elapsed()
        )
    })?;
    Ok(Outcome::Verified)
}

async fn stdout_stderr_separate(h: &Harness) -> CheckResult {
    let r = h
        .run(&h.spec(), sh("echo out; echo err >&2; echo out2; exit 3"))
        .await?;
    expect(
        r.stdout == b"out\nout2\n" && r.stderr == b"err\n" && r.exit_code == 3,
        || format!("gave {}", show(&r)),
    )?;
    Ok(Outcome::Verified)
}

async fn non_utf8_output(h: &Harness) -> CheckResult {
    let r = h
        .run(
            &h.spec(),
            sh("printf '\\377\\376abc\\000z'; printf '\\200' >&2"),
        )
        .await?;
    expect(
        r.stdout == b"\xff\xfeabc\x00z" && r.stderr == b"\x80",
        || format!("stdout={:?} stderr={:?}", r.stdout, r.stderr),
    )?;
    Ok(Outcome::Verified)
}

async fn large_output_no_deadlock(h: &Harness) -> CheckResult {
    const SIZE: u64 = 50 << 20;
    let spec = SandboxSpec {
        output_limit: 64 << 20,
        ..h.spec()
    };
    let r = h
        .run(
            &spec,
            sh(&format!(
                "head -c {SIZE} /dev/zero >&2 & head -c {SIZE} /dev/zero; wait"
            ))
            .timeout(Duration::from_secs(120)),
        )
        .await?;
    expect(
        r.exit_code == 0
            && r.stdout.len() as u64 == SIZE
            && r.stderr.len() as u64 == SIZE
            && !r.stdout_truncated
            && !r.stderr_truncated,
        || {
            format!(
                "{}: stdout {} bytes, stderr {} bytes (want {SIZE} each, untruncated)",
                r.status_line(),
                r.stdout.len(),
                r.stderr.len()
            )
        },
    )?;
    Ok(Outcome::Verified)
}

async fn output_truncation(h: &Harness) -> CheckResult {
    let spec = SandboxSpec {
        output_limit: 1 << 20,
        ..h.spec()
    };
    let r = h
        .run(&spec, sh("head -c 5242880 /dev/zero; echo done >&2"))
        .await?;
    expect(
        r.exit_code == 0
            && r.stdout.len() == 1 << 20
            && r.stdout_truncated
            && r.stderr == b"done\n"
            && !r.stderr_truncated,
        || {
            format!(
                "{}: stdout {} bytes truncated={} stderr={:?}",
                r.status_line(),
                r.stdout.len(),
                r.stdout_truncated,
                r.stderr_lossy()
            )
        },
    )?;
    Ok(Outcome::Verified)
}

async fn stdin_bytes(h: &Harness) -> CheckResult {
    let input: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    let r = h
        .run(&h.spec(), Cmd::new("cat").stdin(input.clone()))
        .await?;
    expect(r.exit_code == 0 && r.stdout == input, || {
        format!(
            "{}: got {} bytes back of {} (equal: {})",
            r.status_line(),
            r.stdout.len(),
            input.len(),
            r.stdout == input
        )
    })?;
    Ok(Outcome::Verified)
}

async fn empty_stdin(h: &Harness) -> CheckResult {
    let r = h
        .run(&h.spec(), Cmd::new("cat").timeout(Duration::from_secs(20)))
        .await?;
    expect(
        r.exit_code == 0 && !r.timed_out && r.stdout.is_empty(),
        || format!("`cat` without stdin gave {}", show(&r)),
    )?;
    Ok(Outcome::Verified)
}

fn parse_env(out: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

async fn env_isolation(h: &Harness) -> CheckResult {
    let mut spec = h.spec();
    spec.env.insert("SPEC_VAR".into(), "from-spec".into());
    spec.env.insert("SHARED".into(), "spec".into());
    let cmd = Cmd::new("env")
        .env("CMD_VAR", "from-cmd")
        .env("SHARED", "cmd");
    let want = spec.environment(&cmd.env);
    let r = h.run(&spec, cmd).await?;
    expect(r.exit_code == 0, || format!("`env` gave {}", show(&r)))?;
    let got = parse_env(&r.stdout);
    // Without filesystem isolation the working directory (and so HOME) is a
    // fresh host directory rather than spec.workdir; it must not be the caller's.
    let isolated = h.claims(&spec, Constraint::FilesystemIsolation);
    let host_home = std::env::var("HOME").unwrap_or_default();
    for (k, v) in &got {
        if k == "HOME" && !isolated {
            expect(v.starts_with('/') && *v != host_home, || {
                format!("HOME={v}: want a fresh directory, not the caller's home")
            })?;
            continue;
        }
        if k == CANARY_VAR {
            return Err(format!(
                "host variable {CANARY_VAR} leaked into the sandbox"
            ));
        }
        // Engines may add HOSTNAME; it must then be the fixed hostname.
        if k == "HOSTNAME" && *v == spec.hostname {
            continue;
        }
        match want.get(k) {
            Some(w) if w == v => {}
            Some(w) => return Err(format!("{k}={v}, want {k}={w}")),
            None => return Err(format!("unexpected variable {k}={v} in the sandbox")),
        }
    }
    for (k, v) in &want {
        expect(got.iter().any(|(gk, _)| gk == k), || {
            format!("{k}={v} missing from the sandbox environment")
        })?;
    }
    Ok(Outcome::Verified)
}

async fn workdir(h: &Harness) -> CheckResult {
    let spec = h.spec();
    let isolated = h.claims(&spec, Constraint::FilesystemIsolation);
    let r = h
        .run(&spec, sh("echo hi > ./probe && cat ./probe && pwd"))
        .await?;
    let text = r.stdout_lossy();
    let pwd = text.lines().nth(1).unwrap_or_default().to_string();
    expect(r.exit_code == 0 && text.starts_with("hi\n"), || {
        format!("working directory not writable: {}", show(&r))
    })?;
    if isolated {
        expect(Path::new(&pwd) == spec.workdir, || {
            format!("pwd is {pwd:?}, want {}", spec.workdir.display())
        })?;
    } else {
        let host_cwd = std::env::current_dir().unwrap_or_default();
        expect(Path::new(&pwd) != host_cwd, || {
            "the command ran in the caller's own directory".to_string()
        })?;
    }
    // A script written there runs (Docker mounts tmpfs noexec unless told).
    let r = h
        .run(
            &spec,
            sh("printf '#!/bin/sh\\necho ran\\n' > ./script && chmod +x ./script && ./script"),
        )
        .await?;
    expect(r.exit_code == 0 && r.stdout == b"ran\n", || {
        format!(
            "a script in the working directory does not run: {}",
            show(&r)
        )
    })?;
    // A second run must not see the first one's file.
    let r = h
        .run(&spec, sh("test -e ./probe && echo leftover || echo clean"))
        .await?;
    expect(r.stdout == b"clean\n", || {
        format!("working directory reused: {}", show(&r))
    })?;
    // A command may choose its own directory.
    let target = if isolated { "/tmp" } else { "/" };
    let r = h.run(&spec, Cmd::new("pwd").workdir(target)).await?;
    expect(r.stdout_lossy().trim() == target, || {
        format!("Cmd::workdir({target}) gave {}", show(&r))
    })?;
    Ok(Outcome::Verified)
}

async fn filesystem_isolation(h: &Harness) -> CheckResult {
    let spec = h.spec();
    if !h.claims(&spec, Constraint::FilesystemIsolation) {
        return reported_not_enforced(h, &spec, Constraint::FilesystemIsolation).await;
    }
    let dir = host_dir("secret")?;
    let secret = dir.join("secret.txt");
    std::fs::write(&secret, "host-secret").map_err(|e| e.to_string())?;
    set_mode(&secret, 0o644)?;
    let r = h
        .run(
            &spec,
            sh(&format!(
                "cat {} 2>/dev/null; echo x > /tmp/t && cat /tmp/t",
                secret.display()
            )),
        )
        .await;
    let _ = std::fs::remove_dir_all(&dir);
    let r = r?;
    expect(!r.stdout_lossy().contains("host-secret"), || {
        format!("an unmounted host file was readable: {}", show(&r))
    })?;
    expect(r.stdout == b"x\n", || {
        format!("/tmp not writable: {}", show(&r))
    })?;
    Ok(Outcome::Verified)
}

async fn read_only_root(h: &Harness) -> CheckResult {
    let spec = SandboxSpec {
        user: User::ROOT,
        ..h.spec()
    };
    if !h.claims(&spec, Constraint::ReadOnlyRoot) {
        return reported_not_enforced(h, &spec, Constraint::ReadOnlyRoot).await;
    }
    let r = h
        .run(
            &spec,
            sh("echo x > /cleanroom-ro-probe; echo x > /etc/cleanroom-ro-probe"),
        )
        .await?;
    expect(
        r.exit_code != 0 && r.stderr_lossy().contains("Read-only file system"),
        || format!("writing to / as uid 0 gave {}", show(&r)),
    )?;
    Ok(Outcome::Verified)
}

async fn writable_root_discarded(h: &Harness) -> CheckResult {
    let spec = SandboxSpec {
        user: User::ROOT,
        read_only_root: false,
        ..h.spec()
    };
    if !h.claims(&spec, Constraint::FilesystemIsolation) {
        return reported_not_enforced(h, &spec, Constraint::FilesystemIsolation).await;
    }
    let name = unique("/cleanroom-rw-probe");
    let r = h
        .run(&spec, sh(&format!("echo x > {name} && cat {name}")))
        .await?;
    expect(r.stdout == b"x\n", || {
        format!("writing to a writable root failed: {}", show(&r))
    })?;
    expect(!Path::new(&name).exists(), || {
        format!("{name} reached the host")
    })?;
    let r = h
        .run(
            &spec,
            sh(&format!("test -e {name} && echo kept || echo gone")),
        )
        .await?;
    expect(r.stdout == b"gone\n", || {
        format!("a write survived into the next sandbox: {}", show(&r))
    })?;
    Ok(Outcome::Verified)
}

async fn mounts(h: &Harness) -> CheckResult {
    let dir = host_dir("mount")?;
    let file = dir.join("data.txt");
    std::fs::write(&file, "mounted-data").map_err(|e| e.to_string())?;
    set_mode(&file, 0o666)?;
    let mut spec = h.spec();
    spec.mounts.push(Mount::read_only(&dir, "/data"));
    if !h.claims(&spec, Constraint::Mounts) {
        let res = reported_not_enforced(h, &spec, Constraint::Mounts).await;
        let _ = std::fs::remove_dir_all(&dir);
        return res;
    }
    let result = async {
        let r = h
            .run(
                &spec,
                sh("cat /data/data.txt; echo x > /data/new; echo x >> /data/data.txt"),
            )
            .await?;
        expect(r.stdout == b"mounted-data" && r.exit_code != 0, || {
            format!("read-only mount: {}", show(&r))
        })?;
        expect(!dir.join("new").exists(), || {
            "a read-only mount let a file through to the host".into()
        })?;
        spec.mounts[0].read_only = false;
        let r = h.run(&spec, sh("echo written > /data/new")).await?;
        let back = std::fs::read_to_string(dir.join("new")).unwrap_or_default();
        expect(r.exit_code == 0 && back == "written\n", || {
            format!("read-write mount: {} host sees {back:?}", show(&r))
        })?;
        Ok(Outcome::Verified)
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn user(h: &Harness) -> CheckResult {
    let spec = h.spec();
    if !h.claims(&spec, Constraint::User) {
        return reported_not_enforced(h, &spec, Constraint::User).await;
    }
    let r = h.run(&spec, sh("id -u; id -g")).await?;
    let want = format!("{}\n{}\n", spec.user.uid, spec.user.gid);
    expect(r.stdout_lossy() == want, || {
        format!("want {want:?}, got {}", show(&r))
    })?;
    Ok(Outcome::Verified)
}

/// `Name:\tvalue` lines of /proc/self/status as seen inside.
async fn proc_status(h: &Harness, spec: &SandboxSpec) -> Result<Vec<(String, String)>, String> {
    let r = h
        .run(spec, Cmd::new("cat").arg("/proc/self/status"))
        .await?;
    expect(r.exit_code == 0, || {
        format!("reading /proc/self/status: {}", show(&r))
    })?;
    Ok(r.stdout_lossy()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

fn field<'a>(status: &'a [(String, String)], key: &str) -> &'a str {
    status
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

async fn capabilities(h: &Harness) -> CheckResult {
    let spec = h.spec();
    if !h.claims(&spec, Constraint::Capabilities) {
        return reported_not_enforced(h, &spec, Constraint::Capabilities).await;
    }
    // Even uid 0 inside must hold nothing.
    for user in [spec.user, User::ROOT] {
        let s = SandboxSpec {
            user,
            ..spec.clone()
        };
        let status = proc_status(h, &s).await?;
        for key in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            let v = field(&status, key);
            expect(!v.is_empty() && v.chars().all(|c| c == '0'), || {
                format!("as {user}: {key} is {v:?}, want all zero")
            })?;
        }
    }
    Ok(Outcome::Verified)
}

async fn no_new_privs(h: &Harness) -> CheckResult {
    let spec = h.spec();
    if !h.claims(&spec, Constraint::NoNewPrivs) {
        return reported_not_enforced(h, &spec, Constraint::NoNewPrivs).await;
    }
    let status = proc_status(h, &spec).await?;
    let v = field(&status, "NoNewPrivs");
    expect(v == "1", || format!("NoNewPrivs is {v:?}"))?;
    Ok(Outcome::Verified)
}

async fn seccomp(h: &Harness) -> CheckResult {
    let spec = h.spec();
    if !h.claims(&spec, Constraint::Seccomp) {
        return reported_not_enforced(h, &spec, Constraint::Seccomp).await;
    }
    let status = proc_status(h, &spec).await?;
    let v = field(&status, "Seccomp");
    expect(v == "2", || format!("Seccomp is {v:?}, want 2 (filter)"))?;
    Ok(Outcome::Verified)
}

/// The namespace link of the test process, to compare with the sandbox's.
pub(super) fn own_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

async fn sandbox_ns(h: &Harness, spec: &SandboxSpec, kind: &str) -> Result<String, String> {
    let r = h
        .run(
            spec,
            Cmd::new("readlink").arg(format!("/proc/self/ns/{kind}")),
        )
        .await?;
    expect(r.exit_code == 0, || {
        format!("readlink ns/{kind}: {}", show(&r))
    })?;
    Ok(r.stdout_lossy().trim().to_string())
}

async fn network_none(h: &Harness) -> CheckResult {
    let spec = h.spec();
    if !h.claims(&spec, Constraint::NetworkIsolation) {
        return reported_not_enforced(h, &spec, Constraint::NetworkIsolation).await;
    }
    let inside = sandbox_ns(h, &spec, "net").await?;
    expect(inside != own_ns("net"), || {
        format!("the sandbox shares the caller's network namespace {inside}")
    })?;
    let r = h.run(&spec, Cmd::new("cat").arg("/proc/net/dev")).await?;
    let ifaces: Vec<String> = r
        .stdout_lossy()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|s| s.trim().to_string())
        .collect();
    expect(ifaces == ["lo"], || {
        format!("interfaces inside: {ifaces:?}, want only lo")
    })?;
    Ok(Outcome::Verified)
}

async fn pid_namespace(h: &Harness) -> CheckResult {
    let spec = h.spec();
    if !h.claims(&spec, Constraint::PidNamespace) {
        return reported_not_enforced(h, &spec, Constraint::PidNamespace).await;
    }
    let inside = sandbox_ns(h, &spec, "pid").await?;
    expect(inside != own_ns("pid"), || {
        format!("the sandbox shares the caller's PID namespace {inside}")
    })?;
    let r = h.run(&spec, sh("ls /proc | grep -c '^[0-9]'")).await?;
    let count: u32 = r.stdout_lossy().trim().parse().unwrap_or(u32::MAX);
    expect(count < 10, || {
        format!("{count} processes visible inside, want only the sandbox's own")
    })?;
    Ok(Outcome::Verified)
}

async fn hostname(h: &Harness) -> CheckResult {
    let spec = SandboxSpec {
        hostname: "conformance-host".into(),
        ..h.spec()
    };
    if !h.claims(&spec, Constraint::Hostname) {
        return reported_not_enforced(h, &spec, Constraint::Hostname).await;
    }
    let r = h
        .run(&spec, Cmd::new("cat").arg("/proc/sys/kernel/hostname"))
        .await?;
    expect(r.stdout == b"conformance-host\n", || {
        format!("hostname: {}", show(&r))
    })?;
    Ok(Outcome::Verified)
}

async fn umask(h: &Harness) -> CheckResult {
    let r = h.run(&h.spec(), sh("umask")).await?;
    expect(r.stdout_lossy().trim() == "0022", || {
        format!("umask: {}", show(&r))
    })?;
    Ok(Outcome::Verified)
}

async fn pids_limit(h: &Harness) -> CheckResult {
    let spec = SandboxSpec {
        pids: Some(24),
        ..h.spec()
    };
    if !h.claims(&spec, Constraint::PidsLimit) {
        return reported_not_enforced(h, &spec, Constraint::PidsLimit).await;
    }
    let started = Instant::now();
    let r = h
        .run(
            &spec,
            sh("i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; echo started-all")
                .timeout(Duration::from_secs(60)),
        )
        .await?;
    expect(!r.stdout_lossy().contains("started-all"), || {
        format!("200 processes started under a limit of 24: {}", show(&r))
    })?;
    expect(
        !r.timed_out && started.elapsed() < Duration::from_secs(25),
        || {
            format!(
                "the run did not end cleanly after hitting the limit ({:?}): {}",
                started.elapsed(),
                show(&r)
            )
        },
    )?;
    Ok(Outcome::Verified)
}

async fn memory_limit(h: &Harness) -> CheckResult {
    let spec = SandboxSpec {
        memory: Some(64 << 20),
        ..h.spec()
    };
    if !h.claims(&spec, Constraint::MemoryLimit) {
        return reported_not_enforced(h, &spec, Constraint::MemoryLimit).await;
    }
    // A shell string that doubles until the limit stops it.
    let r = h
        .run(
            &spec,
            sh("x=0123456789abcdef; while :; do x=\"$x$x\"; done").timeout(Duration::from_secs(60)),
        )
        .await?;
    expect(r.oom_killed && !r.success() && !r.timed_out, || {
        format!("over the memory limit: {}", show(&r))
    })?;
    // Under the limit, the same spec runs normally.
    let r = h.run(&spec, Cmd::new("true")).await?;
    expect(r.success() && !r.oom_killed, || {
        format!("`true` under the memory limit: {}", show(&r))
    })?;
    Ok(Outcome::Verified)
}

async fn memory_limit_tmpfs(h: &Harness) -> CheckResult {
    let spec = SandboxSpec {
        memory: Some(64 << 20),
        ..h.spec()
    };
    if !h.claims(&spec, Constraint::MemoryLimit) {
        return reported_not_enforced(h, &spec, Constraint::MemoryLimit).await;
    }
    // tmpfs pages count against the limit but belong to no process: the
    // OOM killer must still pick the command, never the backend's own
    // helpers (the run has a result, and says why it ended).
    let file = spec.workdir.join("big");
    let r = h
        .run(
            &spec,
            sh(&format!(
                "dd if=/dev/zero of={} bs=1M count=200",
                file.display()
            ))
            .timeout(Duration::from_secs(60)),
        )
        .await?;
    expect(r.oom_killed && r.exit_code == 137 && !r.timed_out, || {
        format!(
            "200 MiB into the working directory under 64 MiB: {}",
            show(&r)
        )
    })?;
    Ok(Outcome::Verified)
}

/// The `size=` of the mount at `target` in a `/proc/mounts` text, in bytes.
fn mounted_size(mounts: &str, target: &Path) -> Option<u64> {
    let target = target.to_str()?;
    mounts
        .lines()
        .rfind(|l| l.split(' ').nth(1) == Some(target))?
        .split(' ')
        .nth(3)?
        .split(',')
        .find_map(|o| o.strip_prefix("size="))
        .and_then(|v| match v.strip_suffix('k') {
            Some(k) => k.parse::<u64>().ok().map(|n| n << 10),
            None => v.parse().ok(),
        })
}

async fn tmpfs_sizes(h: &Harness) -> CheckResult {
    let defaults = h.spec();
    let set = SandboxSpec {
        tmpfs_size: Some(48 << 20),
        ..h.spec()
    };
    for spec in [&defaults, &set] {
        let wanted = spec.tmpfs_mounts();
        let report = h.backend.enforcement(spec).tmpfs;
        if report.is_empty() {
            // A backend without its own tmpfs mounts (local) must not
            // claim filesystem isolation either.
            if h.claims(spec, Constraint::FilesystemIsolation) {
                return Err(format!(
                    "the report lists no tmpfs sizes, though the backend isolates the                      filesystem; want {wanted:?}"
                ));
            }
            return reported_not_enforced(h, spec, Constraint::FilesystemIsolation).await;
        }
        expect(report == wanted, || {
            format!("the report lists tmpfs {report:?}, want {wanted:?}")
        })?;
        let r = h.run(spec, Cmd::new("cat").arg("/proc/mounts")).await?;
        let mounts = r.stdout_lossy();
        for t in &wanted {
            let want = t.size.unwrap_or_default();
            let got = mounted_size(&mounts, &t.target);
            // The kernel rounds up to whole pages.
            expect(
                got.is_some_and(|g| g >= want && g - want < 64 << 10),
                || {
                    format!(
                        "tmpfs {} is {got:?} bytes, want {want} (tmpfs_size {:?}): {}",
                        t.target.display(),
                        spec.tmpfs_size,
                        show(&r)
                    )
                },
            )?;
        }
    }
    Ok(Outcome::Verified)
}

async fn strict_mode(h: &Harness) -> CheckResult {
    let marker = std::env::temp_dir().join(unique("cleanroom-strict-marker"));
    let spec = SandboxSpec {
        strict: true,
        memory: Some(256 << 20),
        pids: Some(256),
        cpus: Some(1.0),
        ..h.spec()
    };
    let enforcement = h.backend.enforcement(&spec);
    let res = h
        .backend
        .run(&spec, sh(&format!("echo ran > {}", marker.display())))
        .await;
    let ran = marker.exists();
    let _ = std::fs::remove_file(&marker);
    if enforcement.unenforced().is_empty() {
        let r = res.map_err(|e| format!("strict run with everything enforced failed: {e}"))?;
        expect(r.exit_code == 0, || format!("strict run: {}", show(&r)))?;
    } else {
        match res {
            Err(Error::NotEnforceable { unenforced, .. }) => {
                expect(!unenforced.is_empty(), || {
                    "empty list of unenforced constraints".into()
                })?
            }
            other => {
                return Err(format!(
                    "strict mode with {:?} not enforced gave {other:?}, want Error::NotEnforceable",
                    enforcement.unenforced()
                ))
            }
        }
        expect(!ran, || {
            "strict mode refused but the command ran anyway".into()
        })?;
    }
    Ok(Outcome::Verified)
}

async fn enforcement_report(h: &Harness) -> CheckResult {
    let mut spec = SandboxSpec {
        memory: Some(256 << 20),
        pids: Some(256),
        cpus: Some(1.0),
        ..h.spec()
    };
    spec.mounts
        .push(Mount::read_only(std::env::temp_dir(), "/hosttmp"));
    let planned = h.backend.enforcement(&spec);
    let r = h.run(&spec, Cmd::new("true")).await?;
    expect(r.backend == h.backend.name(), || {
        format!(
            "result names backend {:?}, want {:?}",
            r.backend,
            h.backend.name()
        )
    })?;
    for c in Constraint::requested_by(&spec) {
        expect(r.enforcement.status(c).is_some(), || {
            format!("the report has no entry for requested constraint {c}")
        })?;
        expect(r.enforcement.status(c) == planned.status(c), || {
            format!(
                "{c}: planned {:?} but the run reports {:?}",
                planned.status(c),
                r.enforcement.status(c)
            )
        })?;
    }
    let warnings = r.enforcement.warnings();
    for (c, _) in r.enforcement.unenforced() {
        let needle = format!(
            "WARN: {} backend cannot enforce {}",
            h.backend.name(),
            c.describe()
        );
        expect(warnings.iter().any(|w| w.starts_with(&needle)), || {
            format!("no `{needle}` warning in {warnings:?}")
        })?;
    }
    expect(
        r.enforcement.notes.iter().any(|n| n.contains("clock")),
        || "the report does not say the wall clock could not be fixed".into(),
    )?;
    Ok(Outcome::Verified)
}

async fn streaming(h: &Harness) -> CheckResult {
    let (tx, mut rx) = output_channel(16);
    let backend = h.backend.clone();
    let spec = h.spec();
    let task = tokio::spawn(async move {
        backend
            .run_streaming(
                &spec,
                sh("echo first; sleep 3; echo second").timeout(Duration::from_secs(60)),
                Some(tx),
            )
            .await
    });
    let first = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .map_err(|_| "no output streamed within 20 s".to_string())?
        .ok_or("the stream closed with no output")?;
    expect(!task.is_finished(), || {
        "output arrived only after the command finished".into()
    })?;
    expect(
        first.stream == Stream::Stdout && first.bytes == b"first\n",
        || format!("first chunk {first:?}"),
    )?;
    let r = task
        .await
        .map_err(|e| format!("run task: {e}"))?
        .map_err(|e| format!("run: {e}"))?;
    expect(r.stdout == b"first\nsecond\n", || {
        format!("captured output besides streaming: {}", show(&r))
    })?;
    Ok(Outcome::Verified)
}

async fn long_lived(h: &Harness) -> CheckResult {
    let spec = h.spec();
    let main = sh("echo service-up; echo service-err >&2; exec sleep 1000");
    let sb = h
        .backend
        .create(&spec, Some(main))
        .await
        .map_err(|e| format!("create: {e}"))?;
    let host = host_dir("copy")?;
    let result = async {
        expect(
            !sb.id().is_empty() && sb.backend() == h.backend.name(),
            || format!("sandbox id {:?} backend {:?}", sb.id(), sb.backend()),
        )?;
        let r = sb
            .exec(sh("echo one"))
            .await
            .map_err(|e| format!("exec: {e}"))?;
        expect(r.stdout == b"one\n", || format!("exec: {}", show(&r)))?;

        // State persists between execs of one sandbox.
        sb.exec(sh("echo kept > ./state"))
            .await
            .map_err(|e| format!("exec: {e}"))?;
        let r = sb
            .exec(Cmd::new("cat").arg("state"))
            .await
            .map_err(|e| format!("exec: {e}"))?;
        expect(r.stdout == b"kept\n", || {
            format!("state between execs: {}", show(&r))
        })?;

        let src = host.join("in.txt");
        std::fs::write(&src, b"copied\xffin").map_err(|e| e.to_string())?;
        set_mode(&src, 0o644)?;
        sb.copy_in(&src, &spec.workdir.join("in.txt"))
            .await
            .map_err(|e| format!("copy_in: {e}"))?;
        let r = sb
            .exec(Cmd::new("cat").arg("in.txt"))
            .await
            .map_err(|e| format!("exec: {e}"))?;
        expect(r.stdout == b"copied\xffin", || {
            format!("after copy_in: {}", show(&r))
        })?;

        sb.exec(sh("printf made > out.txt"))
            .await
            .map_err(|e| format!("exec: {e}"))?;
        let dst = host.join("out.txt");
        sb.copy_out(&spec.workdir.join("out.txt"), &dst)
            .await
            .map_err(|e| format!("copy_out: {e}"))?;
        let back = std::fs::read(&dst).map_err(|e| format!("reading {}: {e}", dst.display()))?;
        expect(back == b"made", || format!("copy_out gave {back:?}"))?;

        let mut logs = sb.logs().await.map_err(|e| format!("logs: {e}"))?;
        for _ in 0..50 {
            if logs.stdout.ends_with(b"service-up\n") && logs.stderr.ends_with(b"service-err\n") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            logs = sb.logs().await.map_err(|e| format!("logs: {e}"))?;
        }
        expect(
            logs.stdout == b"service-up\n" && logs.stderr == b"service-err\n",
            || {
                format!(
                    "logs stdout={:?} stderr={:?}",
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                )
            },
        )?;

        sb.stop().await.map_err(|e| format!("stop: {e}"))?;
        sb.remove().await.map_err(|e| format!("remove: {e}"))?;
        sb.remove()
            .await
            .map_err(|e| format!("a second remove must be a no-op: {e}"))?;
        expect(sb.exec(Cmd::new("true")).await.is_err(), || {
            "exec after remove succeeded".into()
        })?;
        Ok(Outcome::Verified)
    }
    .await;
    let _ = sb.remove().await;
    let _ = std::fs::remove_dir_all(&host);
    result
}
