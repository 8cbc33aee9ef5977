//! The conformance suite: the contract of DESIGN.md as executable checks,
//! written once and run against every backend.
//!
//! Each check asks the backend what it enforces for the spec it uses. Where
//! the backend claims a property, the check proves it with a real command;
//! where it does not, the check proves the run says so (a `not enforced`
//! entry with a reason, and the matching `WARN:` line). No check passes by
//! skipping.
//!
//! A backend's test file registers itself with one macro call:
//!
//! ```text
//! cleanroom_core::conformance_tests!(cleanroom_core::conformance::Harness::new(
//!     MyBackend::new(),
//!     cleanroom_core::SandboxSpec::default(),
//! ));
//! ```
//!
//! The `detached_*` checks are the lifecycle of named sandboxes (`create`,
//! `exec`, `ps`, `stop`, `rm`): an isolating backend must hold them, and one
//! that is not must refuse in one line naming those that can.
//!
//! An isolating backend's test file also imports the config test image
//! [`CONFIG_IMAGE`] first (built from [`config_image_rootfs_tar`] and
//! [`config_image_config`]), which the `image_config` check runs. The
//! `no_ptrace`, `no_keyctl` and `no_bpf` checks compile a small static
//! probe with the host's `cc` (gcc and libc6-dev, which linking Rust needs
//! anyway).

mod checks;
mod config_image;
mod detached;
mod probe;
mod syscalls;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Once};
use std::time::Duration;

use crate::backend::Backend;
use crate::cmd::Cmd;
use crate::enforcement::Constraint;
use crate::result::RunResult;
use crate::spec::SandboxSpec;

pub use config_image::{
    config_image_changes, config_image_config, config_image_rootfs_tar, CONFIG_IMAGE, HELLO,
};
pub use probe::{expected_probe, probe_cmd, PROBE_SCRIPT};

/// A variable set in the test process that must never appear in a sandbox.
pub const CANARY_VAR: &str = "CLEANROOM_CONFORMANCE_CANARY";

/// The backend under test and the spec every check starts from (its rootfs
/// must provide `sh`, `cat`, `env`, `id`, `head`, `sleep`, `tr`, `readlink`,
/// `printf`, `sort`, `sed`, `stat`, `mkdir`, `kill`, `mount` and `unshare`:
/// busybox or the host rootfs both do).
#[derive(Clone)]
pub struct Harness {
    pub backend: Arc<dyn Backend>,
    pub base: SandboxSpec,
}

impl Harness {
    pub fn new(backend: impl Backend + 'static, base: SandboxSpec) -> Self {
        Harness::from_arc(Arc::new(backend), base)
    }

    pub fn from_arc(backend: Arc<dyn Backend>, base: SandboxSpec) -> Self {
        static CANARY: Once = Once::new();
        // Set once, before any check spawns anything, so every backend is
        // tested against a host environment that holds a known secret.
        CANARY.call_once(|| std::env::set_var(CANARY_VAR, "host-secret-must-not-leak"));
        Harness { backend, base }
    }

    fn spec(&self) -> SandboxSpec {
        self.base.clone()
    }

    fn claims(&self, spec: &SandboxSpec, c: Constraint) -> bool {
        self.backend.enforcement(spec).is_enforced(c)
    }

    async fn run(&self, spec: &SandboxSpec, cmd: Cmd) -> Result<RunResult, String> {
        let cmd = if cmd.timeout.is_none() {
            cmd.timeout(Duration::from_secs(60))
        } else {
            cmd
        };
        let shown = cmd.display();
        self.backend
            .run(spec, cmd)
            .await
            .map_err(|e| format!("running `{shown}` failed: {e}"))
    }
}

/// How a check ended when it did not fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The property was claimed and shown to hold.
    Verified,
    /// The backend does not claim it, and the run reports that honestly.
    ReportedNotEnforced(Constraint),
}

/// A failed check explains itself in the `Err`.
pub type CheckResult = Result<Outcome, String>;

type CheckFuture<'a> = Pin<Box<dyn Future<Output = CheckResult> + Send + 'a>>;

/// One named check.
pub struct Check {
    pub name: &'static str,
    pub about: &'static str,
    run: for<'a> fn(&'a Harness) -> CheckFuture<'a>,
}

impl Check {
    pub async fn run(&self, h: &Harness) -> CheckResult {
        (self.run)(h).await
    }
}

/// Every check, in the order a report lists them.
pub fn checks() -> Vec<Check> {
    checks::all()
}

/// Runs the check called `name` through the [bridge](crate::bridge) and
/// panics with its failure message: the body of every test the macro generates.
pub fn run_check_blocking(name: &str, make: impl FnOnce() -> Harness) {
    let h = make();
    let check = checks()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no conformance check named `{name}`"));
    crate::bridge::wait(async {
        let a = h.backend.availability().await;
        if !a.available {
            panic!(
                "backend `{}` is not available, so conformance check `{name}` cannot run: {} ({})",
                h.backend.name(),
                a.reason,
                a.hint.unwrap_or_default()
            );
        }
        match check.run(&h).await {
            Ok(outcome) => eprintln!("{name}: {outcome:?}"),
            Err(msg) => panic!(
                "conformance check `{name}` failed on `{}`: {msg}",
                h.backend.name()
            ),
        }
    });
}

/// Generates one `#[test]` per conformance check for the harness built by
/// `$make` (evaluated afresh in each test), plus a test that the list here
/// matches [`checks`].
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            exit_codes, command_not_found, signal_exit, timeout_kills_tree,
            background_processes_die, stdout_stderr_separate, non_utf8_output,
            large_output_no_deadlock, output_truncation, stdin_bytes, empty_stdin,
            env_isolation, workdir, filesystem_isolation, read_only_root,
            writable_root_discarded, mounts, user, capabilities, no_new_privs,
            seccomp, network_none, pid_namespace, hostname, umask, pids_limit,
            memory_limit, memory_limit_tmpfs, tmpfs_sizes, strict_mode, enforcement_report,
            streaming, long_lived, same_bytes, no_new_namespaces, no_mount, no_ptrace, no_keyctl,
            no_bpf, image_config, detached_lifecycle, detached_main_exits,
            detached_parallel_execs, detached_name_race);
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::conformance::run_check_blocking(stringify!($name), || $make);
            }
        )*

        #[test]
        fn conformance_suite_is_complete() {
            let registered = [$(stringify!($name)),*];
            let known: Vec<&str> = $crate::conformance::checks().iter().map(|c| c.name).collect();
            assert_eq!(registered.as_slice(), known.as_slice(), "conformance_tests! lists other checks than conformance::checks()");
        }
    };
}
