//! `[services.NAME]` tables of `cleanroom.toml` or a test file: the keys
//! test files already use (`image`, `command`, `env`, `ports`, `wait_for`,
//! `depends_on`, ...) plus compose's `healthcheck`, `restart` and the rest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fields::{Reader, DEFAULT_WAIT_FOR};
use crate::interpolate::Variables;
use crate::model::{Environment, Healthcheck, Probe, Service};
use crate::problem::{Location, Problems};
use crate::tree::{Key, Node};

/// The keys of a `[services.NAME]` table.
pub const SERVICE_KEYS: &[&str] = &[
    "image",
    "command",
    "args",
    "entrypoint",
    "env",
    "env_file",
    "working_dir",
    "user",
    "ports",
    "volumes",
    "depends_on",
    "healthcheck",
    "wait_for",
    "restart",
    "profiles",
    "type",
    "plugin",
];

/// How often a `wait_for` condition is checked (counted probes; early
/// retries come sooner).
const WAIT_FOR_INTERVAL: Duration = Duration::from_millis(50);

/// Which tables hold the services, and which keys the caller reads itself.
#[derive(Clone, Copy, Debug)]
pub struct Tables<'a> {
    /// `["services"]`; a test file also has clnrm v1.0's `["service"]`.
    pub names: &'a [&'a str],
    /// Keys left to the caller (clnrm's own that a test file ignores).
    pub skip: &'a [&'a str],
    /// Whether unknown keys are warned about here (a caller that checks
    /// keys itself says no).
    pub report_unknown: bool,
}

impl Tables<'_> {
    /// `cleanroom.toml`'s `[services.*]`, every key checked here.
    pub const ENVIRONMENT: Tables<'static> = Tables {
        names: &["services"],
        skip: &[],
        report_unknown: true,
    };
}

/// Reads `text` (the TOML file at `path`); `None` when it has no
/// `[services]` table.
pub fn read(path: &Path, text: &str, problems: &mut Problems, env: &mut Environment) -> Option<()> {
    read_tables(path, text, Tables::ENVIRONMENT, problems, env)
}

/// Reads the services of `tables` in `text` (the TOML file at `path`);
/// `None` when it has none of them.
pub fn read_tables(
    path: &Path,
    text: &str,
    tables: Tables<'_>,
    problems: &mut Problems,
    env: &mut Environment,
) -> Option<()> {
    let root = match crate::tree::from_toml(text) {
        Ok(r) => r,
        Err((line, message)) => {
            problems.error(
                Location::new(path, line),
                format!("not valid TOML: {message}"),
            );
            return Some(());
        }
    };
    let found: Vec<&Node> = tables.names.iter().filter_map(|t| root.get(t)).collect();
    if found.is_empty() {
        return None;
    }
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let vars = Variables::from_dotenv_and_process(Default::default());
    let mut r = Reader {
        file: path,
        dir: &dir,
        problems,
        vars: &vars,
    };
    for services in found {
        let Some(entries) = services.as_map() else {
            r.error(
                services.line,
                "`services` must be a table of [services.NAME] tables",
            );
            continue;
        };
        for (k, n) in entries {
            let Some(s) = read_service(&mut r, k, n, tables) else {
                continue;
            };
            if env.service(&s.name).is_some() {
                r.error(k.line, format!("service `{}` is defined twice", s.name));
                continue;
            }
            for v in &s.volumes {
                if let crate::model::VolumeSource::Named(name) = &v.source {
                    if !env.volumes.contains(name) {
                        env.volumes.push(name.clone());
                    }
                }
            }
            env.services.push(s);
        }
    }
    Some(())
}

fn read_service(r: &mut Reader<'_>, key: &Key, n: &Node, tables: Tables<'_>) -> Option<Service> {
    let (mut s, entries) =
        r.service(key, n, &format!("[services.{}] must be a table", key.name))?;
    for (k, v) in entries {
        if tables.skip.contains(&k.name.as_str()) {
            continue;
        }
        match k.name.as_str() {
            "image" => s.image = r.string(v, "image"),
            "command" | "args" => s.command = command(r, v, &k.name),
            "entrypoint" => s.entrypoint = r.argv(v, "entrypoint"),
            "env" => s.env.extend(r.env(v, "env")),
            "env_file" => {}
            "working_dir" => s.working_dir = r.string(v, "working_dir").map(PathBuf::from),
            "user" => s.user = r.string(v, "user"),
            "ports" => s.ports = r.ports(v),
            "volumes" => s.volumes = r.volumes(v),
            "depends_on" => s.depends_on = r.depends_on(v),
            "healthcheck" => s.healthcheck = r.healthcheck(v),
            "wait_for" => {
                if s.healthcheck.is_some() || n.get("healthcheck").is_some() {
                    r.error(v.line, "give either `wait_for` or `healthcheck`, not both");
                } else {
                    s.healthcheck = wait_for(r, v);
                }
            }
            "restart" => s.restart = r.restart(v),
            "profiles" => s.profiles = r.strings(v, "profiles").unwrap_or_default(),
            "type" | "plugin" => {
                let kind = r.string(v, &k.name).unwrap_or_default();
                if kind != "generic_container" {
                    r.warn(v.line, format!("service type `{kind}` is a clnrm plugin; here it runs as a generic container of its image"));
                }
            }
            other if tables.report_unknown => r.unknown_key(
                other,
                k.line,
                &format!("[services.{}]", key.name),
                SERVICE_KEYS,
            ),
            _ => {}
        }
    }
    Some(s)
}

/// A command as test files write it: a list is the argv, a string runs
/// with `sh -c` (compose files split a string into words instead).
fn command(r: &mut Reader<'_>, n: &Node, what: &str) -> Option<Vec<String>> {
    match n.text() {
        Some(script) if n.as_list().is_none() => {
            Some(vec!["sh".to_string(), "-c".to_string(), script.to_string()])
        }
        _ => r.argv(n, what),
    }
}

/// The test runner's `wait_for = { port | log | command, timeout }` as a
/// health check probed until the timeout (a number: milliseconds).
fn wait_for(r: &mut Reader<'_>, n: &Node) -> Option<Healthcheck> {
    const KEYS: &[&str] = &["port", "log", "command", "timeout"];
    for (k, _) in n.as_map().unwrap_or_default() {
        if !KEYS.contains(&k.name.as_str()) {
            r.unknown_key(&k.name, k.line, "wait_for", KEYS);
        }
    }
    let mut probes = Vec::new();
    if let Some(p) = n.get("port") {
        match p
            .text()
            .and_then(|t| t.parse::<u16>().ok())
            .filter(|p| *p > 0)
        {
            Some(port) => probes.push(Probe::Port(port)),
            None => r.error(p.line, "`wait_for.port` is a number from 1 to 65535"),
        }
    }
    if let Some(l) = n.get("log") {
        if let Some(re) = r.string(l, "wait_for.log") {
            probes.push(Probe::Log(re));
        }
    }
    if let Some(c) = n.get("command") {
        if let Some(argv) = command(r, c, "wait_for.command") {
            probes.push(Probe::Cmd(argv));
        }
    }
    if probes.len() != 1 {
        r.error(
            n.line,
            "wait_for takes exactly one of `port`, `log` or `command` (plus an optional `timeout`)",
        );
        return None;
    }
    let timeout = match n.get("timeout") {
        Some(t) => match wait_for_timeout(t) {
            Some(d) => d,
            None => {
                r.error(t.line, "`wait_for.timeout` is a duration like 30s");
                DEFAULT_WAIT_FOR
            }
        },
        None => DEFAULT_WAIT_FOR,
    };
    let mut h = Healthcheck::new(probes.remove(0));
    h.interval = WAIT_FOR_INTERVAL;
    h.timeout = timeout.min(Duration::from_secs(10));
    // One more counted probe than fit in the timeout: the deadline ends it.
    let fit = timeout.as_millis().div_ceil(WAIT_FOR_INTERVAL.as_millis());
    h.retries = u32::try_from(fit + 1).unwrap_or(u32::MAX);
    h.deadline = Some(timeout);
    Some(h)
}

/// `"10s"`, `"400ms"`, or a number of milliseconds, as test files write it.
fn wait_for_timeout(n: &Node) -> Option<Duration> {
    match &n.value {
        crate::tree::Value::Scalar(ms, crate::tree::ScalarKind::Int) => {
            ms.parse().ok().map(Duration::from_millis)
        }
        _ => n.text().and_then(crate::model::parse_compose_duration),
    }
}
