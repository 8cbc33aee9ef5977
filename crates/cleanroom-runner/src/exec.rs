//! Running one test: its environment (services) brought up first, a fresh
//! sandbox for its steps in the environment's pod, copied files, the steps
//! in order, and teardown of everything afterwards whether it passed,
//! failed, timed out or was cancelled.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cleanroom::{Backend, Cmd, Constraint, Sandbox, SandboxSpec};
use tokio_util::sync::CancellationToken;

use crate::environment::TestEnvironment;
use crate::expect;
use crate::model::{FileSource, TestFile};
use crate::preambles::Preambles;
use crate::report::{Failure, Status, StepReport};

/// Bytes of each step's stdout kept in the report.
const STDOUT_EXCERPT: usize = 4096;
/// How long removing one sandbox may take before teardown moves on.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(30);

/// One run of one test.
#[derive(Debug)]
pub struct RunOutcome {
    pub status: Status,
    pub steps: Vec<StepReport>,
    pub failure: Option<Failure>,
    pub warnings: Vec<String>,
    pub duration: Duration,
}

/// The sandboxes of one test, removed in reverse order of creation.
#[derive(Default)]
struct Live {
    sandboxes: Mutex<Vec<(String, Arc<dyn Sandbox>)>>,
}

impl Live {
    fn add(&self, label: &str, sandbox: Box<dyn Sandbox>) -> Arc<dyn Sandbox> {
        let sandbox: Arc<dyn Sandbox> = Arc::from(sandbox);
        lock(&self.sandboxes).push((label.to_string(), sandbox.clone()));
        sandbox
    }

    async fn teardown(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let all: Vec<_> = lock(&self.sandboxes).drain(..).rev().collect();
        for (label, sandbox) in all {
            match tokio::time::timeout(REMOVE_TIMEOUT, sandbox.remove()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => problems.push(format!("removing {label} ({}): {e}", sandbox.id())),
                Err(_) => problems.push(format!(
                    "removing {label} ({}) took over {}s",
                    sandbox.id(),
                    REMOVE_TIMEOUT.as_secs()
                )),
            }
        }
        problems
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a run ended early, when it did.
enum Stop {
    Failed(Failure),
    Cancelled,
    TimedOut(Duration),
}

/// What every test of a suite shares: the configured spec under each
/// test's own, and the preambles run so far.
pub struct Shared {
    pub base: SandboxSpec,
    pub preambles: Preambles,
}

/// Runs `file` once on `backend` with what its suite `shared`.
pub async fn run_once(
    file: &TestFile,
    backend: Arc<dyn Backend>,
    shared: &Shared,
    cancel: &CancellationToken,
    timeout: Duration,
) -> RunOutcome {
    let started = Instant::now();
    let live = Live::default();
    let steps = Mutex::new(Vec::new());
    let mut warnings = Vec::new();
    // Held outside the body: a test stopped halfway through bringing its
    // services up still has them all removed.
    let environment = tokio::sync::Mutex::new(TestEnvironment::for_test(file, backend.clone()));
    let body = body(
        file,
        &backend,
        shared,
        &live,
        &steps,
        &mut warnings,
        &environment,
    );
    let stop = tokio::select! {
        r = body => r.err().map(Stop::Failed),
        _ = cancel.cancelled() => Some(Stop::Cancelled),
        _ = tokio::time::sleep(timeout) => Some(Stop::TimedOut(timeout)),
    };
    let mut failure = None;
    let mut status = Status::Passed;
    match stop {
        None => {}
        Some(Stop::Failed(mut f)) => {
            if f.service_logs.is_empty() {
                f.service_logs = service_logs(&environment).await;
            }
            failure = Some(f);
            status = Status::Failed;
        }
        Some(Stop::TimedOut(t)) => {
            failure = Some(Failure {
                message: format!(
                    "the test ran past its timeout of {:.1}s and was stopped",
                    t.as_secs_f64()
                ),
                service_logs: service_logs(&environment).await,
                ..Failure::default()
            });
            status = Status::Failed;
        }
        Some(Stop::Cancelled) => {
            failure = Some(Failure {
                message: "interrupted before it finished".into(),
                ..Failure::default()
            });
            status = Status::Skipped;
        }
    }
    let mut leftovers = live.teardown().await;
    if let Some(env) = environment.into_inner() {
        if let Err(e) = env.down(file).await {
            leftovers.push(e);
        }
    }
    if !leftovers.is_empty() {
        warnings.extend(leftovers.iter().map(|l| format!("teardown: {l}")));
        if status == Status::Passed {
            status = Status::Failed;
            failure = Some(Failure {
                message: format!("teardown failed: {}", leftovers.join("; ")),
                ..Failure::default()
            });
        }
    }
    RunOutcome {
        status,
        steps: steps.into_inner().unwrap_or_else(|p| p.into_inner()),
        failure,
        warnings,
        duration: started.elapsed(),
    }
}

/// The test's spec: the configured one, `[sandbox]` on top, the seed and
/// a frozen clock's time exported.
pub fn test_spec(file: &TestFile, base: &SandboxSpec) -> SandboxSpec {
    let mut spec = file.sandbox.apply(base);
    spec.env.extend(determinism_env(file));
    spec
}

/// `CLEANROOM_SEED` for `seed`; `SOURCE_DATE_EPOCH` for a `freeze_clock`
/// time (the reproducible-builds convention tools read for "now").
fn determinism_env(file: &TestFile) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(seed) = file.determinism.seed {
        env.push(("CLEANROOM_SEED".to_string(), seed.to_string()));
    }
    if let Some((_, secs)) = file
        .determinism
        .freeze_clock
        .as_ref()
        .and_then(|f| f.time.as_ref())
    {
        env.push(("SOURCE_DATE_EPOCH".to_string(), secs.to_string()));
    }
    env
}

async fn body(
    file: &TestFile,
    env_backend: &Arc<dyn Backend>,
    shared: &Shared,
    live: &Live,
    steps: &Mutex<Vec<StepReport>>,
    warnings: &mut Vec<String>,
    environment: &tokio::sync::Mutex<Option<TestEnvironment>>,
) -> Result<(), Failure> {
    let mut spec = test_spec(file, &shared.base);
    let backend: &dyn Backend = env_backend.as_ref();
    // The services (and an environment file's) come up first, as `cleanroom
    // up` brings them up; the test's sandbox then joins their pod, wired.
    if let Some(env) = environment.lock().await.as_mut() {
        env.up(file, &mut spec).await?;
    }
    let sandbox_at = file.sandbox.rootfs.as_ref().map(|r| r.at.to_string());
    // The preamble once per suite for equal specs: the report it makes is
    // the one this test shows and checks, and the one its sandbox or run
    // carries.
    let prepared = shared
        .preambles
        .prepare(backend, &spec)
        .map_err(|e| Failure {
            message: e.to_string(),
            location: sandbox_at.clone(),
            ..Failure::default()
        })?;
    let enforcement = prepared.enforcement();
    warnings.extend(prepared.warnings());
    warnings.extend(file.warnings.iter().map(|w| format!("WARN: {w}")));
    if let Some(freeze) = &file.determinism.freeze_clock {
        let msg = match &freeze.time {
            Some((time, secs)) => format!(
                "freeze_clock = {time}: the {} backend cannot freeze the wall clock (no backend can); only SOURCE_DATE_EPOCH={secs} and templates' now_rfc3339() give that time",
                backend.name()
            ),
            None => format!(
                "freeze_clock: the {} backend cannot freeze the wall clock (no backend can); time-dependent output is not fixed",
                backend.name()
            ),
        };
        if spec.strict {
            return Err(Failure {
                message: format!("strict mode: {msg}"),
                location: Some(freeze.at.to_string()),
                ..Failure::default()
            });
        }
        warnings.push(format!("WARN: {}: {msg}", freeze.at));
    }
    if file.assertions.hermetic {
        let missing: Vec<String> = [
            Constraint::FilesystemIsolation,
            Constraint::NetworkIsolation,
            Constraint::PidNamespace,
        ]
        .into_iter()
        .filter(|c| !enforcement.is_enforced(*c))
        .map(|c| c.describe().to_string())
        .collect();
        if !missing.is_empty() {
            return Err(Failure {
                message: format!(
                    "execution_should_be_hermetic: the {} backend does not enforce {}",
                    backend.name(),
                    missing.join(", ")
                ),
                ..Failure::default()
            });
        }
    }

    // A test of one step and nothing else runs as a one-shot run: the same
    // fresh sandbox, torn down the same way, but a backend can serve it from
    // a warm pool or skip the long-lived machinery.
    let one_shot = file.services.is_empty() && file.files.is_empty() && file.steps.len() == 1;
    let main: Option<Arc<dyn Sandbox>> = if one_shot {
        None
    } else {
        let created = backend.create_prepared(&spec, None, prepared.clone());
        let created = created.await.map_err(|e| Failure {
            message: format!("creating the test's sandbox: {e}"),
            location: sandbox_at.clone(),
            ..Failure::default()
        })?;
        Some(live.add("the test's sandbox", created))
    };

    for f in &file.files {
        let Some(main) = &main else {
            unreachable!("tests with files are never one-shot")
        };
        copy_file(f, main.as_ref(), &spec.workdir)
            .await
            .map_err(|message| Failure {
                message,
                location: Some(f.at.to_string()),
                ..Failure::default()
            })?;
    }

    for step in &file.steps {
        let service = match (&step.service, environment.lock().await.as_ref()) {
            (Some(name), Some(env)) => {
                Some(env.service(name).await.map_err(|message| Failure {
                    message,
                    location: Some(step.at.to_string()),
                    ..Failure::default()
                })?)
            }
            (Some(name), None) => {
                return Err(Failure {
                    message: format!("service `{name}` is not running"),
                    location: Some(step.at.to_string()),
                    ..Failure::default()
                })
            }
            (None, _) => None,
        };
        let label = step.service.clone().unwrap_or_else(|| "test".to_string());
        let mut cmd = Cmd::from(step.command.clone());
        cmd.env = step.env.clone();
        for (k, v) in determinism_env(file) {
            cmd.env.entry(k).or_insert(v);
        }
        cmd.workdir = step.workdir.clone();
        cmd.stdin = step.stdin.clone().map(String::into_bytes);
        cmd.timeout = step.timeout;
        let shown = cmd.display();
        let t0 = Instant::now();
        let run = match (&service, &main) {
            (Some(service), _) => service.exec(cmd, None).await,
            (None, Some(main)) => main.exec(cmd).await,
            (None, None) => match cleanroom::preamble::validate_cmd(&spec, &cmd) {
                Ok(()) => {
                    backend
                        .run_prepared(&spec, cmd, None, prepared.clone())
                        .await
                }
                Err(e) => Err(e),
            },
        };
        let result = run.map_err(|e| Failure {
            message: format!("running the step failed: {e}"),
            step: Some(step.name.clone()),
            command: Some(shown.clone()),
            // A one-shot run also creates the sandbox: its image may be at fault.
            location: if one_shot && sandbox_at.is_some() {
                sandbox_at.clone()
            } else {
                Some(step.at.to_string())
            },
            ..Failure::default()
        })?;
        let failure = expect::check(&step.expect, &result);
        let excerpt_end = floor_char_boundary(&result.stdout, STDOUT_EXCERPT);
        let mut h = DefaultHasher::new();
        result.stdout.hash(&mut h);
        lock(steps).push(StepReport {
            name: step.name.clone(),
            command: shown.clone(),
            sandbox: label,
            exit_code: result.exit_code,
            duration_ms: t0.elapsed().as_millis() as u64,
            passed: failure.is_none(),
            stdout: String::from_utf8_lossy(&result.stdout[..excerpt_end]).into_owned(),
            stdout_truncated: result.stdout_truncated || excerpt_end < result.stdout.len(),
            stdout_digest: h.finish(),
        });
        if let Some(mut f) = failure {
            if step.continue_on_failure {
                warnings.push(format!(
                    "WARN: {}: step `{}` failed ({}); continue_on_failure = true, so the test goes on",
                    step.at, step.name, f.message
                ));
                continue;
            }
            f.step = Some(step.name.clone());
            f.command = Some(shown);
            f.location = Some(step.at.to_string());
            return Err(f);
        }
    }

    if let Some(n) = file.assertions.executed_commands {
        let ran = lock(steps).len();
        if ran < n {
            return Err(Failure {
                message: format!("container_should_have_executed_commands = {n}, but {ran} ran"),
                ..Failure::default()
            });
        }
    }
    Ok(())
}

/// Byte index at most `max` that does not split a UTF-8 character.
fn floor_char_boundary(bytes: &[u8], max: usize) -> usize {
    let mut end = bytes.len().min(max);
    while end > 0 && end < bytes.len() && (bytes[end] & 0b1100_0000) == 0b1000_0000 {
        end -= 1;
    }
    end
}

/// Copies one `[[files]]` entry into `sandbox`.
async fn copy_file(
    f: &crate::model::FileCopy,
    sandbox: &dyn Sandbox,
    workdir: &Path,
) -> Result<(), String> {
    let inside: PathBuf = if f.path.is_absolute() {
        f.path.clone()
    } else {
        workdir.join(&f.path)
    };
    let tmp = tempfile::tempdir().map_err(|e| format!("creating a temporary directory: {e}"))?;
    let host = match &f.source {
        FileSource::Content(c) => {
            let p = tmp.path().join("content");
            std::fs::write(&p, c).map_err(|e| format!("writing {}: {e}", p.display()))?;
            p
        }
        FileSource::Host(p) => p.clone(),
    };
    if let Some(mode) = f.mode {
        use std::os::unix::fs::PermissionsExt;
        let staged = tmp.path().join("staged");
        std::fs::copy(&host, &staged)
            .and_then(|_| std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode)))
            .map_err(|e| format!("preparing {}: {e}", host.display()))?;
        return put(sandbox, &staged, &inside, workdir).await;
    }
    put(sandbox, &host, &inside, workdir).await
}

async fn put(
    sandbox: &dyn Sandbox,
    host: &Path,
    inside: &Path,
    workdir: &Path,
) -> Result<(), String> {
    if let Some(parent) = inside.parent() {
        if parent != workdir && parent != Path::new("/") {
            // Under the working directory, a relative path: the same place
            // on every backend, even one that maps the working directory.
            let dir = parent.strip_prefix(workdir).unwrap_or(parent);
            let mkdir = Cmd::from(vec![
                "mkdir".to_string(),
                "-p".to_string(),
                dir.display().to_string(),
            ])
            .workdir(workdir);
            let r = sandbox
                .exec(mkdir)
                .await
                .map_err(|e| format!("creating {} inside: {e}", parent.display()))?;
            if !r.success() {
                return Err(format!(
                    "creating {} inside: {} {}",
                    parent.display(),
                    r.status_line(),
                    r.stderr_lossy().trim()
                ));
            }
        }
    }
    sandbox
        .copy_in(host, inside)
        .await
        .map_err(|e| format!("copying {} to {}: {e}", host.display(), inside.display()))
}

/// The last lines of every service's log.
async fn service_logs(
    environment: &tokio::sync::Mutex<Option<TestEnvironment>>,
) -> Vec<crate::report::ServiceLog> {
    match environment.lock().await.as_ref() {
        Some(env) => env.logs().await,
        None => Vec::new(),
    }
}
