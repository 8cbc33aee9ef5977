//! The services' dependency graph: unknown dependencies (with a
//! did-you-mean), cycles named in full, and start levels: level 0 has no
//! dependencies, each later level depends only on earlier ones.

use std::collections::BTreeMap;

use crate::model::{Environment, Service};
use crate::problem::Problems;
use crate::syntax::did_you_mean;

/// The services in start levels; names within a level in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Levels(pub Vec<Vec<String>>);

/// Checks every dependency and orders the services. Every problem goes to
/// `problems`; levels are `None` when there is a cycle.
pub fn levels(env: &Environment, problems: &mut Problems) -> Option<Levels> {
    let index: BTreeMap<&str, usize> = env
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); env.services.len()];
    for (i, s) in env.services.iter().enumerate() {
        for d in &s.depends_on {
            match index.get(d.service.as_str()) {
                Some(&j) => edges[i].push(j),
                None if !d.required => problems.warn(
                    d.at.clone(),
                    format!("service `{}` depends on `{}`, which is not defined or not enabled; skipped (required: false)", s.name, d.service),
                ),
                None => {
                    let hint = did_you_mean(&d.service, index.keys().copied())
                        .map(|n| format!("; did you mean `{n}`?"))
                        .unwrap_or_else(|| format!("; the services are: {}", names(&env.services)));
                    problems.error(
                        d.at.clone(),
                        format!("service `{}` depends on unknown service `{}`{hint}", s.name, d.service),
                    );
                }
            }
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        let path: Vec<&str> = cycle
            .iter()
            .map(|&i| env.services[i].name.as_str())
            .collect();
        // At the dependency that closes the cycle: the last edge back.
        let last = &env.services[cycle[cycle.len() - 2]];
        let closing = path[path.len() - 1];
        let at = last
            .depends_on
            .iter()
            .find(|d| d.service == closing)
            .map(|d| d.at.clone())
            .unwrap_or_else(|| last.at.clone());
        problems.error(
            at,
            format!(
                "cyclic depends_on: {}; remove one of these dependencies",
                path.join(" -> ")
            ),
        );
        return None;
    }
    let mut level = vec![usize::MAX; env.services.len()];
    fn depth(i: usize, edges: &[Vec<usize>], level: &mut [usize]) -> usize {
        if level[i] == usize::MAX {
            let d = edges[i]
                .iter()
                .map(|&j| depth(j, edges, level) + 1)
                .max()
                .unwrap_or(0);
            level[i] = d;
        }
        level[i]
    }
    let mut out: Vec<Vec<String>> = Vec::new();
    for i in 0..env.services.len() {
        let d = depth(i, &edges, &mut level);
        if out.len() <= d {
            out.resize(d + 1, Vec::new());
        }
        out[d].push(env.services[i].name.clone());
    }
    Some(Levels(out))
}

fn names(services: &[Service]) -> String {
    services
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A cycle as the services on it, the first repeated at the end.
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        i: usize,
        edges: &[Vec<usize>],
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[i] = Mark::Open;
        stack.push(i);
        for &j in &edges[i] {
            match marks[j] {
                Mark::New => {
                    if let Some(c) = visit(j, edges, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Open => {
                    let from = stack.iter().position(|&x| x == j).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(j);
                    return Some(cycle);
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[i] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; edges.len()];
    for i in 0..edges.len() {
        if marks[i] == Mark::New {
            if let Some(c) = visit(i, edges, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// `service` and everything it depends on, transitively (for `up SERVICE`).
pub fn with_dependencies(env: &Environment, wanted: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut todo: Vec<String> = wanted.to_vec();
    while let Some(name) = todo.pop() {
        if out.contains(&name) {
            continue;
        }
        if let Some(s) = env.service(&name) {
            todo.extend(s.depends_on.iter().map(|d| d.service.clone()));
        }
        out.push(name);
    }
    out
}
