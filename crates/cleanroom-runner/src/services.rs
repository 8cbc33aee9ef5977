//! `[services.NAME]` tables (and clnrm v1.0's `[service.NAME]`), read by
//! cleanroom-env's reader as `cleanroom.toml`'s are, dependencies checked by
//! its graph. Here only what is the test file's own: clnrm's keys accepted
//! and ignored, the `type`/`plugin` that `plugin_should_be_loaded` names,
//! and each problem placed at its column.

use std::ops::Range;

use cleanroom_env::{Severity, Tables, SERVICE_KEYS};

use crate::fields::{get, Reader};
use crate::model::Service;
use crate::tree::{Entry, Node};

/// clnrm's service keys accepted without being honoured (warned about).
const CLNRM_IGNORED: &[&str] = &[
    "volumes",
    "health_check",
    "username",
    "password",
    "strict",
    "wait_for_span",
    "wait_for_span_timeout_secs",
];

/// The tables services are read from.
const TABLES: Tables<'static> = Tables {
    names: &["services", "service"],
    skip: CLNRM_IGNORED,
    // Checked here, against the same keys, with the runner's typo rule.
    report_unknown: false,
};

/// Reads the services of `e` (the merged `services`/`service` table) in
/// `text`, the file as parsed; in file order (the engine orders the start).
pub(crate) fn read(r: &mut Reader<'_>, e: &Entry, text: &str) -> Vec<Service> {
    let Some(entries) = r.table(e) else {
        return Vec::new();
    };
    let known: Vec<&str> = SERVICE_KEYS
        .iter()
        .copied()
        .filter(|k| !CLNRM_IGNORED.contains(k))
        .collect();
    let mut headers = Vec::new();
    for s in entries {
        let name = s.key.value.clone();
        let Some(t) = r.table(s) else { continue };
        r.known_keys_ignoring(t, &format!("[services.{name}]"), &known, CLNRM_IGNORED);
        let kind = get(t, "type")
            .or_else(|| get(t, "plugin"))
            .and_then(|k| r.string(k));
        let plugin = get(t, "plugin").and_then(|p| r.string(p));
        // Checked now, so that `validate` finds them; the engine uses them.
        if let Some(i) = get(t, "image") {
            let _ = r.parsed::<cleanroom::RootFs>(i);
        }
        if let Some(Node::Table(w)) = get(t, "wait_for").map(|w| &w.value.value) {
            if let Some(log) = get(w, "log") {
                let _ = r.regex(log);
            }
        }
        headers.push((name, kind, plugin, r.problems.loc(&s.key.span)));
    }
    let (models, problems) = cleanroom_env::read_service_tables(r.problems.file, text, TABLES);
    let spans = leaf_spans(entries);
    for p in problems {
        let span = span_on_line(r, &spans, p.at.line);
        match p.severity {
            Severity::Error => r.problem(&span, p.message),
            Severity::Warning => r.problems.warn(&span, p.message),
        }
    }
    // A test's own services are held by this process and their main
    // process's exit is not watched: a one-shot condition would wait for
    // the test's timeout. Refused here, with the way out.
    for m in &models {
        for d in &m.depends_on {
            if d.condition == cleanroom_env::Condition::CompletedSuccessfully {
                let span = span_on_line(r, &spans, d.at.line);
                r.problem(
                    &span,
                    format!(
                        "service `{}`: condition = \"service_completed_successfully\" on `{}` is not available for a test file's own services (they live as long as the test and their exit is not watched); run the one-shot as a step, or put the services in an environment file named by `environment = \"FILE\"`",
                        m.name, d.service
                    ),
                );
            }
        }
    }
    models
        .into_iter()
        .filter_map(|model| {
            let (_, kind, plugin, at) = headers.iter().find(|h| h.0 == model.name)?.clone();
            Some(Service {
                model,
                kind: kind.unwrap_or_else(|| "generic_container".to_string()),
                plugin,
                at,
            })
        })
        .collect()
}

/// Every value that holds no other, and every key, in the services'
/// tables: where a problem cleanroom-env found on a line is placed.
fn leaf_spans(entries: &[Entry]) -> (Vec<Range<usize>>, Vec<Range<usize>>) {
    fn walk(node: &Node, span: &Range<usize>, values: &mut Vec<Range<usize>>) {
        match node {
            Node::Array(items) => items.iter().for_each(|i| walk(&i.value, &i.span, values)),
            Node::Table(t) => t
                .iter()
                .for_each(|e| walk(&e.value.value, &e.value.span, values)),
            _ => values.push(span.clone()),
        }
    }
    fn keys(entries: &[Entry], out: &mut Vec<Range<usize>>) {
        for e in entries {
            out.push(e.key.span.clone());
            if let Node::Table(t) = &e.value.value {
                keys(t, out);
            }
        }
    }
    let (mut values, mut names) = (Vec::new(), Vec::new());
    for e in entries {
        walk(&e.value.value, &e.value.span, &mut values);
    }
    keys(entries, &mut names);
    (values, names)
}

/// The first value on `line`, else its first key; the file's start when
/// it has neither.
fn span_on_line(
    r: &Reader<'_>,
    (values, keys): &(Vec<Range<usize>>, Vec<Range<usize>>),
    line: usize,
) -> Range<usize> {
    let first = |spans: &[Range<usize>]| {
        spans
            .iter()
            .filter(|s| r.problems.loc(s).line == line)
            .min_by_key(|s| s.start)
            .cloned()
    };
    first(values).or_else(|| first(keys)).unwrap_or(0..0)
}
