//! `[services.NAME]` tables and their `depends_on` graph: unknown names and
//! cycles are problems; the result is in start order, dependencies first.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use crate::fields::{get, Reader};
use crate::model::{Readiness, Service, WaitFor};
use crate::parse::located;
use crate::tree::{Entry, Node, Spanned};

const KEYS: &[&str] = &[
    "type",
    "plugin",
    "image",
    "env",
    "ports",
    "command",
    "depends_on",
    "wait_for",
    // clnrm v1.0: the service's command.
    "args",
];

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

/// How long a service may take to become ready unless `wait_for` says.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the `services` table; returns the services in start order.
pub(crate) fn read(r: &mut Reader<'_>, e: &Entry) -> Vec<Service> {
    let Some(entries) = r.table(e) else {
        return Vec::new();
    };
    let mut services = Vec::new();
    let mut deps: Vec<Vec<Spanned<String>>> = Vec::new();
    for s in entries {
        let name = s.key.value.clone();
        let Some(t) = r.table(s) else { continue };
        r.known_keys_ignoring(t, &format!("[services.{name}]"), KEYS, CLNRM_IGNORED);
        let kind = get(t, "type")
            .or_else(|| get(t, "plugin"))
            .and_then(|k| {
                let v = r.string(k)?;
                if v != "generic_container" {
                    // clnrm's plugins (surrealdb, otel_collector, ...) are
                    // containers of their image here, nothing more.
                    r.problems.warn(
                        &k.value.span,
                        format!(
                            "service type `{v}` is a clnrm plugin; here it runs as a generic_container of its image"
                        ),
                    );
                }
                Some(v)
            })
            .unwrap_or_else(|| "generic_container".into());
        let plugin = get(t, "plugin").and_then(|p| r.string(p));
        let image = get(t, "image").and_then(|i| {
            let root = r.parsed::<cleanroom::RootFs>(i)?;
            Some(located(r, root, &i.value.span))
        });
        let ports = get(t, "ports").map(|p| ports(r, p)).unwrap_or_default();
        let command = get(t, "command")
            .or_else(|| get(t, "args"))
            .and_then(|c| r.argv(c, true));
        let wait_for = get(t, "wait_for").and_then(|w| wait_for(r, w));
        deps.push(get(t, "depends_on").map(|d| r.names(d)).unwrap_or_default());
        services.push(Service {
            name,
            kind,
            plugin,
            image,
            env: get(t, "env").map(|x| r.env(x)).unwrap_or_default(),
            ports,
            command,
            depends_on: Vec::new(),
            wait_for,
            at: r.problems.loc(&s.key.span),
        });
    }
    for (svc, d) in services.iter_mut().zip(&deps) {
        svc.depends_on = d.iter().map(|n| n.value.clone()).collect();
    }
    order(r, services, &deps)
}

fn ports(r: &mut Reader<'_>, e: &Entry) -> Vec<u16> {
    let Node::Array(items) = &e.value.value else {
        r.problem(&e.value.span, "`ports` must be an array of port numbers");
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match &item.value {
            Node::Int(p) if (1..=65535).contains(p) => Some(*p as u16),
            _ => {
                r.problem(&item.span, "a port is a number from 1 to 65535");
                None
            }
        })
        .collect()
}

/// `wait_for = { port = N }`, `{ log = "regex" }` or `{ command = [...] }`,
/// each with an optional `timeout`.
fn wait_for(r: &mut Reader<'_>, e: &Entry) -> Option<WaitFor> {
    let t = r.table(e)?;
    r.known_keys(t, "wait_for", &["port", "log", "command", "timeout"]);
    let timeout = get(t, "timeout")
        .and_then(|x| r.duration(x))
        .unwrap_or(DEFAULT_READY_TIMEOUT);
    let mut conditions = Vec::new();
    if let Some(p) = get(t, "port") {
        match &p.value.value {
            Node::Int(n) if (1..=65535).contains(n) => conditions.push(Readiness::Port(*n as u16)),
            _ => r.problem(&p.value.span, "`port` is a number from 1 to 65535"),
        }
    }
    if let Some(l) = get(t, "log") {
        if let Some(re) = r.regex(l) {
            conditions.push(Readiness::Log(re));
        }
    }
    if let Some(c) = get(t, "command") {
        if let Some(argv) = r.argv(c, true) {
            conditions.push(Readiness::Command(argv));
        }
    }
    let present = ["port", "log", "command"]
        .iter()
        .filter(|k| get(t, k).is_some())
        .count();
    if present != 1 {
        r.problem(
            &e.value.span,
            "wait_for takes exactly one of `port`, `log` or `command` (plus an optional `timeout`)",
        );
        return None;
    }
    conditions
        .pop()
        .map(|condition| WaitFor { condition, timeout })
}

/// Puts `services` in start order; unknown dependencies and cycles are problems.
fn order(
    r: &mut Reader<'_>,
    services: Vec<Service>,
    deps: &[Vec<Spanned<String>>],
) -> Vec<Service> {
    let index: BTreeMap<&str, usize> = services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut edges: Vec<Vec<(usize, Range<usize>)>> = vec![Vec::new(); services.len()];
    for (i, d) in deps.iter().enumerate() {
        for name in d {
            match index.get(name.value.as_str()) {
                Some(&j) => edges[i].push((j, name.span.clone())),
                None => {
                    let known: Vec<&str> = index.keys().copied().collect();
                    r.problem(
                        &name.span,
                        format!(
                            "service `{}` depends on unknown service `{}`; the services are: {}",
                            services[i].name,
                            name.value,
                            known.join(", ")
                        ),
                    );
                }
            }
        }
    }
    // Depth-first topological sort; a back edge is a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks = vec![Mark::New; services.len()];
    let mut order = Vec::new();
    let mut reported_cycle = false;
    fn visit(
        i: usize,
        edges: &[Vec<(usize, Range<usize>)>],
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
        order: &mut Vec<usize>,
        cycle: &mut Option<(Vec<usize>, Range<usize>)>,
    ) {
        marks[i] = Mark::Open;
        stack.push(i);
        for (j, span) in &edges[i] {
            match marks[*j] {
                Mark::New => visit(*j, edges, marks, stack, order, cycle),
                Mark::Open if cycle.is_none() => {
                    let from = stack.iter().position(|x| x == j).unwrap_or(0);
                    let mut path = stack[from..].to_vec();
                    path.push(*j);
                    *cycle = Some((path, span.clone()));
                }
                _ => {}
            }
        }
        stack.pop();
        marks[i] = Mark::Done;
        order.push(i);
    }
    for i in 0..services.len() {
        if marks[i] == Mark::New {
            let mut cycle = None;
            visit(
                i,
                &edges,
                &mut marks,
                &mut Vec::new(),
                &mut order,
                &mut cycle,
            );
            if let (Some((path, span)), false) = (cycle, reported_cycle) {
                let names: Vec<&str> = path.iter().map(|k| services[*k].name.as_str()).collect();
                r.problem(
                    &span,
                    format!(
                        "cyclic depends_on: {}; remove one of these dependencies",
                        names.join(" -> ")
                    ),
                );
                reported_cycle = true;
            }
        }
    }
    let mut slots: Vec<Option<Service>> = services.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}
