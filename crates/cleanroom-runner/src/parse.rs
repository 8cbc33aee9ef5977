//! Reading a `*.clnrm.toml` file into a [`TestFile`], collecting every
//! problem of the file (not just the first), each at its line and column.

use std::path::{Path, PathBuf};

use crate::fields::{get, Reader};
use crate::model::{
    Assertions, Determinism, Expectations, FileCopy, FileSource, Located, SandboxOverrides, Step,
    TestFile,
};
use crate::problem::{Location, Problem};
use crate::tree::{self, Entry, Node};
use crate::{sandbox_table, services};

/// The suffix that marks a test file.
pub const SUFFIX: &str = ".clnrm.toml";

const TOP: &[&str] = &[
    "test",
    "sandbox",
    "services",
    "files",
    "steps",
    "determinism",
    "assertions",
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
];

/// Reads and checks the test file at `path`.
pub fn parse_file(path: &Path) -> Result<TestFile, Vec<Problem>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_str(path, &text),
        Err(e) => Err(vec![Problem {
            location: Location {
                file: path.to_path_buf(),
                line: 1,
                column: 1,
            },
            message: format!("cannot read the test file: {e}"),
        }]),
    }
}

/// Checks `text` as the test file at `path` (relative paths in it are
/// taken from `path`'s directory).
pub fn parse_str(path: &Path, text: &str) -> Result<TestFile, Vec<Problem>> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut r = Reader::new(path, text, &dir);
    let root = match tree::parse(text) {
        Ok(root) => root,
        Err((message, span)) => {
            r.problem(&span, format!("invalid TOML: {message}"));
            return Err(r.problems.list);
        }
    };
    let file = read_test(&mut r, path, &root);
    if r.problems.list.is_empty() {
        Ok(file)
    } else {
        // Sorted by position, so a user can walk down the file fixing them.
        let mut list = r.problems.list;
        list.sort_by_key(|p| (p.location.line, p.location.column));
        Err(list)
    }
}

fn read_test(r: &mut Reader<'_>, path: &Path, root: &[Entry]) -> TestFile {
    r.known_keys(root, "the test file", TOP);
    let mut file = TestFile {
        path: path.to_path_buf(),
        name: default_name(path),
        description: None,
        timeout: None,
        sandbox: SandboxOverrides::default(),
        services: Vec::new(),
        files: Vec::new(),
        steps: Vec::new(),
        determinism: Determinism::default(),
        assertions: Assertions::default(),
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
    if let Some(e) = get(root, "sandbox") {
        file.sandbox = sandbox_table::read(r, e);
    }
    if let Some(e) = get(root, "services") {
        file.services = services::read(r, e);
    }
    if let Some(e) = get(root, "files") {
        file.files = read_files(r, e);
    }
    match get(root, "steps") {
        Some(e) => file.steps = read_steps(r, e, &file.services),
        None => r.problem(
            &(0..0),
            "the test has no [[steps]]; add at least one with a `command`",
        ),
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
        r.known_keys(t, "[[steps]]", STEP_KEYS);
        let at = r.problems.loc(&span);
        let command = match get(t, "command") {
            Some(c) => r.argv(c, true),
            None => {
                r.problem(
                    &span,
                    format!(
                        "step {} has no `command`; add e.g. command = [\"echo\", \"hi\"]",
                        i + 1
                    ),
                );
                None
            }
        };
        let service = get(t, "service").and_then(|s| {
            let name = r.string(s)?;
            if !services.iter().any(|svc| svc.name == name) {
                let mut known: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
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
        });
        let mut expect = Expectations::default();
        if let Some(c) = get(t, "expected_exit_code").and_then(|c| r.exit_code(c)) {
            expect.exit_code = c;
        }
        expect.output_regex = get(t, "expected_output_regex").and_then(|x| r.regex(x));
        expect.output_not_regex = get(t, "expected_output_not_regex").and_then(|x| r.regex(x));
        expect.stderr_regex = get(t, "expected_stderr_regex").and_then(|x| r.regex(x));
        expect.output = get(t, "expected_output").and_then(|x| r.string(x));
        let step = Step {
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
            at,
        };
        steps.push(step);
    }
    if steps.is_empty() {
        r.problem(&e.key.span, "[[steps]] is empty; add at least one step");
    }
    steps
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
        if r.bool(f) == Some(true) {
            d.freeze_clock = Some(r.problems.loc(&f.key.span));
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
            if !services.iter().any(|s| s.name == name || s.kind == name) {
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
