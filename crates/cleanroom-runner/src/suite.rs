//! Running a suite: discovery, selection, parallel scheduling with
//! `--fail-fast`, per-test timeouts, `--repeat` with a non-determinism
//! check, and cancellation that tears every sandbox down.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cleanroom::{AutoBackend, Backend, Config, Result, SandboxSpec};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::discover::{discover, Shard};
use crate::exec::{run_once, RunOutcome, Shared};
use crate::model::TestFile;
use crate::parse::{parse_file_with, ParseOptions};
use crate::preambles::Preambles;
use crate::report::{Failure, Status, SuiteReport, TestReport};

/// A test's time limit when neither its file nor the options set one.
pub const DEFAULT_TEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Something that happened during a run, for live progress displays.
#[derive(Clone, Debug)]
pub enum Event {
    /// The tests that will run, after filtering and sharding.
    Planned {
        tests: usize,
    },
    Started {
        name: String,
        path: PathBuf,
    },
    Finished(Box<TestReport>),
}

/// Receives [`Event`]s as they happen (from any thread).
pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// How to run a suite. `Default` runs everything on the configured backend
/// with as many tests at once as there are cores.
#[derive(Clone)]
pub struct RunOptions {
    /// `None`: the backend the configuration asks for ([`AutoBackend::detect`]).
    pub backend: Option<Arc<dyn Backend>>,
    /// `None`: the spec of the configuration seen from the current directory.
    pub base_spec: Option<SandboxSpec>,
    /// Tests run at once (0 means the number of cores).
    pub jobs: usize,
    /// Run only tests whose name or path contains this.
    pub filter: Option<String>,
    pub shard: Option<Shard>,
    /// Stop starting tests after the first failure.
    pub fail_fast: bool,
    /// Each test's time limit unless its file sets `[test.metadata] timeout`.
    pub timeout: Option<Duration>,
    /// Run each test this many times (at least once) and compare outputs.
    pub repeat: usize,
    /// Cancel to stop: running tests are torn down, the rest skipped.
    pub cancel: CancellationToken,
    pub events: Option<EventSink>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            backend: None,
            base_spec: None,
            jobs: 0,
            filter: None,
            shard: None,
            fail_fast: false,
            timeout: None,
            repeat: 1,
            cancel: CancellationToken::new(),
            events: None,
        }
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field(
                "backend",
                &self.backend.as_ref().map(|b| b.name().to_string()),
            )
            .field("jobs", &self.jobs)
            .field("filter", &self.filter)
            .field("shard", &self.shard)
            .field("fail_fast", &self.fail_fast)
            .field("timeout", &self.timeout)
            .field("repeat", &self.repeat)
            .finish()
    }
}

/// Number of tests run at once for `jobs` (0: the number of cores).
pub fn effective_jobs(jobs: usize) -> usize {
    if jobs > 0 {
        jobs
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Finds the `*.clnrm.toml` files under `paths` (the current directory when
/// empty), runs the selected ones and reports every result. Broken files are
/// failed tests whose failure lists every problem at its file:line:column.
pub async fn run_suite(paths: &[PathBuf], options: &RunOptions) -> Result<SuiteReport> {
    let started = Instant::now();
    let backend: Arc<dyn Backend> = match &options.backend {
        Some(b) => b.clone(),
        None => AutoBackend::detect().await?.inner(),
    };
    let base = match &options.base_spec {
        Some(s) => s.clone(),
        None => Config::load_default()?.spec()?,
    };
    let selected: Vec<PathBuf> = discover(paths)?
        .into_iter()
        .filter(|p| options.shard.is_none_or(|s| s.contains(p)))
        .collect();

    // `--strict` (or `strict = true`) also makes unknown keys errors.
    let parse_options = ParseOptions {
        strict: base.strict,
        env: None,
    };
    let mut planned: Vec<Planned> = Vec::new();
    for path in selected {
        let parsed = parse_file_with(&path, &parse_options);
        let name = match &parsed {
            Ok(f) => f.name.clone(),
            Err(_) => path.display().to_string(),
        };
        if let Some(filter) = &options.filter {
            if !name.contains(filter.as_str()) && !path.to_string_lossy().contains(filter.as_str())
            {
                continue;
            }
        }
        planned.push(Planned { path, name, parsed });
    }
    emit(
        options,
        &Event::Planned {
            tests: planned.len(),
        },
    );

    // Tests start in path order, a new one only after a finished one's
    // report was handled here, so which tests a --fail-fast run skips does
    // not depend on thread timing.
    let jobs = effective_jobs(options.jobs);
    let mut queue: VecDeque<(usize, Planned)> = planned.into_iter().enumerate().collect();
    let mut set: JoinSet<(usize, TestReport)> = JoinSet::new();
    let mut reports: Vec<(usize, TestReport)> = Vec::new();
    let mut stop_starting = false;
    let shared = Arc::new(Shared {
        base,
        preambles: Preambles::default(),
    });
    let mut finish = |report: TestReport, order: usize, stop: &mut bool| {
        if report.status == Status::Failed && options.fail_fast {
            *stop = true;
        }
        emit(options, &Event::Finished(Box::new(report.clone())));
        reports.push((order, report));
    };
    loop {
        if !queue.is_empty() && (stop_starting || options.cancel.is_cancelled()) {
            for (order, test) in queue.drain(..) {
                finish(skipped(test, options), order, &mut stop_starting);
            }
        }
        if let Some((_, front)) = queue.front() {
            if front.parsed.is_err() {
                // Nothing to run: report the problems right away.
                let (order, test) = queue.pop_front().expect("front exists");
                let report = broken(
                    test.name,
                    test.path,
                    test.parsed.err().unwrap_or_default().as_slice(),
                );
                finish(report, order, &mut stop_starting);
                continue;
            }
            if set.len() < jobs {
                let (order, test) = queue.pop_front().expect("front exists");
                let job = Job {
                    backend: backend.clone(),
                    shared: shared.clone(),
                    options: options.clone(),
                };
                set.spawn(async move { (order, job.run(test).await) });
                continue;
            }
            tokio::select! {
                Some(joined) = set.join_next() => {
                    if let Some((order, report)) = joined_report(joined) {
                        finish(report, order, &mut stop_starting);
                    }
                }
                _ = options.cancel.cancelled() => {}
            }
        } else {
            match set.join_next().await {
                Some(joined) => {
                    if let Some((order, report)) = joined_report(joined) {
                        finish(report, order, &mut stop_starting);
                    }
                }
                None => break,
            }
        }
    }
    reports.sort_by_key(|(order, _)| *order);
    let tests: Vec<TestReport> = reports.into_iter().map(|(_, r)| r).collect();
    Ok(SuiteReport::new(
        backend.name().to_string(),
        tests,
        started.elapsed().as_millis() as u64,
        options.cancel.is_cancelled(),
    ))
}

fn emit(options: &RunOptions, event: &Event) {
    if let Some(sink) = &options.events {
        sink(event);
    }
}

struct Planned {
    path: PathBuf,
    name: String,
    parsed: std::result::Result<TestFile, Vec<crate::Problem>>,
}

struct Job {
    backend: Arc<dyn Backend>,
    shared: Arc<Shared>,
    options: RunOptions,
}

/// A finished task's report; a panicked task is logged and dropped.
fn joined_report(
    joined: std::result::Result<(usize, TestReport), tokio::task::JoinError>,
) -> Option<(usize, TestReport)> {
    match joined {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!("a test task panicked: {e}");
            None
        }
    }
}

/// The report of a test that was never started.
fn skipped(test: Planned, options: &RunOptions) -> TestReport {
    let why = if options.cancel.is_cancelled() {
        "not run: interrupted"
    } else {
        "not run: --fail-fast stopped the run after a failure"
    };
    TestReport::not_run(
        test.name,
        test.path,
        Status::Skipped,
        Some(Failure {
            message: why.into(),
            ..Failure::default()
        }),
    )
}

impl Job {
    async fn run(self, test: Planned) -> TestReport {
        let file = match test.parsed {
            Ok(f) => f,
            Err(problems) => return broken(test.name, test.path, &problems),
        };
        if self.options.cancel.is_cancelled() {
            return skipped(
                Planned {
                    name: file.name,
                    path: file.path,
                    parsed: Err(Vec::new()),
                },
                &self.options,
            );
        }
        emit(
            &self.options,
            &Event::Started {
                name: file.name.clone(),
                path: file.path.clone(),
            },
        );
        let timeout = file
            .timeout
            .or(self.options.timeout)
            .unwrap_or(DEFAULT_TEST_TIMEOUT);
        let repeat = self.options.repeat.max(1);
        let mut runs: Vec<RunOutcome> = Vec::new();
        for _ in 0..repeat {
            let outcome = run_once(
                &file,
                self.backend.clone(),
                &self.shared,
                &self.options.cancel,
                timeout,
            )
            .await;
            let stop = outcome.status != Status::Passed;
            runs.push(outcome);
            if stop {
                break;
            }
        }
        combine(&file, self.backend.name(), runs)
    }
}

/// A file that could not be read: a failed test listing every problem.
fn broken(name: String, path: PathBuf, problems: &[crate::Problem]) -> TestReport {
    let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    TestReport::not_run(
        name,
        path,
        Status::Failed,
        Some(Failure {
            message: format!(
                "the test file has {} problem{}:\n{}",
                list.len(),
                if list.len() == 1 { "" } else { "s" },
                list.join("\n")
            ),
            location: problems.first().map(|p| p.location.to_string()),
            ..Failure::default()
        }),
    )
}

/// One report from the runs of a test: the first failure if any run
/// failed, else a failure when stdout differed between runs.
fn combine(file: &TestFile, backend: &str, runs: Vec<RunOutcome>) -> TestReport {
    let count = runs.len();
    let duration: Duration = runs.iter().map(|r| r.duration).sum();
    let nondeterministic = differing_steps(&runs);
    let mut warnings: Vec<String> = Vec::new();
    for r in &runs {
        for w in &r.warnings {
            if !warnings.contains(w) {
                warnings.push(w.clone());
            }
        }
    }
    let last = runs.into_iter().last();
    let (mut status, steps, mut failure) = match last {
        Some(r) => (r.status, r.steps, r.failure),
        None => (Status::Skipped, Vec::new(), None),
    };
    if status == Status::Passed && !nondeterministic.is_empty() {
        status = Status::Failed;
        failure = Some(Failure {
            message: format!(
                "non-deterministic: the stdout of {} differed between the {count} runs",
                nondeterministic
                    .iter()
                    .map(|s| format!("step `{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ..Failure::default()
        });
    }
    TestReport {
        name: file.name.clone(),
        path: file.path.clone(),
        status,
        duration_ms: duration.as_millis() as u64,
        backend: backend.to_string(),
        steps,
        failure,
        warnings,
        runs: count,
        nondeterministic_steps: nondeterministic,
    }
}

/// Names of steps whose stdout digest is not the same in every passed run.
fn differing_steps(runs: &[RunOutcome]) -> Vec<String> {
    let passed: Vec<&RunOutcome> = runs.iter().filter(|r| r.status == Status::Passed).collect();
    let Some(first) = passed.first() else {
        return Vec::new();
    };
    let mut differ = BTreeSet::new();
    for other in &passed[1..] {
        for (a, b) in first.steps.iter().zip(&other.steps) {
            if a.stdout_digest != b.stdout_digest {
                differ.insert(a.name.clone());
            }
        }
    }
    first
        .steps
        .iter()
        .filter(|s| differ.contains(&s.name))
        .map(|s| s.name.clone())
        .collect()
}

/// Runs a suite from synchronous code (a `harness = false` test target, a
/// build script), inside or outside a tokio runtime, through the
/// [bridge](cleanroom::bridge).
pub fn run_suite_blocking(paths: &[PathBuf], options: &RunOptions) -> Result<SuiteReport> {
    cleanroom::bridge::wait(run_suite(paths, options))
}

/// Whether `path` names a test file.
pub fn is_test_file(path: &Path) -> bool {
    path.to_string_lossy().ends_with(crate::SUFFIX)
}
