//! Reading a `*.clnrm.toml` file into a [`TestFile`], collecting every
//! problem of the file (not just the first), each at its line and column.

use std::path::{Path, PathBuf};

use std::collections::HashMap;

use crate::fields::{get, Reader};
use crate::model::{
    Assertions, Determinism, Expectations, FileCopy, FileSource, FreezeClock, Located,
    SandboxOverrides, Step, TestFile,
};
use crate::problem::{Location, Problem};
use crate::template::{self, Rendered};
use crate::tree::{self, Entry, Node};
use crate::{clnrm_v1, sandbox_table, services};

/// The suffix that marks a test file.
pub const SUFFIX: &str = ".clnrm.toml";

const TOP: &[&str] = &[
    "test",
    "sandbox",
    "services",
    "environment",
    "files",
    "steps",
    "determinism",
    "assertions",
    // clnrm's v1.0 format.
    "meta",
    "service",
    "scenario",
    "vars",
    "limits",
];
const STEP_KEYS: &[&str] = &[
    "name",
    "command",
    "stdin",
    "env",
    "workdir",
    "timeout",
    "service",
    "expected_exit_code",
    "expected_output",
    "expected_output_regex",
    "expected_output_not_regex",
    "expected_stderr_regex",
    // clnrm's spelling of expected_output_not_regex.
    "expected_output_regex_not",
    "continue_on_failure",
];

/// How to read a test file.
#[derive(Clone, Debug, Default)]
pub struct ParseOptions {
    /// Unknown keys and what cannot be honoured are errors, not warnings.
    pub strict: bool,
    /// The environment templates see; `None`: this process's.
    pub env: Option<HashMap<String, String>>,
}

/// Reads and checks the test file at `path`.
/// Only a regular file of at most [`cleanroom::input_file::MAX_INPUT_FILE`]
/// bytes is read: a FIFO, device, directory or symlink loop is a problem
/// that says what the path is, never a hang.
pub fn parse_file(path: &Path) -> Result<TestFile, Vec<Problem>> {
    parse_file_with(path, &ParseOptions::default())
}

/// [`parse_file`] with options (`--strict`).
pub fn parse_file_with(path: &Path, options: &ParseOptions) -> Result<TestFile, Vec<Problem>> {
    match cleanroom::input_file::read_input_file(path) {
        Ok(text) => parse_str_with(path, &text, options),
        Err(e) => Err(vec![Problem {
            location: Location {
                file: path.to_path_buf(),
                line: 1,
                column: 1,
            },
            message: format!("the test file {e}"),
        }]),
    }
}

/// Checks `text` as the test file at `path` (relative paths in it are
/// taken from `path`'s directory).
pub fn parse_str(path: &Path, text: &str) -> Result<TestFile, Vec<Problem>> {
    parse_str_with(path, text, &ParseOptions::default())
}

/// [`parse_str`] with options. A Tera template (a file holding `{{ … }}`,
/// `{% … %}` or `{# … #}`) is rendered first, with the environment and the
/// file's `[vars]`; its problems are located in the rendered text.
pub fn parse_str_with(
    path: &Path,
    text: &str,
    options: &ParseOptions,
) -> Result<TestFile, Vec<Problem>> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let process_env;
    let env = match &options.env {
        Some(e) => e,
        None => {
            process_env = std::env::vars().collect::<HashMap<_, _>>();
            &process_env
        }
    };
    let frozen = frozen_clock_of(text);
    let mut render_failure = None;
    let rendered = match template::render(text, env, frozen.as_deref()) {
        Rendered::Plain => None,
        Rendered::Text(t) => Some(t),
        Rendered::Failed(why) => {
            render_failure = Some(why);
            None
        }
    };
    let text = rendered.as_deref().unwrap_or(text);
    let mut r = Reader::new(path, text, &dir);
    r.problems.strict = options.strict;
    let root = match tree::parse(text) {
        Ok(root) => root,
        Err((message, span)) => {
            match render_failure {
                Some(why) => r.problem(&(0..0), format!("the template does not render: {why}")),
                None => r.problem(&span, format!("invalid TOML: {message}")),
            }
            return Err(r.problems.list);
        }
    };
    if let Some(why) = render_failure {
        // clnrm's `run` reads such a file as written, templates and all.
        r.problems.warn(
            &(0..0),
            format!("the template does not render here ({why}); the file is read as written"),
        );
    }
    let mut file = read_test(&mut r, path, text, &root);
    file.warnings = r.problems.take_warnings();
    if r.problems.list.is_empty() {
        Ok(file)
    } else {
        // Sorted by position, so a user can walk down the file fixing them.
        let mut list = r.problems.list;
        list.sort_by_key(|p| (p.location.line, p.location.column));
        Err(list)
    }
}

/// clnrm's `freeze_clock = "…"`, found before rendering (templates'
/// `now_rfc3339()` returns it).
fn frozen_clock_of(text: &str) -> Option<String> {
    if !template::is_template(text) {
        return None;
    }
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        if k.trim() != "freeze_clock" {
            return None;
        }
        let v = v.trim().trim_matches('"');
        cleanroom::time::parse_rfc3339(v)
            .ok()
            .map(|_| v.to_string())
    })
}

fn read_test(r: &mut Reader<'_>, path: &Path, text: &str, root: &[Entry]) -> TestFile {
    r.known_keys_ignoring(root, "the test file", TOP, clnrm_v1::IGNORED_TABLES);
    let mut file = TestFile {
        path: path.to_path_buf(),
        name: default_name(path),
        description: None,
        version: None,
        timeout: None,
        sandbox: SandboxOverrides::default(),
        services: Vec::new(),
        environment: None,
        files: Vec::new(),
        steps: Vec::new(),
        determinism: Determinism::default(),
        assertions: Assertions::default(),
        warnings: Vec::new(),
    };
    if let Some(test) = get(root, "test").and_then(|e| r.table(e)) {
        r.known_keys(test, "[test]", &["metadata"]);
        if let Some(meta) = get(test, "metadata").and_then(|e| r.table(e)) {
            r.known_keys(meta, "[test.metadata]", &["name", "description", "timeout"]);
            if let Some(name) = get(meta, "name").and_then(|e| r.string(e)) {
                file.name = name;
            }
            file.description = get(meta, "description").and_then(|e| r.string(e));
            file.timeout = get(meta, "timeout").and_then(|e| r.duration(e));
        }
    }
    clnrm_v1::read_meta(r, root, &mut file);
    if let Some(e) = get(root, "sandbox") {
        file.sandbox = sandbox_table::read(r, e);
    }
    if let Some(limits) = get(root, "limits") {
        clnrm_v1::read_limits(r, limits, &mut file.sandbox);
    }
    if let Some(e) = clnrm_v1::services_entry(root) {
        file.services = services::read(r, &e, text);
    }
    if let Some(e) = get(root, "environment") {
        if let Some(p) = r.string(e) {
            let dir = path.parent().unwrap_or(Path::new("."));
            file.environment = Some(located(r, dir.join(p), &e.value.span));
        }
    }
    if let Some(e) = get(root, "files") {
        file.files = read_files(r, e);
    }
    if let Some(e) = get(root, "steps") {
        file.steps = read_steps(r, e, &file.services);
    }
    if let Some(e) = get(root, "scenario") {
        let scenario_steps = clnrm_v1::read_scenarios(r, e, &file.services);
        file.steps.extend(scenario_steps);
    }
    if get(root, "steps").is_none() && get(root, "scenario").is_none() {
        r.problem(
            &(0..0),
            "the test has no [[steps]] (or [[scenario]]); add at least one with a `command`",
        );
    }
    if let Some(e) = get(root, "determinism") {
        file.determinism = read_determinism(r, e);
    }
    if let Some(e) = get(root, "assertions") {
        file.assertions = read_assertions(r, e, &file.services);
    }
    file
}

/// `dir/name.clnrm.toml` is called `name` unless its metadata says otherwise.
fn default_name(path: &Path) -> String {
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    base.strip_suffix(SUFFIX).unwrap_or(&base).to_string()
}

/// The tables of an array of tables (`[[steps]]`), or a problem.
pub(crate) fn tables<'e>(
    r: &mut Reader<'_>,
    e: &'e Entry,
) -> Vec<(&'e [Entry], std::ops::Range<usize>)> {
    match &e.value.value {
        Node::Array(items) => items
            .iter()
            .filter_map(|item| match &item.value {
                Node::Table(t) => Some((t.as_slice(), item.span.clone())),
                other => {
                    let msg = format!(
                        "each of `{}` must be a table ([[{}]]), not {}",
                        e.key.value,
                        e.key.value,
                        other.kind()
                    );
                    r.problem(&item.span, msg);
                    None
                }
            })
            .collect(),
        other => {
            let msg = format!(
                "`{}` must be an array of tables, written [[{}]], not {}",
                e.key.value,
                e.key.value,
                other.kind()
            );
            r.problem(&e.value.span, msg);
            Vec::new()
        }
    }
}

fn read_steps(r: &mut Reader<'_>, e: &Entry, services: &[crate::model::Service]) -> Vec<Step> {
    let mut steps = Vec::new();
    for (i, (t, span)) in tables(r, e).into_iter().enumerate() {
        steps.push(read_step(r, t, &span, i, services, "[[steps]]"));
    }
    if steps.is_empty() {
        r.problem(&e.key.span, "[[steps]] is empty; add at least one step");
    }
    steps
}

/// One step table (of `[[steps]]` or a scenario's `steps`), the `i`th.
pub(crate) fn read_step(
    r: &mut Reader<'_>,
    t: &[Entry],
    span: &std::ops::Range<usize>,
    i: usize,
    services: &[crate::model::Service],
    what: &str,
) -> Step {
    r.known_keys(t, what, STEP_KEYS);
    let at = r.problems.loc(span);
    let command = match get(t, "command") {
        Some(c) => r.argv(c, true),
        None => {
            r.problem(
                span,
                format!(
                    "step {} has no `command`; add e.g. command = [\"echo\", \"hi\"]",
                    i + 1
                ),
            );
            None
        }
    };
    let service = get(t, "service").and_then(|s| service_ref(r, s, services));
    let mut expect = Expectations::default();
    if let Some(c) = get(t, "expected_exit_code").and_then(|c| r.exit_code(c)) {
        expect.exit_code = c;
    }
    expect.output_regex = get(t, "expected_output_regex").and_then(|x| r.pattern(x));
    expect.output_not_regex = get(t, "expected_output_not_regex")
        .or_else(|| get(t, "expected_output_regex_not"))
        .and_then(|x| r.pattern(x));
    expect.stderr_regex = get(t, "expected_stderr_regex").and_then(|x| r.pattern(x));
    expect.output = get(t, "expected_output").and_then(|x| r.string(x));
    Step {
        name: get(t, "name")
            .and_then(|n| r.string(n))
            .unwrap_or_else(|| format!("step {}", i + 1)),
        command: command.unwrap_or_default(),
        stdin: get(t, "stdin").and_then(|x| r.string(x)),
        env: get(t, "env").map(|x| r.env(x)).unwrap_or_default(),
        workdir: get(t, "workdir")
            .and_then(|x| r.string(x))
            .map(PathBuf::from),
        timeout: get(t, "timeout").and_then(|x| r.duration(x)),
        service,
        expect,
        continue_on_failure: get(t, "continue_on_failure")
            .and_then(|x| r.bool(x))
            .unwrap_or(false),
        at,
    }
}

/// A step's `service = "NAME"`, which must name one of `services`.
pub(crate) fn service_ref(
    r: &mut Reader<'_>,
    s: &Entry,
    services: &[crate::model::Service],
) -> Option<String> {
    let name = r.string(s)?;
    if !services.iter().any(|svc| svc.name() == name) {
        let mut known: Vec<&str> = services.iter().map(|s| s.name()).collect();
        known.sort_unstable();
        let msg = if known.is_empty() {
            format!("step refers to service `{name}`, but the test defines no [services]")
        } else {
            format!(
                "step refers to unknown service `{name}`; the services are: {}",
                known.join(", ")
            )
        };
        r.problem(&s.value.span, msg);
    }
    Some(name)
}

fn read_files(r: &mut Reader<'_>, e: &Entry) -> Vec<FileCopy> {
    let mut out = Vec::new();
    for (t, here) in tables(r, e) {
        r.known_keys(t, "[[files]]", &["path", "content", "source", "mode"]);
        let at = r.problems.loc(&here);
        let path = get(t, "path").and_then(|p| r.string(p)).map(PathBuf::from);
        let content = get(t, "content").and_then(|c| r.string(c));
        let source = get(t, "source").and_then(|s| {
            let p = PathBuf::from(r.string(s)?);
            let p = if p.is_relative() { r.dir.join(p) } else { p };
            if !p.exists() {
                let msg = format!(
                    "source `{}` does not exist (relative sources are taken from the test file's directory)",
                    p.display()
                );
                r.problem(&s.value.span, msg);
            }
            Some(p)
        });
        let mode = get(t, "mode").and_then(|m| match &m.value.value {
            Node::Str(s) => match u32::from_str_radix(s.trim_start_matches("0o"), 8) {
                Ok(v) if v <= 0o7777 => Some(v),
                _ => {
                    r.problem(
                        &m.value.span,
                        format!("mode `{s}` is not octal like \"0755\""),
                    );
                    None
                }
            },
            _ => r.uint::<u32>(m),
        });
        let source = match (content, source) {
            (Some(c), None) => Some(FileSource::Content(c)),
            (None, Some(p)) => Some(FileSource::Host(p)),
            (Some(_), Some(_)) => {
                r.problem(
                    &here,
                    "[[files]] gives both `content` and `source`; keep one",
                );
                None
            }
            (None, None) => {
                if get(t, "content").is_none() && get(t, "source").is_none() {
                    r.problem(
                        &here,
                        "[[files]] needs `content = \"...\"` or `source = \"host/path\"`",
                    );
                }
                None
            }
        };
        if get(t, "path").is_none() {
            r.problem(&here, "[[files]] needs `path`, where the file goes inside");
        }
        if let (Some(path), Some(source)) = (path, source) {
            out.push(FileCopy {
                path,
                source,
                mode,
                at,
            });
        }
    }
    out
}

fn read_determinism(r: &mut Reader<'_>, e: &Entry) -> Determinism {
    let mut d = Determinism::default();
    let Some(t) = r.table(e) else {
        return d;
    };
    r.known_keys(t, "[determinism]", &["seed", "freeze_clock"]);
    d.seed = get(t, "seed").and_then(|s| r.uint::<u64>(s));
    if let Some(f) = get(t, "freeze_clock") {
        let at = r.problems.loc(&f.key.span);
        match &f.value.value {
            Node::Bool(true) => d.freeze_clock = Some(FreezeClock { time: None, at }),
            Node::Bool(false) => {}
            Node::Str(s) => match cleanroom::time::parse_rfc3339(s) {
                Ok(secs) => {
                    d.freeze_clock = Some(FreezeClock {
                        time: Some((s.clone(), secs)),
                        at,
                    })
                }
                Err(e) => r.problem(&f.value.span, format!("`freeze_clock`: {e}")),
            },
            other => {
                let msg = format!(
                    "`freeze_clock` must be true, false or an RFC 3339 time such as \"2025-01-01T00:00:00Z\", not {}",
                    other.kind()
                );
                r.problem(&f.value.span, msg);
            }
        }
    }
    d
}

fn read_assertions(
    r: &mut Reader<'_>,
    e: &Entry,
    services: &[crate::model::Service],
) -> Assertions {
    let mut a = Assertions::default();
    let Some(t) = r.table(e) else {
        return a;
    };
    r.known_keys(
        t,
        "[assertions]",
        &[
            "container_should_have_executed_commands",
            "execution_should_be_hermetic",
            "plugin_should_be_loaded",
        ],
    );
    a.executed_commands =
        get(t, "container_should_have_executed_commands").and_then(|x| r.uint::<usize>(x));
    a.hermetic = get(t, "execution_should_be_hermetic")
        .and_then(|x| r.bool(x))
        .unwrap_or(false);
    if let Some(p) = get(t, "plugin_should_be_loaded") {
        if let Some(name) = r.string(p) {
            if !services
                .iter()
                .any(|s| s.name() == name || s.kind == name || s.plugin.as_deref() == Some(&name))
            {
                r.problem(
                    &p.value.span,
                    format!("plugin_should_be_loaded = `{name}`, but no service is called that"),
                );
            }
        }
    }
    a
}

/// Keeps the located value's location, for errors found later while running.
pub(crate) fn located<T>(r: &Reader<'_>, value: T, span: &std::ops::Range<usize>) -> Located<T> {
    Located {
        value,
        at: r.problems.loc(span),
    }
}
