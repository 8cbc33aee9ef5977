//! What a `*.clnrm.toml` file says, once read and checked: a [`TestFile`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::pattern::Pattern;
use crate::problem::Location;
use cleanroom::{Mount, RootFs, Tmpfs};

/// One test file: one test, its services and its steps.
#[derive(Clone, Debug)]
pub struct TestFile {
    /// The path it was read from.
    pub path: PathBuf,
    /// `[test.metadata] name`, or the file name without `.clnrm.toml`.
    pub name: String,
    pub description: Option<String>,
    /// clnrm's `[meta] version`.
    pub version: Option<String>,
    /// The whole test's time limit (`[test.metadata] timeout`).
    pub timeout: Option<Duration>,
    /// What `[sandbox]` sets over the configured spec.
    pub sandbox: SandboxOverrides,
    /// In the order they must start (dependencies first).
    pub services: Vec<Service>,
    /// `environment = "compose.yaml"`: an environment file (compose or
    /// TOML, relative to the test file) brought up by cleanroom-env before
    /// the steps, in the test's pod, and removed after them.
    pub environment: Option<Located<PathBuf>>,
    pub files: Vec<FileCopy>,
    pub steps: Vec<Step>,
    pub determinism: Determinism,
    pub assertions: Assertions,
    /// What does not stop the file but a reader should know (unknown or
    /// clnrm-only keys, a template left unrendered), each once.
    pub warnings: Vec<crate::Problem>,
}

/// The `[sandbox]` table: each field replaces the configured value when set.
#[derive(Clone, Debug, Default)]
pub struct SandboxOverrides {
    pub rootfs: Option<Located<RootFs>>,
    pub env: BTreeMap<String, String>,
    pub mounts: Vec<Mount>,
    pub tmpfs: Vec<Tmpfs>,
    pub read_only_root: Option<bool>,
    pub hostname: Option<String>,
    pub output_limit: Option<u64>,
    /// The settings of [`cleanroom::fields::FIELDS`] the table sets, each
    /// as written (checked when read), in the order they apply.
    pub settings: Vec<(&'static cleanroom::fields::Field, String)>,
}

/// A value and the place in the file that set it, for errors found while running.
#[derive(Clone, Debug)]
pub struct Located<T> {
    pub value: T,
    pub at: Location,
}

/// `[services.NAME]`: a service of the test's environment, brought up by
/// cleanroom-env's engine beside the test's sandbox, in its pod.
#[derive(Clone, Debug)]
pub struct Service {
    /// What cleanroom-env read from the table: image, command, env, ports,
    /// `depends_on`, `wait_for` (as a health check), ...
    pub model: cleanroom_env::Service,
    /// `generic_container` (the only kind there is; clnrm's plugin types
    /// run as one).
    pub kind: String,
    /// clnrm's `plugin = "..."`, for `plugin_should_be_loaded`.
    pub plugin: Option<String>,
    /// Its `[services.NAME]` header, to the column.
    pub at: Location,
}

impl Service {
    pub fn name(&self) -> &str {
        &self.model.name
    }
}

/// `[[files]]`: copied into the test's sandbox before the first step.
#[derive(Clone, Debug)]
pub struct FileCopy {
    /// Path inside; relative paths are under the working directory.
    pub path: PathBuf,
    pub source: FileSource,
    /// Permission bits, e.g. 0o755 for a script.
    pub mode: Option<u32>,
    pub at: Location,
}

/// Where a copied file's bytes come from.
#[derive(Clone, Debug)]
pub enum FileSource {
    Content(String),
    /// A host path, relative to the test file's directory.
    Host(PathBuf),
}

/// `[[steps]]`: one command and what its result must look like.
#[derive(Clone, Debug)]
pub struct Step {
    pub name: String,
    pub command: Vec<String>,
    pub stdin: Option<String>,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<PathBuf>,
    pub timeout: Option<Duration>,
    /// Run inside this service's sandbox instead of the test's.
    pub service: Option<String>,
    pub expect: Expectations,
    /// clnrm's `continue_on_failure`: a failure is reported as a warning and
    /// the next steps run; the test does not fail for it.
    pub continue_on_failure: bool,
    pub at: Location,
}

/// What a step's result is checked against.
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    pub exit_code: i32,
    pub output_regex: Option<Pattern>,
    pub output_not_regex: Option<Pattern>,
    pub stderr_regex: Option<Pattern>,
    /// Exact stdout (one trailing newline on either side is ignored).
    pub output: Option<String>,
}

/// `[determinism]`.
#[derive(Clone, Debug, Default)]
pub struct Determinism {
    /// Exported to every step as `CLEANROOM_SEED`.
    pub seed: Option<u64>,
    /// Asked to freeze the wall clock: no backend can, and reports say so.
    pub freeze_clock: Option<FreezeClock>,
}

/// `freeze_clock = true` or clnrm's `freeze_clock = "2025-01-01T00:00:00Z"`.
#[derive(Clone, Debug)]
pub struct FreezeClock {
    /// The time asked for, as written, and as seconds since the epoch: it
    /// is what templates' `now_rfc3339()` return and the steps'
    /// `SOURCE_DATE_EPOCH`.
    pub time: Option<(String, i64)>,
    pub at: Location,
}

/// clnrm's `[assertions]`, checked after the steps.
#[derive(Clone, Debug, Default)]
pub struct Assertions {
    /// At least this many steps ran.
    pub executed_commands: Option<usize>,
    /// The backend enforced filesystem, network and process isolation.
    pub hermetic: bool,
}
