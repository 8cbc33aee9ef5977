//! clnrm's v1.0 test-file tables beside the original format: `[meta]`,
//! `[service.NAME]`, `[[scenario]]` (with `service` and `run`), `[limits]`,
//! and the tables accepted without being honoured (`[expect.*]`, `[otel]`,
//! `[otel_validation]`, `[report]`, `[matrix]`, ...).

use std::ops::Range;
use std::time::Duration;

use crate::fields::{get, Reader};
use crate::model::{SandboxOverrides, Service, Step, TestFile};
use crate::parse::{read_step, service_ref, tables};
use crate::tree::{Entry, Node, Spanned};

/// clnrm's top-level tables that are accepted but not honoured, each
/// warned about once (an error under `--strict`): Cleanroom collects no
/// OpenTelemetry data and writes its reports where `cleanroom test` is told.
pub(crate) const IGNORED_TABLES: &[&str] = &[
    "expect",
    "otel",
    "otel_validation",
    "otel_headers",
    "otel_propagators",
    "report",
    "matrix",
];

/// `[[scenario]]` keys accepted but not honoured.
const SCENARIO_IGNORED: &[&str] = &["concurrent", "policy", "artifacts"];

/// `[meta]`: clnrm v1.0's name, version and description.
pub(crate) fn read_meta(r: &mut Reader<'_>, root: &[Entry], file: &mut TestFile) {
    let Some(meta) = get(root, "meta").and_then(|e| r.table(e)) else {
        return;
    };
    r.known_keys(meta, "[meta]", &["name", "version", "description"]);
    if let Some(name) = get(meta, "name").and_then(|e| r.string(e)) {
        file.name = name;
    }
    if let Some(d) = get(meta, "description").and_then(|e| r.string(e)) {
        file.description = Some(d);
    }
    file.version = get(meta, "version").and_then(|e| r.string(e));
}

/// `[services]` and clnrm v1.0's `[service]` as one table of services.
pub(crate) fn services_entry(root: &[Entry]) -> Option<Entry> {
    let tables: Vec<&Entry> = ["services", "service"]
        .iter()
        .filter_map(|k| get(root, k))
        .collect();
    let first = tables.first()?;
    if tables.len() == 1 {
        return Some((*first).clone());
    }
    // Both: one table of all services (a name given twice is reported by the
    // start-order check as it would be in one table).
    let mut entries = Vec::new();
    for t in &tables {
        match &t.value.value {
            Node::Table(e) => entries.extend(e.iter().cloned()),
            _ => return Some((*t).clone()),
        }
    }
    Some(Entry {
        key: first.key.clone(),
        value: Spanned {
            value: Node::Table(entries),
            span: first.value.span.clone(),
        },
    })
}

/// `[limits]`: `cpu_millicores` and `memory_mb`, applied as the sandbox's
/// CPU and memory limits unless `[sandbox]` sets them.
pub(crate) fn read_limits(r: &mut Reader<'_>, e: &Entry, sandbox: &mut SandboxOverrides) {
    let Some(t) = r.table(e) else {
        return;
    };
    r.known_keys(t, "[limits]", &["cpu_millicores", "memory_mb"]);
    if let Some(m) = get(t, "cpu_millicores").and_then(|x| r.uint::<u32>(x)) {
        if m == 0 {
            r.problem(
                &e.key.span,
                "`cpu_millicores` must be at least 1 (1000 is one core)",
            );
        } else if sandbox.get("cpus").is_none() {
            let cpus = (f64::from(m) / 1000.0).to_string();
            limit(r, e, sandbox, "cpus", cpus);
        }
    }
    if let Some(mb) = get(t, "memory_mb").and_then(|x| r.uint::<u32>(x)) {
        if mb == 0 {
            r.problem(&e.key.span, "`memory_mb` must be at least 1");
        } else if sandbox.get("memory").is_none() {
            limit(r, e, sandbox, "memory", (u64::from(mb) << 20).to_string());
        }
    }
}

/// Sets the `[sandbox]` setting `key` from a `[limits]` value, checked.
fn limit(r: &mut Reader<'_>, e: &Entry, sandbox: &mut SandboxOverrides, key: &str, raw: String) {
    let Some(field) = cleanroom::fields::Field::by_sandbox_key(key) else {
        return;
    };
    if let Err(err) = sandbox.set(field, raw) {
        r.problem(&e.key.span, crate::fields::strip(&err));
    }
}

/// `[[scenario]]`: each becomes steps. `run` (a command line, split into
/// words as clnrm does) is one step, in `service` when given; a scenario's
/// own `steps` follow, in that service unless they name another.
pub(crate) fn read_scenarios(r: &mut Reader<'_>, e: &Entry, services: &[Service]) -> Vec<Step> {
    let mut out = Vec::new();
    for (i, (t, span)) in tables(r, e).into_iter().enumerate() {
        r.known_keys_ignoring(
            t,
            "[[scenario]]",
            &["name", "run", "service", "steps", "timeout_ms"],
            SCENARIO_IGNORED,
        );
        let name = get(t, "name")
            .and_then(|n| r.string(n))
            .unwrap_or_else(|| format!("scenario {}", i + 1));
        let service = get(t, "service").and_then(|s| service_ref(r, s, services));
        let timeout = get(t, "timeout_ms")
            .and_then(|x| r.uint::<u64>(x))
            .map(Duration::from_millis);
        let before = out.len();
        if let Some(run) = get(t, "run") {
            if let Some(command) = r.string(run).and_then(|s| words(r, &s, &run.value.span)) {
                out.push(Step {
                    name: name.clone(),
                    command,
                    stdin: None,
                    env: Default::default(),
                    workdir: None,
                    timeout,
                    service: service.clone(),
                    expect: Default::default(),
                    continue_on_failure: false,
                    at: r.problems.loc(&span),
                });
            }
        }
        if let Some(steps) = get(t, "steps") {
            for (j, (st, sspan)) in tables(r, steps).into_iter().enumerate() {
                let mut step = read_step(r, st, &sspan, j, services, "[[scenario.steps]]");
                step.name = format!("{name}: {}", step.name);
                if step.service.is_none() {
                    step.service = service.clone();
                }
                step.timeout = step.timeout.or(timeout);
                out.push(step);
            }
        }
        if out.len() == before && get(t, "run").is_none() && get(t, "steps").is_none() {
            r.problem(
                &span,
                format!("scenario `{name}` has neither `run` nor `steps`; give one"),
            );
        }
    }
    out
}

/// A command line split into words as a shell would, without running one:
/// spaces separate, quotes group, a backslash escapes (outside '...').
fn words(r: &mut Reader<'_>, line: &str, span: &Range<usize>) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut started = false;
    let (mut single, mut double, mut escaped) = (false, false, false);
    for c in line.chars() {
        if escaped {
            word.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if !single => escaped = true,
            '\'' if !double => {
                single = !single;
                started = true;
            }
            '"' if !single => {
                double = !double;
                started = true;
            }
            ' ' | '\t' | '\n' if !single && !double => {
                if started || !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            _ => word.push(c),
        }
    }
    if single || double {
        r.problem(span, "`run` has an unclosed quote");
        return None;
    }
    if started || !word.is_empty() {
        out.push(word);
    }
    if out.is_empty() {
        r.problem(
            span,
            "`run` is empty; give a command line such as \"echo hi\"",
        );
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::parse_str;

    #[test]
    fn v1_format_reads_meta_services_scenarios_and_limits() {
        let text = r#"
[meta]
name = "v1"
version = "1.0"
description = "clnrm v1.0"

[service.db]
plugin = "generic_container"
image = "alpine:latest"
args = ["sleep", "100"]

[[scenario]]
name = "hello"
service = "db"
run = "sh -lc 'echo \"hi there\"'"
timeout_ms = 5000

[[scenario]]
name = "nested"
[[scenario.steps]]
name = "inner"
command = ["true"]

[limits]
cpu_millicores = 500
memory_mb = 256

[otel]
exporter = "stdout"

[expect.status]
all = "OK"
"#;
        let f = parse_str(Path::new("v1.clnrm.toml"), text).unwrap();
        assert_eq!(f.name, "v1");
        assert_eq!(f.version.as_deref(), Some("1.0"));
        assert_eq!(f.services[0].name(), "db");
        assert_eq!(
            f.services[0].model.command.as_deref(),
            Some(&["sleep".to_string(), "100".to_string()][..])
        );
        assert_eq!(f.steps[0].command, ["sh", "-lc", "echo \"hi there\""]);
        assert_eq!(f.steps[0].service.as_deref(), Some("db"));
        assert_eq!(f.steps[0].timeout.map(|t| t.as_secs()), Some(5));
        assert_eq!(f.steps[1].name, "nested: inner");
        let spec = f.sandbox.apply(&cleanroom::SandboxSpec::default());
        assert_eq!(spec.cpus, Some(0.5));
        assert_eq!(spec.memory, Some(256 << 20));
        let w: Vec<String> = f.warnings.iter().map(|w| w.to_string()).collect();
        assert!(w.iter().any(|w| w.contains("`otel`")), "{w:?}");
        assert!(w.iter().any(|w| w.contains("`expect`")), "{w:?}");
    }

    #[test]
    fn scenario_problems_name_their_place() {
        let e = parse_str(
            Path::new("x.clnrm.toml"),
            "[[scenario]]\nname = \"a\"\nrun = \"echo 'x\"\n\n[[scenario]]\nname = \"b\"\n",
        )
        .unwrap_err();
        let e: Vec<String> = e.iter().map(|p| p.to_string()).collect();
        assert!(
            e[0].starts_with("x.clnrm.toml:3:7: `run` has an unclosed quote"),
            "{e:?}"
        );
        assert!(e[1].contains("scenario `b` has neither"), "{e:?}");
    }
}
