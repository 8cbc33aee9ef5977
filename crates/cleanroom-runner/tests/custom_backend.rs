//! A backend written against the original two-method trait
//! (`cleanroom::backend::Backend`: `run_cmd` and `name`) runs `*.clnrm.toml`
//! files through the runner: steps pass and fail on its results, and every
//! report says its enforcement is unknown.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use cleanroom::backend::{Backend, Cmd, RunResult};
use cleanroom::error::{BackendError, Result};
use cleanroom::SandboxSpec;
use cleanroom_runner::{run_suite_blocking, RunOptions, Status, SuiteReport};

/// Runs each command as a host process with only the command's environment
/// (and a PATH), and remembers what it ran.
struct HostProcesses {
    ran: Arc<Mutex<Vec<String>>>,
}

impl Backend for HostProcesses {
    fn run_cmd(&self, cmd: Cmd) -> Result<RunResult> {
        self.ran.lock().unwrap().push(cmd.display());
        let output = std::process::Command::new(&cmd.program)
            .args(&cmd.args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs(&cmd.env)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| BackendError::io(format!("starting `{}`", cmd.display()), e))?;
        Ok(RunResult::from(output))
    }

    fn name(&self) -> &str {
        "custom"
    }
}

fn run(paths: &[PathBuf], base: SandboxSpec) -> (SuiteReport, Vec<String>) {
    let ran = Arc::new(Mutex::new(Vec::new()));
    let backend = HostProcesses { ran: ran.clone() };
    let options = RunOptions {
        backend: Some(backend.into_async()),
        base_spec: Some(base),
        jobs: 1,
        ..RunOptions::default()
    };
    let report = run_suite_blocking(paths, &options).unwrap();
    let ran = ran.lock().unwrap().clone();
    (report, ran)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const PASSING: &str = r#"
[test.metadata]
name = "custom passes"

[sandbox]
env = { FROM_SANDBOX = "sandbox-level" }

[determinism]
seed = 5

[[steps]]
name = "greets"
command = ["echo", "hello from custom"]
expected_output_regex = "^hello from custom$"

[[steps]]
name = "gets the sandbox, step and seed environment"
command = ["sh", "-c", "echo $FROM_SANDBOX $GREETING $CLEANROOM_SEED"]
env = { GREETING = "hi" }
expected_output = "sandbox-level hi 5"
"#;

const FAILING: &str = r#"
[test.metadata]
name = "custom fails"

[[steps]]
name = "fine"
command = ["true"]

[[steps]]
name = "exits 3"
command = ["sh", "-c", "echo oops >&2; exit 3"]

[[steps]]
name = "never runs"
command = ["echo", "unreachable"]
"#;

#[test]
fn a_two_method_backend_runs_clnrm_files_through_the_runner() {
    let dir = tempfile::tempdir().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/echo.clnrm.toml");
    let passing = write(dir.path(), "passing.clnrm.toml", PASSING);
    let failing = write(dir.path(), "failing.clnrm.toml", FAILING);
    let (report, ran) = run(&[data, passing, failing], SandboxSpec::default());

    assert_eq!(report.backend, "custom");
    assert_eq!((report.passed, report.failed), (2, 1), "{report:#?}");
    let test = |name: &str| report.tests.iter().find(|t| t.name == name).unwrap();

    // A one-step file: a one-shot run through the adapter's `run`.
    let echo = test("echo works");
    assert_eq!(echo.status, Status::Passed, "{echo:#?}");
    assert_eq!(echo.steps[0].stdout, "hello\n");

    // Several steps: a "sandbox" whose every exec is a `run_cmd` call.
    let passed = test("custom passes");
    assert_eq!(passed.status, Status::Passed, "{passed:#?}");
    assert_eq!(passed.backend, "custom");
    assert!(passed.steps.iter().all(|s| s.passed));

    let failed = test("custom fails");
    assert_eq!(failed.status, Status::Failed);
    let steps: Vec<(&str, bool, i32)> = failed
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.passed, s.exit_code))
        .collect();
    assert_eq!(steps, [("fine", true, 0), ("exits 3", false, 3)]);
    let failure = failed.failure.as_ref().unwrap();
    assert_eq!(failure.step.as_deref(), Some("exits 3"));
    assert!(
        failure
            .location
            .as_deref()
            .unwrap()
            .ends_with("failing.clnrm.toml:9:1"),
        "{failure:#?}"
    );

    // Every command went through `run_cmd`, and nothing after the failure.
    assert_eq!(ran.len(), 1 + 2 + 2, "{ran:?}");
    assert!(!ran.iter().any(|c| c.contains("unreachable")), "{ran:?}");

    // The report is honest: nothing is known to be enforced.
    for t in &report.tests {
        for what in [
            "filesystem isolation",
            "network isolation",
            "seccomp filter",
        ] {
            let needle = format!("WARN: custom backend: enforcement of {what} is unknown");
            assert!(
                t.warnings.iter().any(|w| w.starts_with(&needle)),
                "{}: no `{needle}` in {:?}",
                t.name,
                t.warnings
            );
        }
        assert!(
            !t.warnings.iter().any(|w| w.contains("cannot enforce")),
            "{:?}",
            t.warnings
        );
    }
}

#[test]
fn strict_mode_refuses_a_backend_whose_enforcement_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let one_shot = write(
        dir.path(),
        "one.clnrm.toml",
        "[[steps]]\ncommand = [\"echo\", \"ran\"]\n",
    );
    let several = write(dir.path(), "several.clnrm.toml", PASSING);
    let strict = SandboxSpec {
        strict: true,
        ..SandboxSpec::default()
    };
    let (report, ran) = run(&[one_shot, several], strict);
    assert_eq!(report.failed, 2, "{report:#?}");
    for t in &report.tests {
        let message = &t.failure.as_ref().unwrap().message;
        assert!(
            message.contains("strict mode: the custom backend cannot enforce")
                && message.contains("(unknown: `custom` is a backend of its own"),
            "{message}"
        );
    }
    assert!(ran.is_empty(), "strict mode refused, yet it ran {ran:?}");
}
