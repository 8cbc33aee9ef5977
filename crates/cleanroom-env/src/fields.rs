//! Reading one service's keys from a [`Node`], shared by compose files and
//! `[services.*]` tables: each key's forms, checks and compose defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::interpolate::{parse_env_file, Variables};
use crate::model::{
    parse_compose_duration, Condition, Dependency, Healthcheck, Port, Probe, Restart, Service,
    Volume, VolumeSource,
};
use crate::problem::{Location, Problems};
use crate::syntax::{did_you_mean, normalize, parse_port, split_words};
use crate::tree::{Key, Node, ScalarKind, Value};

/// What a reader needs besides the node: where it is, where problems go,
/// and the variables `environment: [NAME]` entries take their value from.
pub struct Reader<'a> {
    pub file: &'a Path,
    /// Relative paths (bind mounts, env files) are resolved against it.
    pub dir: &'a Path,
    pub problems: &'a mut Problems,
    pub vars: &'a Variables,
}

impl Reader<'_> {
    pub fn at(&self, line: usize) -> Location {
        Location::new(self.file, line)
    }

    pub fn error(&mut self, line: usize, message: impl Into<String>) {
        let at = self.at(line);
        self.problems.error(at, message);
    }

    pub fn warn(&mut self, line: usize, message: impl Into<String>) {
        let at = self.at(line);
        self.problems.warn(at, message);
    }

    /// The start of one service, in either file kind: its name checked, its
    /// keys (`not_a_map` when it has none) and its `env_file` variables,
    /// which `environment`/`env` entries then override, as compose orders them.
    pub fn service<'n>(
        &mut self,
        key: &Key,
        n: &'n Node,
        not_a_map: &str,
    ) -> Option<(Service, &'n [(Key, Node)])> {
        if cleanroom::detached::validate_name(&key.name).is_err() {
            self.error(
                key.line,
                format!(
                    "service name `{}` is not valid: use letters, digits, `_`, `.` or `-`",
                    key.name
                ),
            );
            return None;
        }
        let Some(entries) = n.as_map() else {
            self.error(n.line, not_a_map);
            return None;
        };
        let mut s = Service {
            name: key.name.clone(),
            at: self.at(key.line),
            ..Service::default()
        };
        if let Some(f) = n.get("env_file") {
            s.env = self.env_files(f);
        }
        Some((s, entries))
    }

    /// A scalar as a string, or an error naming `what`.
    pub fn string(&mut self, n: &Node, what: &str) -> Option<String> {
        match n.text() {
            Some(s) => Some(s.to_string()),
            None => {
                self.error(
                    n.line,
                    format!("`{what}` must be a string, not {}", n.kind_name()),
                );
                None
            }
        }
    }

    /// A list of scalars.
    pub fn strings(&mut self, n: &Node, what: &str) -> Option<Vec<String>> {
        let Some(items) = n.as_list() else {
            self.error(
                n.line,
                format!("`{what}` must be a list, not {}", n.kind_name()),
            );
            return None;
        };
        items.iter().map(|i| self.string(i, what)).collect()
    }

    /// `command`/`entrypoint`: a list, or a string split as a shell would
    /// split words (no shell runs it).
    pub fn argv(&mut self, n: &Node, what: &str) -> Option<Vec<String>> {
        if n.as_list().is_some() {
            return self.strings(n, what);
        }
        let s = self.string(n, what)?;
        match split_words(&s) {
            Ok(words) => Some(words),
            Err(e) => {
                self.error(n.line, format!("`{what}`: {e}"));
                None
            }
        }
    }

    /// `environment`/`env`: a map (a null value takes the variable from the
    /// caller's environment) or a list of `K=V` / `K`.
    pub fn env(&mut self, n: &Node, what: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match &n.value {
            Value::Map(entries) => {
                for (k, v) in entries {
                    let value = match &v.value {
                        Value::Scalar(_, ScalarKind::Null) => {
                            self.vars.values.get(&k.name).cloned()
                        }
                        Value::Scalar(s, _) => Some(s.clone()),
                        _ => {
                            self.error(
                                v.line,
                                format!(
                                    "`{what}.{}` must be a string, not {}",
                                    k.name,
                                    v.kind_name()
                                ),
                            );
                            None
                        }
                    };
                    if let Some(value) = value {
                        out.insert(k.name.clone(), value);
                    }
                }
            }
            Value::List(items) => {
                for item in items {
                    let Some(s) = self.string(item, what) else {
                        continue;
                    };
                    match s.split_once('=') {
                        Some((k, v)) => {
                            out.insert(k.to_string(), v.to_string());
                        }
                        None => {
                            if let Some(v) = self.vars.values.get(&s) {
                                out.insert(s.clone(), v.clone());
                            }
                        }
                    }
                }
            }
            _ => self.error(
                n.line,
                format!(
                    "`{what}` must be a map or a list of KEY=VALUE, not {}",
                    n.kind_name()
                ),
            ),
        }
        out
    }

    /// `env_file`: one path or a list (long form `{path, required}` too);
    /// the files' variables, earlier files first.
    pub fn env_files(&mut self, n: &Node) -> BTreeMap<String, String> {
        let entries: Vec<&Node> = match n.as_list() {
            Some(items) => items.iter().collect(),
            None => vec![n],
        };
        let mut out = BTreeMap::new();
        for e in entries {
            let (path, required) = match e.as_map() {
                Some(_) => {
                    let path = e.get("path").and_then(|p| self.string(p, "env_file.path"));
                    let required = e.get("required").and_then(|r| r.text()) != Some("false");
                    (path, required)
                }
                None => (self.string(e, "env_file"), true),
            };
            let Some(path) = path else { continue };
            let full = self.dir.join(&path);
            match std::fs::read_to_string(&full) {
                Ok(text) => {
                    let (values, bad) = parse_env_file(&text);
                    for (line, raw) in bad {
                        self.warn(
                            e.line,
                            format!(
                                "{}:{line}: `{raw}` is not KEY=VALUE; skipped",
                                full.display()
                            ),
                        );
                    }
                    out.extend(values);
                }
                Err(err) if required => {
                    self.error(e.line, format!("env_file {}: {err}", full.display()))
                }
                Err(_) => {}
            }
        }
        out
    }

    /// `ports`: `80`, `"8080:80"`, `"127.0.0.1:8080:80/tcp"`, or the long
    /// form `{target, published}`.
    pub fn ports(&mut self, n: &Node) -> Vec<Port> {
        let Some(items) = n.as_list() else {
            self.error(
                n.line,
                format!("`ports` must be a list, not {}", n.kind_name()),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            let port = if item.as_map().is_some() {
                let target = item
                    .get("target")
                    .and_then(|t| t.text())
                    .and_then(|t| t.parse().ok());
                let published = item
                    .get("published")
                    .and_then(|p| p.text())
                    .and_then(|p| p.parse().ok());
                if let Some(proto) = item.get("protocol").and_then(|p| p.text()) {
                    if proto != "tcp" {
                        self.warn(
                            item.line,
                            format!("port protocol `{proto}`: only TCP ports are published"),
                        );
                    }
                }
                target.map(|container| Port {
                    container,
                    host: published,
                })
            } else {
                item.text().and_then(|s| parse_port(s).ok())
            };
            match port {
                Some(p) => out.push(p),
                None => self.error(
                    item.line,
                    format!(
                        "port `{}` is not PORT, HOST_PORT:PORT or IP:HOST_PORT:PORT (ports 1-65535, no ranges)",
                        item.text().unwrap_or("{...}")
                    ),
                ),
            }
        }
        out
    }

    /// `volumes`: `./dir:/in[:ro]`, `name:/in`, or the long form `{type,
    /// source, target, read_only}`.
    pub fn volumes(&mut self, n: &Node) -> Vec<Volume> {
        let Some(items) = n.as_list() else {
            self.error(
                n.line,
                format!("`volumes` must be a list, not {}", n.kind_name()),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            let parsed = if item.as_map().is_some() {
                let kind = item.get("type").and_then(|t| t.text()).unwrap_or("volume");
                let source = item
                    .get("source")
                    .and_then(|s| s.text())
                    .unwrap_or_default();
                let target = item
                    .get("target")
                    .and_then(|t| t.text())
                    .unwrap_or_default();
                let ro = item.get("read_only").and_then(|r| r.text()) == Some("true");
                match kind {
                    "bind" | "volume" if !source.is_empty() && !target.is_empty() => {
                        Ok(self.volume(source, target, ro, kind == "bind"))
                    }
                    other => Err(format!("volume type `{other}` needs a source and a target (bind and named volumes only)")),
                }
            } else {
                match item.text() {
                    Some(s) => self.short_volume(s),
                    None => Err(format!(
                        "a volume is a string or a map, not {}",
                        item.kind_name()
                    )),
                }
            };
            match parsed {
                Ok(v) => out.push(v),
                Err(e) => self.error(item.line, e),
            }
        }
        out
    }

    fn short_volume(&mut self, s: &str) -> Result<Volume, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [src, dst] => (*src, *dst, ""),
            [src, dst, mode] => (*src, *dst, *mode),
            [_] => return Err(format!("volume `{s}` has no source: anonymous volumes are not supported; name it (`data:{s}`)")),
            _ => return Err(format!("volume `{s}` is not SOURCE:TARGET[:ro|rw]")),
        };
        let read_only = match mode {
            "" | "rw" => false,
            "ro" => true,
            other => return Err(format!("volume `{s}`: mode `{other}` is not ro or rw")),
        };
        let is_path = source.starts_with('.') || source.starts_with('/') || source.starts_with('~');
        Ok(self.volume(source, target, read_only, is_path))
    }

    fn volume(&self, source: &str, target: &str, read_only: bool, bind: bool) -> Volume {
        let source = if bind {
            let expanded = match source.strip_prefix("~/") {
                Some(rest) => std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_default()
                    .join(rest),
                None => PathBuf::from(source),
            };
            VolumeSource::Bind(normalize(&self.dir.join(expanded)))
        } else {
            VolumeSource::Named(source.to_string())
        };
        Volume {
            source,
            target: PathBuf::from(target),
            read_only,
        }
    }

    /// `depends_on`: a name, a list of names, or a map of name to `{condition,
    /// required}` (or, in TOML, to the condition's name).
    pub fn depends_on(&mut self, n: &Node) -> Vec<Dependency> {
        let mut out = Vec::new();
        match &n.value {
            Value::List(items) => {
                for item in items {
                    if let Some(name) = self.string(item, "depends_on") {
                        out.push(Dependency {
                            service: name,
                            condition: Condition::Started,
                            required: true,
                            at: self.at(item.line),
                        });
                    }
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries {
                    let mut dep = Dependency {
                        service: k.name.clone(),
                        condition: Condition::Started,
                        required: true,
                        at: self.at(k.line),
                    };
                    let condition = match &v.value {
                        Value::Map(_) => {
                            for (key, _) in v.as_map().unwrap_or_default() {
                                if !["condition", "required", "restart"]
                                    .contains(&key.name.as_str())
                                {
                                    self.unknown_key(
                                        &key.name,
                                        key.line,
                                        "depends_on entry",
                                        &["condition", "required", "restart"],
                                    );
                                }
                            }
                            if let Some(r) = v.get("required") {
                                dep.required = r.text() != Some("false");
                            }
                            if v.get("restart").is_some() {
                                self.warn(v.line, "depends_on `restart` (restart with the dependency) is not supported; ignored");
                            }
                            v.get("condition").and_then(|c| c.text())
                        }
                        Value::Scalar(s, ScalarKind::Str) => Some(s.as_str()),
                        _ => None,
                    };
                    if let Some(c) = condition {
                        match Condition::ALL.iter().find(|(name, _)| *name == c) {
                            Some((_, cond)) => dep.condition = *cond,
                            None => {
                                self.error(v.line, format!("condition `{c}` is not service_started, service_healthy or service_completed_successfully"));
                                continue;
                            }
                        }
                    }
                    out.push(dep);
                }
            }
            // One name, as test files may write it.
            Value::Scalar(name, ScalarKind::Str) => out.push(Dependency {
                service: name.clone(),
                condition: Condition::Started,
                required: true,
                at: self.at(n.line),
            }),
            _ => self.error(
                n.line,
                format!(
                    "`depends_on` must be a name, a list or a map, not {}",
                    n.kind_name()
                ),
            ),
        }
        out
    }

    /// `healthcheck`: `test` as `["CMD", ...]`, `["CMD-SHELL", "..."]`,
    /// `["NONE"]` or a string; compose's defaults for the rest. `None` when
    /// disabled.
    pub fn healthcheck(&mut self, n: &Node) -> Option<Healthcheck> {
        const KEYS: &[&str] = &[
            "test",
            "interval",
            "timeout",
            "retries",
            "start_period",
            "start_interval",
            "disable",
        ];
        let Some(entries) = n.as_map() else {
            self.error(
                n.line,
                format!("`healthcheck` must be a map, not {}", n.kind_name()),
            );
            return None;
        };
        for (k, _) in entries {
            if !KEYS.contains(&k.name.as_str()) && !k.name.starts_with("x-") {
                self.unknown_key(&k.name, k.line, "healthcheck", KEYS);
            }
        }
        if n.get("disable").and_then(|d| d.text()) == Some("true") {
            return None;
        }
        let Some(test) = n.get("test") else {
            self.error(n.line, "`healthcheck` needs a `test` (compose reads it from the image; Cleanroom does not)");
            return None;
        };
        let probe = match test.as_list() {
            Some(_) => {
                let argv = self.strings(test, "healthcheck.test")?;
                match argv.split_first() {
                    Some((first, rest)) if first == "CMD" && !rest.is_empty() => {
                        Probe::Cmd(rest.to_vec())
                    }
                    Some((first, rest)) if first == "CMD-SHELL" && rest.len() == 1 => {
                        Probe::Shell(rest[0].clone())
                    }
                    Some((first, _)) if first == "NONE" => return None,
                    _ => {
                        self.error(test.line, "`healthcheck.test` is [\"CMD\", ARGS...], [\"CMD-SHELL\", \"SCRIPT\"], [\"NONE\"] or a string");
                        return None;
                    }
                }
            }
            None => Probe::Shell(self.string(test, "healthcheck.test")?),
        };
        let mut h = Healthcheck::new(probe);
        for (key, slot) in [
            ("interval", &mut h.interval),
            ("timeout", &mut h.timeout),
            ("start_period", &mut h.start_period),
        ] {
            if let Some(v) = n.get(key) {
                match v.text().and_then(parse_compose_duration) {
                    Some(d) => *slot = d,
                    None => self.error(
                        v.line,
                        format!("`healthcheck.{key}` is a duration like 5s, 1m30s or 500ms"),
                    ),
                }
            }
        }
        if let Some(v) = n.get("start_interval") {
            match v.text().and_then(parse_compose_duration) {
                Some(d) => h.start_interval = Some(d),
                None => self.error(v.line, "`healthcheck.start_interval` is a duration like 5s"),
            }
        }
        if let Some(v) = n.get("retries") {
            match v.text().and_then(|t| t.parse().ok()) {
                Some(r) => h.retries = r,
                None => self.error(v.line, "`healthcheck.retries` is a whole number"),
            }
        }
        Some(h)
    }

    pub fn restart(&mut self, n: &Node) -> Restart {
        let Some(s) = self.string(n, "restart") else {
            return Restart::No;
        };
        match s.parse() {
            Ok(r) => r,
            Err(e) => {
                self.error(n.line, e);
                Restart::No
            }
        }
    }

    /// An unknown key: a warning (an error under `--strict`), with the
    /// closest known key when one is close.
    pub fn unknown_key(&mut self, key: &str, line: usize, within: &str, known: &[&str]) {
        let hint = did_you_mean(key, known.iter().copied())
            .map(|k| format!("; did you mean `{k}`?"))
            .unwrap_or_default();
        self.warn(
            line,
            format!("unknown key `{key}` in {within}; it is not used{hint}"),
        );
    }
}

/// How long the test runner's `wait_for` waits unless it says: 30 s.
pub const DEFAULT_WAIT_FOR: Duration = Duration::from_secs(30);
