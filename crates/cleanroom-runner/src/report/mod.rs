//! What a run produced: [`SuiteReport`] of [`TestReport`]s, and the
//! formats it is written in (terminal text, JSON, JUnit XML, TAP).

pub mod human;
pub mod junit;
pub mod tap;

use std::path::PathBuf;

use serde::Serialize;

/// How one test ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    Failed,
    /// Not run (`--fail-fast` after a failure) or interrupted before it finished.
    Skipped,
}

/// One step as it ran.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub name: String,
    /// The command as a shell would show it.
    pub command: String,
    /// Which sandbox ran it: `test` or the service's name.
    pub sandbox: String,
    pub exit_code: i32,
    pub duration_ms: u64,
    pub passed: bool,
    /// The start of its stdout (the whole capture is bounded by the output limit).
    pub stdout: String,
    pub stdout_truncated: bool,
    /// A digest of everything captured on stdout, to compare repeated runs.
    #[serde(skip)]
    pub stdout_digest: u64,
}

/// Why a test failed, with what a reader needs to fix it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Failure {
    /// The short reason, one line.
    pub message: String,
    /// The step that failed, if one did.
    pub step: Option<String>,
    pub command: Option<String>,
    /// `file:line:column` of what failed, when it is in the test file.
    pub location: Option<String>,
    pub expected: Option<String>,
    pub actual: Option<String>,
    /// A line diff of expected and actual output, when that helps.
    pub diff: Option<String>,
    /// The last lines of each service's output.
    pub service_logs: Vec<ServiceLog>,
}

/// The tail of one service's output.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceLog {
    pub service: String,
    pub lines: Vec<String>,
}

/// One test file's result.
#[derive(Clone, Debug, Serialize)]
pub struct TestReport {
    pub name: String,
    pub path: PathBuf,
    pub status: Status,
    pub duration_ms: u64,
    pub backend: String,
    pub steps: Vec<StepReport>,
    pub failure: Option<Failure>,
    /// Protections the backend could not enforce, and other honest caveats.
    pub warnings: Vec<String>,
    /// How many times it ran (`--repeat`).
    pub runs: usize,
    /// Steps whose stdout differed between repeated runs.
    pub nondeterministic_steps: Vec<String>,
}

impl TestReport {
    /// A report for a test that did not run at all.
    pub fn not_run(name: String, path: PathBuf, status: Status, failure: Option<Failure>) -> Self {
        TestReport {
            name,
            path,
            status,
            duration_ms: 0,
            backend: String::new(),
            steps: Vec::new(),
            failure,
            warnings: Vec::new(),
            runs: 0,
            nondeterministic_steps: Vec::new(),
        }
    }
}

/// A whole run.
#[derive(Clone, Debug, Serialize)]
pub struct SuiteReport {
    pub backend: String,
    pub tests: Vec<TestReport>,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub duration_ms: u64,
    /// Stopped by Ctrl-C (or a cancelled token) before every test ran.
    pub interrupted: bool,
}

impl SuiteReport {
    pub fn new(
        backend: String,
        tests: Vec<TestReport>,
        duration_ms: u64,
        interrupted: bool,
    ) -> Self {
        let count = |s: Status| tests.iter().filter(|t| t.status == s).count();
        SuiteReport {
            backend,
            passed: count(Status::Passed),
            failed: count(Status::Failed),
            skipped: count(Status::Skipped),
            tests,
            duration_ms,
            interrupted,
        }
    }

    /// Every test passed (skipped ones count against it only when interrupted).
    pub fn success(&self) -> bool {
        self.failed == 0 && !self.interrupted
    }

    /// `N passed, N failed, N skipped`: the last line of every human report.
    pub fn summary_line(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}
