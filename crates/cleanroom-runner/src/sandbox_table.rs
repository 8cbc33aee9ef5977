//! The `[sandbox]` table: any field of a [`cleanroom::SandboxSpec`], set
//! over the configured spec for this one test.

use std::path::Path;

use cleanroom::fields::{Field, FIELDS};
use cleanroom::{Mount, SandboxSpec, Tmpfs};

use crate::fields::{get, Reader};
use crate::model::SandboxOverrides;
use crate::parse::located;
use crate::tree::{Entry, Node};

/// The `[sandbox]` keys that are not settings of [`FIELDS`] (those come
/// from the table: each field's `sandbox_key`).
const OWN_KEYS: &[&str] = &[
    "image",
    "rootfs",
    "env",
    "mounts",
    "tmpfs",
    "read_only_root",
    "hostname",
    "output_limit",
];

pub(crate) fn read(r: &mut Reader<'_>, e: &Entry) -> SandboxOverrides {
    let mut s = SandboxOverrides::default();
    let Some(t) = r.table(e) else {
        return s;
    };
    let keys: Vec<&str> = OWN_KEYS
        .iter()
        .copied()
        .chain(FIELDS.iter().filter_map(|f| f.sandbox_key))
        .collect();
    r.known_keys(t, "[sandbox]", &keys);
    for key in ["image", "rootfs"] {
        if let Some(i) = get(t, key) {
            if let Some(root) = r.parsed::<cleanroom::RootFs>(i) {
                s.rootfs = Some(located(r, root, &i.value.span));
            }
        }
    }
    s.env = get(t, "env").map(|x| r.env(x)).unwrap_or_default();
    s.read_only_root = get(t, "read_only_root").and_then(|x| r.bool(x));
    s.hostname = get(t, "hostname").and_then(|x| {
        let h = r.string(x);
        r.in_range(x, h, |h| cleanroom::ranges::hostname(&h).map(|()| h))
    });
    s.output_limit = get(t, "output_limit").and_then(|x| r.size(x));
    for field in FIELDS {
        let Some(x) = field.sandbox_key.and_then(|k| get(t, k)) else {
            continue;
        };
        let raw = match &x.value.value {
            Node::Str(v) => v.clone(),
            Node::Int(i) => i.to_string(),
            Node::Float(f) => f.to_string(),
            Node::Bool(b) => b.to_string(),
            other => {
                let msg = format!("a string, number or boolean, not {}", other.kind());
                r.report::<()>(x, Err(msg));
                continue;
            }
        };
        let checked = s.set(field, raw).map_err(|err| crate::fields::strip(&err));
        r.report(x, checked);
    }
    if let Some(m) = get(t, "mounts") {
        s.mounts = mounts(r, m);
    }
    if let Some(m) = get(t, "tmpfs") {
        s.tmpfs = tmpfs(r, m);
    }
    s
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
    /// Sets `field` from `raw` (as its `[sandbox]` key takes it), checked.
    pub fn set(&mut self, field: &'static Field, raw: String) -> cleanroom::Result<()> {
        field.apply_raw(&mut SandboxSpec::default(), &raw)?;
        self.settings.retain(|(f, _)| f.key != field.key);
        self.settings.push((field, raw));
        Ok(())
    }

    /// The text `[sandbox]` gave the setting with this key, if any.
    pub fn get(&self, sandbox_key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(f, _)| f.sandbox_key == Some(sandbox_key))
            .map(|(_, raw)| raw.as_str())
    }

    /// `base` (the configured spec) with this table's values on top.
    pub fn apply(&self, base: &SandboxSpec) -> SandboxSpec {
        let mut s = base.clone();
        if let Some(r) = &self.rootfs {
            s.rootfs = r.value.clone();
        }
        for (field, raw) in &self.settings {
            // Each was checked by `set` when the file was read.
            if let Err(e) = field.apply_raw(&mut s, raw) {
                unreachable!("`{}` = `{raw}` was checked when read: {e}", field.key);
            }
        }
        s.env.extend(self.env.clone());
        s.mounts.extend(self.mounts.clone());
        s.tmpfs.extend(self.tmpfs.clone());
        if let Some(v) = self.read_only_root {
            s.read_only_root = v;
        }
        if let Some(h) = &self.hostname {
            s.hostname = h.clone();
        }
        if let Some(o) = self.output_limit {
            s.output_limit = o;
        }
        s
    }
}
