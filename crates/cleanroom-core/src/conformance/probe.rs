//! The same bytes on every backend: one probe command prints what a
//! sandbox's process starts with (environment, hostname, umask, ids,
//! working directory and its mode, file and process limits), and its
//! output must be exactly what the spec predicts, so any two isolating
//! backends print the same.

use super::checks::{check, expect, reported_not_enforced, show};
use super::{Check, CheckFuture, CheckResult, Harness, Outcome};
use crate::cmd::Cmd;
use crate::enforcement::Constraint;
use crate::spec::{SandboxSpec, DEFAULT_NOFILE, DEFAULT_NPROC, WORKDIR_MODE};

/// The probe, for busybox `sh` and Debian's `dash` alike. The environment
/// is the shell's own from exec time (`/proc/$$/environ`), before a shell
/// adds `PWD`, `SHLVL` or a `PATH` of its own.
pub const PROBE_SCRIPT: &str = r#"echo '[env]'
tr '\000' '\n' < /proc/$$/environ | sort
echo '[identity]'
echo "hostname=$(cat /proc/sys/kernel/hostname)"
echo "umask=$(umask)"
echo "uid=$(id -u) gid=$(id -g)"
echo '[workdir]'
echo "cwd=$(pwd)"
echo "mode=$(stat -c '%a %u %g' .)"
echo '[limits]'
sed -n -e 's/^Max processes  *\([^ ]*\)  *\([^ ]*\).*/nproc=\1:\2/p' \
    -e 's/^Max open files  *\([^ ]*\)  *\([^ ]*\).*/nofile=\1:\2/p' /proc/self/limits
"#;

/// The probe as a command.
pub fn probe_cmd() -> Cmd {
    Cmd::shell(PROBE_SCRIPT)
}

/// What the probe prints in a sandbox made from `spec` (with no command
/// environment of its own): the contract's values, nothing of the backend's.
pub fn expected_probe(spec: &SandboxSpec) -> String {
    let mut out = String::from("[env]\n");
    let mut env: Vec<String> = spec
        .environment(&Default::default())
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    // `sort` in the sandbox orders lines bytewise, as this does.
    env.sort();
    for line in env {
        out.push_str(&line);
        out.push('\n');
    }
    let u = spec.user;
    out.push_str(&format!(
        "[identity]\nhostname={}\numask=0022\nuid={} gid={}\n",
        spec.hostname, u.uid, u.gid
    ));
    out.push_str(&format!(
        "[workdir]\ncwd={}\nmode={WORKDIR_MODE:o} {} {}\n",
        spec.workdir.display(),
        u.uid,
        u.gid
    ));
    out.push_str(&format!(
        "[limits]\nnproc={DEFAULT_NPROC}:{DEFAULT_NPROC}\nnofile={DEFAULT_NOFILE}:{DEFAULT_NOFILE}\n"
    ));
    out
}

pub(super) fn all() -> Vec<Check> {
    vec![check!(
        same_bytes,
        "one probe (env, hostname, umask, ids, workdir and its mode, nofile/nproc) prints what the spec predicts"
    )]
}

async fn same_bytes(h: &Harness) -> CheckResult {
    let spec = h.spec();
    // Without isolation the working directory, hostname and limits are the
    // host's, and the report says so.
    for c in [Constraint::FilesystemIsolation, Constraint::Hostname] {
        if !h.claims(&spec, c) {
            return reported_not_enforced(h, &spec, c).await;
        }
    }
    let r = h.run(&spec, probe_cmd()).await?;
    expect(r.exit_code == 0, || {
        format!("the probe failed: {}", show(&r))
    })?;
    let got = r.stdout_lossy();
    let want = expected_probe(&spec);
    expect(got == want, || {
        let diff: Vec<String> = want
            .lines()
            .zip(got.lines().chain(std::iter::repeat("<missing>")))
            .filter(|(w, g)| w != g)
            .map(|(w, g)| format!("want `{w}`, got `{g}`"))
            .collect();
        format!(
            "the probe's output differs from the contract's: {}; whole output: {got:?}",
            diff.join("; ")
        )
    })?;
    Ok(Outcome::Verified)
}
