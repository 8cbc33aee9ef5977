//! Compose files read as they are: several `-f` files merged in compose's
//! order, `.env` and `${VAR}` interpolation, anchors and merge keys, `x-`
//! extensions, profiles; every other key a warning at `file:line`.

use std::path::{Path, PathBuf};

use crate::fields::Reader;
use crate::interpolate::{interpolate, Issue, Variables};
use crate::model::{Environment, Service};
use crate::problem::{Location, Problems};
use crate::tree::{Key, Node, Value};

/// The top-level keys compose files have that we read.
const TOP_KEYS: &[&str] = &["services", "volumes", "name", "version"];

/// The service keys we honour.
pub const SERVICE_KEYS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "working_dir",
    "user",
    "ports",
    "expose",
    "volumes",
    "depends_on",
    "healthcheck",
    "restart",
    "profiles",
];

/// One compose file, parsed and interpolated, before merging.
pub struct ComposeFile {
    pub path: PathBuf,
    pub root: Node,
}

/// Reads and interpolates one compose file. Errors go to `problems`.
pub fn read_file(path: &Path, vars: &Variables, problems: &mut Problems) -> Option<ComposeFile> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.error(Location::new(path, 0), format!("cannot read it: {e}"));
            return None;
        }
    };
    let mut root = match crate::yaml::parse(&text) {
        Ok(r) => r,
        Err((line, message)) => {
            problems.error(
                Location::new(path, line),
                format!("not valid YAML: {message}"),
            );
            return None;
        }
    };
    if root.as_map().is_none() {
        problems.error(
            Location::new(path, root.line),
            "a compose file is a map with `services:`",
        );
        return None;
    }
    interpolate_tree(&mut root, path, vars, problems);
    Some(ComposeFile {
        path: path.to_path_buf(),
        root,
    })
}

/// Interpolates every scalar value (keys stay as written), as compose does
/// before anything else reads the file.
fn interpolate_tree(node: &mut Node, path: &Path, vars: &Variables, problems: &mut Problems) {
    match &mut node.value {
        Value::Scalar(text, _) => {
            if !text.contains('$') {
                return;
            }
            let mut issues = Vec::new();
            *text = interpolate(text, vars, &mut issues);
            let at = Location::new(path, node.line);
            for issue in issues {
                match issue {
                    Issue::Required { name, message } => problems.error(
                        at.clone(),
                        format!("required variable `{name}` is not set: {message} (set it in the environment or in .env)"),
                    ),
                    Issue::Unset(name) => problems.warn(
                        at.clone(),
                        format!("variable `{name}` is not set; it is replaced by an empty string"),
                    ),
                    Issue::Syntax(m) => problems.error(at.clone(), m),
                }
            }
        }
        Value::List(items) => {
            for i in items {
                interpolate_tree(i, path, vars, problems);
            }
        }
        Value::Map(entries) => {
            for (_, v) in entries {
                interpolate_tree(v, path, vars, problems);
            }
        }
    }
}

/// Merges `over` into `base` as compose merges a later `-f` file.
pub fn merge_files(base: &mut Node, over: Node) {
    let (Value::Map(b), Value::Map(o)) = (&mut base.value, over.value) else {
        return;
    };
    for (k, v) in o {
        match b.iter_mut().find(|(bk, _)| bk.name == k.name) {
            Some((_, bv)) if k.name == "services" || k.name == "volumes" => merge_by_name(bv, v),
            Some((bk, bv)) => {
                *bk = k;
                *bv = v;
            }
            None => b.push((k, v)),
        }
    }
}

/// Top-level `services`/`volumes`: entry by entry.
fn merge_by_name(base: &mut Node, over: Node) {
    if base.as_map().is_none() || over.as_map().is_none() {
        *base = over;
        return;
    }
    let (Value::Map(b), Value::Map(o)) = (&mut base.value, over.value) else {
        return;
    };
    for (k, v) in o {
        match b.iter_mut().find(|(bk, _)| bk.name == k.name) {
            Some((_, bv)) => merge_service(bv, v),
            None => b.push((k, v)),
        }
    }
}

/// One service over another, compose's rules: `ports`, `env_file`,
/// `profiles` append; `environment`, `depends_on`, `healthcheck` merge by
/// key; `volumes` by target; everything else replaces.
fn merge_service(base: &mut Node, over: Node) {
    let Value::Map(b) = &mut base.value else {
        *base = over;
        return;
    };
    let Value::Map(o) = over.value else {
        return;
    };
    for (k, v) in o {
        let Some(pos) = b.iter().position(|(bk, _)| bk.name == k.name) else {
            b.push((k, v));
            continue;
        };
        let bv = &mut b[pos].1;
        match k.name.as_str() {
            "ports" | "expose" | "env_file" | "profiles" => {
                let mut items = as_items(bv);
                for item in as_items(&v) {
                    if !items.iter().any(|i| i.value == item.value) {
                        items.push(item);
                    }
                }
                bv.value = Value::List(items);
            }
            "environment" | "depends_on" => {
                let mut map = as_keyed(bv);
                for (ik, iv) in as_keyed(&v) {
                    match map.iter_mut().find(|(mk, _)| mk.name == ik.name) {
                        Some(slot) => *slot = (ik, iv),
                        None => map.push((ik, iv)),
                    }
                }
                bv.value = Value::Map(map);
            }
            "healthcheck" => merge_by_key(bv, v),
            "volumes" => {
                let mut items = as_items(bv);
                for item in as_items(&v) {
                    let target = volume_target(&item);
                    match items.iter_mut().find(|i| volume_target(i) == target) {
                        Some(slot) => *slot = item,
                        None => items.push(item),
                    }
                }
                bv.value = Value::List(items);
            }
            _ => b[pos] = (k, v),
        }
    }
}

fn merge_by_key(base: &mut Node, over: Node) {
    match (&mut base.value, over.value) {
        (Value::Map(b), Value::Map(o)) => {
            for (k, v) in o {
                match b.iter_mut().find(|(bk, _)| bk.name == k.name) {
                    Some(slot) => *slot = (k, v),
                    None => b.push((k, v)),
                }
            }
        }
        (_, value) => base.value = value,
    }
}

fn as_items(n: &Node) -> Vec<Node> {
    match &n.value {
        Value::List(items) => items.clone(),
        _ => vec![n.clone()],
    }
}

/// A list of `K=V` / names as a map, so two files' entries merge by key.
fn as_keyed(n: &Node) -> Vec<(Key, Node)> {
    match &n.value {
        Value::Map(m) => m.clone(),
        Value::List(items) => items
            .iter()
            .filter_map(|i| {
                let text = i.text()?;
                let (k, v) = match text.split_once('=') {
                    Some((k, v)) => (k, Node::scalar(v, crate::tree::ScalarKind::Str, i.line)),
                    // `depends_on: [db]` and `environment: [NAME]`.
                    None => (
                        text,
                        Node::scalar("", crate::tree::ScalarKind::Null, i.line),
                    ),
                };
                Some((
                    Key {
                        name: k.to_string(),
                        line: i.line,
                    },
                    v,
                ))
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn volume_target(n: &Node) -> Option<String> {
    match n.text() {
        Some(s) => s.split(':').nth(1).map(str::to_string),
        None => n.get("target").and_then(|t| t.text()).map(str::to_string),
    }
}

/// Reads the merged compose document into `env`.
pub fn read_services(
    root: &Node,
    file: &Path,
    dir: &Path,
    vars: &Variables,
    problems: &mut Problems,
    env: &mut Environment,
) {
    let mut r = Reader {
        file,
        dir,
        problems,
        vars,
    };
    for (k, v) in root.as_map().unwrap_or_default() {
        if k.name.starts_with("x-") {
            continue;
        }
        if !TOP_KEYS.contains(&k.name.as_str()) {
            r.unknown_key(&k.name, k.line, "the compose file", TOP_KEYS);
        }
        if k.name == "volumes" {
            for (name, _) in v.as_map().unwrap_or_default() {
                if !env.volumes.contains(&name.name) {
                    env.volumes.push(name.name.clone());
                }
            }
        }
    }
    let Some(services) = root.get("services") else {
        r.error(root.line, "the compose file has no `services`");
        return;
    };
    let Some(entries) = services.as_map() else {
        r.error(services.line, "`services` must be a map of service names");
        return;
    };
    for (k, node) in entries {
        if let Some(s) = read_service(&mut r, k, node) {
            env.services.push(s);
        }
    }
}

fn read_service(r: &mut Reader<'_>, key: &Key, n: &Node) -> Option<Service> {
    let (mut s, entries) = r.service(key, n, &format!("service `{}` must be a map", key.name))?;
    for (k, v) in entries {
        match k.name.as_str() {
            "image" => s.image = r.string(v, "image"),
            "command" => s.command = r.argv(v, "command"),
            "entrypoint" => s.entrypoint = r.argv(v, "entrypoint"),
            "environment" => s.env.extend(r.env(v, "environment")),
            "env_file" => {}
            "working_dir" => s.working_dir = r.string(v, "working_dir").map(PathBuf::from),
            "user" => s.user = r.string(v, "user"),
            "ports" => {
                for p in r.ports(v) {
                    add_port(&mut s.ports, p);
                }
            }
            // Ports reachable by other services only: in a pod, every port is.
            "expose" => {
                for p in r.ports(v) {
                    add_port(
                        &mut s.ports,
                        crate::model::Port {
                            container: p.container,
                            host: None,
                        },
                    );
                }
            }
            "volumes" => s.volumes = r.volumes(v),
            "depends_on" => s.depends_on = r.depends_on(v),
            "healthcheck" => s.healthcheck = r.healthcheck(v),
            "restart" => s.restart = r.restart(v),
            "profiles" => s.profiles = r.strings(v, "profiles").unwrap_or_default(),
            x if x.starts_with("x-") => {}
            other => r.unknown_key(
                other,
                k.line,
                &format!("service `{}`", key.name),
                SERVICE_KEYS,
            ),
        }
    }
    Some(s)
}

/// Adds a port unless the service already declares it (`ports` and
/// `expose` often name the same one).
fn add_port(ports: &mut Vec<crate::model::Port>, p: crate::model::Port) {
    match ports.iter_mut().find(|q| q.container == p.container) {
        Some(q) => q.host = q.host.or(p.host),
        None => ports.push(p),
    }
}
