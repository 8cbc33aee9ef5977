//! The `local` backend: a plain child process on the host.
//!
//! It isolates what a process can isolate without privileges or unsafe
//! set-up — a cleared environment, a fresh temporary working directory, its
//! own process group killed on timeout or exit, bounded output — and reports
//! everything else as not enforced, with a warning.

mod process;
mod sandbox;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use cleanroom_core::{
    Availability, Backend, Cmd, Constraint, Enforcement, Error, OutputSink, Prepared, Removed,
    Result, RunResult, Sandbox, SandboxSpec,
};

pub use sandbox::LocalSandbox;

use process::Launch;

/// Runs commands as plain host processes. Always available; isolates little.
///
/// A one-shot run ([`Backend::run`]) works in a fresh, empty directory, so
/// a program given as a relative path with a `/` in it
/// (`./target/debug/mycli`) is found from the caller's current directory,
/// as in a shell there; a bare name (`echo`) is looked up in `PATH`. In a
/// long-lived sandbox ([`Backend::create`]) a relative path stays relative
/// to the sandbox's working directory, where [`Sandbox::copy_in`] puts files.
#[derive(Clone, Debug, Default)]
pub struct LocalBackend {
    _private: (),
}

impl LocalBackend {
    pub fn new() -> Self {
        LocalBackend::default()
    }
}

const NAME: &str = "local";

/// The report for `spec`: what a plain child process can and cannot promise.
pub(crate) fn local_enforcement(spec: &SandboxSpec) -> Enforcement {
    use Constraint::*;
    let mut e = Enforcement::new(NAME);
    let plain = "a plain host process; use the native backend for isolation";
    e.enforced(EnvIsolation)
        .enforced(Timeout)
        .enforced(OutputLimit)
        .not_enforced(
            FilesystemIsolation,
            "the command sees the host filesystem; only its working directory is fresh",
        )
        .not_enforced(
            ReadOnlyRoot,
            "the host filesystem is as writable as for the caller",
        )
        .not_enforced(NetworkIsolation, "the command shares the host network")
        .not_enforced(Capabilities, plain)
        .not_enforced(NoNewPrivs, plain)
        .not_enforced(Seccomp, plain)
        .not_enforced(
            PidNamespace,
            "host processes are visible and can be signalled",
        )
        .not_enforced(Hostname, "the host's hostname is visible")
        .not_enforced(MemoryLimit, "no cgroup; use the native backend for limits")
        .not_enforced(CpuLimit, "no cgroup; use the native backend for limits")
        .not_enforced(PidsLimit, "no cgroup; use the native backend for limits")
        .not_enforced(
            Mounts,
            "no mount namespace: sources stay at their host paths, not at the targets",
        )
        .not_enforced(
            PublishPorts,
            "no network namespace: ports are the host's own",
        );
    // Honest about the one case where the user is right anyway.
    let (uid, gid) = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    if (uid, gid) == (spec.user.uid, spec.user.gid) {
        e.enforced(User);
    } else {
        e.not_enforced(
            User,
            format!("runs as the calling user {uid}:{gid}, not {}", spec.user),
        );
    }
    e.restrict_to(spec)
}

/// Temporary directories are named `cleanroom-local-<owner pid>-...` so
/// that `gc` can tell a dead owner's from a live one's.
const DIR_PREFIX: &str = "cleanroom-local-";

/// A fresh private working directory, removed when dropped.
pub(crate) fn fresh_workdir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
        .tempdir()
        .map_err(|e| Error::io("creating the local backend's working directory", e))
}

/// Removes working directories whose owning process is gone.
fn gc_workdirs(tmp: &Path) -> Result<Vec<Removed>> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(tmp) {
        Ok(e) => e,
        Err(e) => return Err(Error::io(format!("listing {}", tmp.display()), e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) = name
            .strip_prefix(DIR_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if cleanroom_core::process_alive(owner) {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_dir_all(&path) {
            Ok(()) => removed.push(Removed::one(
                Removed::TEMP,
                format!(
                    "local: removed {} (owner pid {owner} is gone)",
                    path.display()
                ),
            )),
            Err(e) => tracing::warn!("local: could not remove {}: {e}", path.display()),
        }
    }
    Ok(removed)
}

/// Where a sandbox path lands on the host: the spec's working directory is
/// the fresh temporary one; other absolute paths are the host's own.
pub(crate) fn host_path(spec: &SandboxSpec, tmp: &Path, p: &Path) -> PathBuf {
    match p.strip_prefix(&spec.workdir) {
        Ok(rest) => tmp.join(rest),
        Err(_) if p.is_relative() => tmp.join(p),
        Err(_) => p.to_path_buf(),
    }
}

/// A relative program path with a `/` in it (`./target/debug/mycli`), made
/// absolute against the caller's current directory; other programs as they
/// are. For one-shot runs in the fresh working directory: it is empty, so
/// such a path can only mean the caller's file. (In a long-lived sandbox it
/// stays relative to the sandbox's working directory, where `copy_in` puts
/// files.)
pub(crate) fn from_caller_dir(program: &str) -> Result<String> {
    let path = Path::new(program);
    if !program.contains('/') || path.is_absolute() {
        return Ok(program.to_string());
    }
    let cwd = std::env::current_dir().map_err(|e| {
        Error::io(
            format!("reading the current directory to find `{program}`"),
            e,
        )
    })?;
    let full = cwd.join(path.strip_prefix(".").unwrap_or(path));
    full.into_os_string().into_string().map_err(|full| {
        Error::InvalidSpec(format!(
            "`{program}` resolves to {}, which is not UTF-8; give the program as an absolute path",
            Path::new(&full).display()
        ))
    })
}

/// The environment of a command whose working directory is `tmp`.
pub(crate) fn environment(
    spec: &SandboxSpec,
    cmd: &Cmd,
    tmp: &Path,
) -> std::collections::BTreeMap<String, String> {
    let mut env = spec.environment(&cmd.env);
    if !spec.env.contains_key("HOME") && !cmd.env.contains_key("HOME") {
        env.insert("HOME".into(), tmp.display().to_string());
    }
    env
}

#[async_trait]
impl Backend for LocalBackend {
    fn name(&self) -> &str {
        NAME
    }

    async fn availability(&self) -> Availability {
        Availability::yes(
            "a plain child process needs nothing; it enforces little (see the report)",
        )
    }

    async fn can_honour(&self, spec: &SandboxSpec) -> std::result::Result<(), String> {
        match spec.rootfs {
            cleanroom_core::RootFs::Host => Ok(()),
            ref other => Err(format!(
                "it runs on the host's own filesystem and cannot use the rootfs `{other}`"
            )),
        }
    }

    fn enforcement(&self, spec: &SandboxSpec) -> Enforcement {
        local_enforcement(spec)
    }

    async fn run_prepared(
        &self,
        spec: &SandboxSpec,
        mut cmd: Cmd,
        sink: Option<OutputSink>,
        prepared: Prepared,
    ) -> Result<RunResult> {
        let tmp = fresh_workdir()?;
        let cwd = match &cmd.workdir {
            Some(w) => host_path(spec, tmp.path(), w),
            None => {
                cmd.program = from_caller_dir(&cmd.program)?;
                tmp.path().to_path_buf()
            }
        };
        let timeout = cmd.timeout.or(spec.timeout);
        let env = environment(spec, &cmd, tmp.path());
        let started = process::start(
            Launch {
                cmd,
                env,
                cwd: &cwd,
                output_limit: spec.output_limit,
            },
            sink,
        )?;
        let result = started.finish(timeout, prepared.into_enforcement()).await;
        drop(tmp);
        result
    }

    async fn create_prepared(
        &self,
        spec: &SandboxSpec,
        main: Option<Cmd>,
        prepared: Prepared,
    ) -> Result<Box<dyn Sandbox>> {
        let enforcement = prepared.into_enforcement();
        Ok(Box::new(LocalSandbox::start(
            spec.clone(),
            main,
            enforcement,
        )?))
    }

    async fn gc(&self) -> Result<Vec<Removed>> {
        gc_workdirs(&std::env::temp_dir())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_programs_with_a_slash_are_the_callers() {
        let cwd = std::env::current_dir().unwrap();
        let at = |p: &str| cwd.join(p).display().to_string();
        assert_eq!(
            from_caller_dir("./target/debug/mycli").unwrap(),
            at("target/debug/mycli")
        );
        assert_eq!(from_caller_dir("bin/tool").unwrap(), at("bin/tool"));
        assert_eq!(from_caller_dir("../x/y").unwrap(), at("../x/y"));
        assert_eq!(from_caller_dir("echo").unwrap(), "echo");
        assert_eq!(from_caller_dir("/bin/echo").unwrap(), "/bin/echo");
    }
}
