//! The `[sandbox]` table: any field of a [`cleanroom::SandboxSpec`], set
//! over the configured spec for this one test.

use std::path::{Path, PathBuf};

use cleanroom::{Mount, SandboxSpec, Tmpfs};

use crate::fields::{get, Reader};
use crate::model::SandboxOverrides;
use crate::parse::located;
use crate::tree::{Entry, Node};

const KEYS: &[&str] = &[
    "image",
    "rootfs",
    "user",
    "env",
    "workdir",
    "mounts",
    "tmpfs",
    "network",
    "read_only_root",
    "hostname",
    "memory",
    "cpus",
    "pids",
    "timeout",
    "output_limit",
    "strict",
    "tmpfs_size",
    "userns",
];

pub(crate) fn read(r: &mut Reader<'_>, e: &Entry) -> SandboxOverrides {
    let mut s = SandboxOverrides::default();
    let Some(t) = r.table(e) else {
        return s;
    };
    r.known_keys(t, "[sandbox]", KEYS);
    for key in ["image", "rootfs"] {
        if let Some(i) = get(t, key) {
            if let Some(root) = r.parsed::<cleanroom::RootFs>(i) {
                s.rootfs = Some(located(r, root, &i.value.span));
            }
        }
    }
    s.user = get(t, "user").and_then(|x| r.parsed(x));
    s.env = get(t, "env").map(|x| r.env(x)).unwrap_or_default();
    s.workdir = get(t, "workdir").and_then(|x| target(r, x, "workdir"));
    s.network = get(t, "network").and_then(|x| r.parsed(x));
    s.read_only_root = get(t, "read_only_root").and_then(|x| r.bool(x));
    s.hostname = get(t, "hostname").and_then(|x| {
        let h = r.string(x);
        r.in_range(x, h, |h| cleanroom::ranges::hostname(&h).map(|()| h))
    });
    s.memory = get(t, "memory").and_then(|x| {
        let m = r.size(x);
        r.in_range(x, m, cleanroom::ranges::memory)
    });
    s.cpus = get(t, "cpus").and_then(|x| {
        let c = match &x.value.value {
            Node::Float(f) => Some(*f),
            Node::Int(i) => Some(*i as f64),
            _ => {
                r.problem(
                    &x.value.span,
                    "`cpus` is a positive number of cores, e.g. 1.5",
                );
                None
            }
        };
        r.in_range(x, c, cleanroom::ranges::cpus)
    });
    s.pids = get(t, "pids").and_then(|x| match &x.value.value {
        Node::Int(i) => {
            let checked = cleanroom::ranges::pids(*i).map_err(|err| crate::fields::strip(&err));
            r.report(x, checked)
        }
        _ => r.uint::<u64>(x),
    });
    s.timeout = get(t, "timeout").and_then(|x| r.duration(x));
    s.output_limit = get(t, "output_limit").and_then(|x| r.size(x));
    s.strict = get(t, "strict").and_then(|x| r.bool(x));
    s.tmpfs_size = get(t, "tmpfs_size").and_then(|x| r.size(x));
    s.userns = get(t, "userns").and_then(|x| r.parsed(x));
    if let Some(m) = get(t, "mounts") {
        s.mounts = mounts(r, m);
    }
    if let Some(m) = get(t, "tmpfs") {
        s.tmpfs = tmpfs(r, m);
    }
    s
}

/// A path inside the sandbox something is mounted on (see [`cleanroom::ranges::target`]).
fn target(r: &mut Reader<'_>, e: &Entry, what: &str) -> Option<PathBuf> {
    let p = PathBuf::from(r.string(e)?);
    r.in_range(e, Some(p), |p| {
        cleanroom::ranges::target(what, &p).map(|()| p)
    })
}

/// `"SRC:DST[:ro|rw]"` strings or `{ source, target, read_only }` tables;
/// relative sources are taken from the test file's directory and must exist.
fn mounts(r: &mut Reader<'_>, e: &Entry) -> Vec<Mount> {
    let Node::Array(items) = &e.value.value else {
        r.problem(&e.value.span, "`mounts` must be an array");
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let parsed = match &item.value {
            Node::Str(s) => s.parse::<Mount>().map_err(|err| crate::fields::strip(&err)),
            Node::Table(t) => {
                r.known_keys(t, "a mount", &["source", "target", "read_only"]);
                let source = get(t, "source").and_then(|x| r.string(x));
                let target = get(t, "target").and_then(|x| r.string(x));
                let read_only = get(t, "read_only").and_then(|x| r.bool(x)).unwrap_or(true);
                match (source, target) {
                    (Some(source), Some(target)) => Ok(Mount {
                        source: source.into(),
                        target: target.into(),
                        read_only,
                    }),
                    _ => Err("a mount table needs `source` and `target`".to_string()),
                }
            }
            other => Err(format!(
                "a mount is \"SRC:DST[:ro|rw]\" or a table, not {}",
                other.kind()
            )),
        };
        match parsed {
            Ok(mut m) => {
                if m.source.is_relative() {
                    m.source = r.dir.join(&m.source);
                }
                match m.source.canonicalize() {
                    Ok(abs) => m.source = abs,
                    Err(err) => {
                        r.problem(
                            &item.span,
                            format!("mount source `{}`: {err}", m.source.display()),
                        );
                        continue;
                    }
                }
                if let Err(err) = cleanroom::ranges::target("mount target", &m.target) {
                    r.problem(&item.span, crate::fields::strip(&err));
                    continue;
                }
                out.push(m);
            }
            Err(msg) => r.problem(&item.span, msg),
        }
    }
    out
}

fn tmpfs(r: &mut Reader<'_>, e: &Entry) -> Vec<Tmpfs> {
    let Node::Array(items) = &e.value.value else {
        r.problem(&e.value.span, "`tmpfs` must be an array of absolute paths");
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match &item.value {
            Node::Str(s) => match cleanroom::ranges::target("tmpfs", Path::new(s)) {
                Ok(()) => Some(Tmpfs {
                    target: s.into(),
                    size: None,
                }),
                Err(err) => {
                    r.problem(&item.span, crate::fields::strip(&err));
                    None
                }
            },
            _ => {
                r.problem(&item.span, "a tmpfs is an absolute path inside the sandbox");
                None
            }
        })
        .collect()
}

impl SandboxOverrides {
    /// `base` (the configured spec) with this table's values on top.
    pub fn apply(&self, base: &SandboxSpec) -> SandboxSpec {
        let mut s = base.clone();
        if let Some(r) = &self.rootfs {
            s.rootfs = r.value.clone();
        }
        if let Some(u) = self.user {
            s.user = u;
        }
        s.env.extend(self.env.clone());
        if let Some(w) = &self.workdir {
            s.workdir = w.clone();
        }
        s.mounts.extend(self.mounts.clone());
        s.tmpfs.extend(self.tmpfs.clone());
        if let Some(n) = &self.network {
            s.network = n.clone();
        }
        if let Some(v) = self.read_only_root {
            s.read_only_root = v;
        }
        if let Some(h) = &self.hostname {
            s.hostname = h.clone();
        }
        s.memory = self.memory.or(s.memory);
        s.cpus = self.cpus.or(s.cpus);
        s.pids = self.pids.or(s.pids);
        s.timeout = self.timeout.or(s.timeout);
        if let Some(o) = self.output_limit {
            s.output_limit = o;
        }
        if let Some(v) = self.strict {
            s.strict = v;
        }
        s.tmpfs_size = self.tmpfs_size.or(s.tmpfs_size);
        if let Some(u) = self.userns {
            s.userns = u;
        }
        s
    }
}
