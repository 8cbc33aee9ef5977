//! The run preamble runs once per suite for each distinct spec: the runner
//! takes the enforcement report from the backend's own preamble (its
//! `Prepared`) instead of asking the backend a second time, and tests with
//! equal specs share it. A wrapper around the real native backend counts
//! how often the report is asked for.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cleanroom::{
    async_trait, Availability, Backend, Cmd, Enforcement, NativeBackend, OutputSink, Prepared,
    Result, RunResult, Sandbox, SandboxSpec,
};
use cleanroom_runner::{run_suite_blocking, RunOptions, Status};

/// The native backend, counting calls of [`Backend::enforcement`].
struct Counting {
    inner: NativeBackend,
    asked: Arc<AtomicUsize>,
}

#[async_trait]
impl Backend for Counting {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn availability(&self) -> Availability {
        self.inner.availability().await
    }

    fn enforcement(&self, spec: &SandboxSpec) -> Enforcement {
        self.asked.fetch_add(1, Ordering::SeqCst);
        self.inner.enforcement(spec)
    }

    async fn run_prepared(
        &self,
        spec: &SandboxSpec,
        cmd: Cmd,
        sink: Option<OutputSink>,
        prepared: Prepared,
    ) -> Result<RunResult> {
        self.inner.run_prepared(spec, cmd, sink, prepared).await
    }

    async fn create_prepared(
        &self,
        spec: &SandboxSpec,
        main: Option<Cmd>,
        prepared: Prepared,
    ) -> Result<Box<dyn Sandbox>> {
        self.inner.create_prepared(spec, main, prepared).await
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// One step: a one-shot run.
const ONE_SHOT: &str = r#"
[test.metadata]
name = "one shot"

[[steps]]
name = "greets"
command = ["echo", "hello"]
expected_output_regex = "^hello$"
"#;

/// Two steps and a file: a long-lived sandbox the steps exec in.
const LONG_LIVED: &str = r#"
[test.metadata]
name = "long lived"

[[files]]
path = "note.txt"
content = "kept"

[[steps]]
name = "reads the file"
command = ["cat", "note.txt"]
expected_output = "kept"

[[steps]]
name = "still there"
command = ["test", "-f", "note.txt"]
"#;

/// One step with a `[sandbox]` setting of its own: a spec of its own.
const OTHER_SPEC: &str = r#"
[test.metadata]
name = "other spec"

[sandbox]
hostname = "elsewhere"

[[steps]]
name = "names its host"
command = ["uname", "-n"]
expected_output_regex = "^elsewhere$"
"#;

#[test]
fn the_enforcement_report_is_computed_once_per_distinct_spec() {
    let native = NativeBackend::new();
    let available = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(native.availability());
    if !available.available {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but the native backend is not available: {}",
            available.reason
        );
        eprintln!(
            "NOTE: native backend not available here: {}",
            available.reason
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = [
        write(dir.path(), "one.clnrm.toml", ONE_SHOT),
        write(dir.path(), "two.clnrm.toml", LONG_LIVED),
        write(dir.path(), "three.clnrm.toml", OTHER_SPEC),
    ];
    let asked = Arc::new(AtomicUsize::new(0));
    let backend = Counting {
        inner: native,
        asked: asked.clone(),
    };
    let options = RunOptions {
        backend: Some(Arc::new(backend)),
        base_spec: Some(SandboxSpec::default()),
        jobs: 1,
        repeat: 2,
        ..RunOptions::default()
    };
    let report = run_suite_blocking(&files, &options).unwrap();
    for t in &report.tests {
        assert_eq!(t.status, Status::Passed, "{}: {:?}", t.name, t.failure);
        assert_eq!(t.runs, 2, "{}", t.name);
    }
    assert_eq!(report.tests.len(), 3);
    // Three tests, each run twice, over two distinct specs: two preambles.
    assert_eq!(asked.load(Ordering::SeqCst), 2);
}
