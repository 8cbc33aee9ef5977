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

/// How often a `wait_for` condition is checked.
const WAIT_FOR_INTERVAL: Duration = Duration::from_millis(250);

/// Reads `text` (the TOML file at `path`); `None` when it has no
/// `[services]` table.
pub fn read(path: &Path, text: &str, problems: &mut Problems, env: &mut Environment) -> Option<()> {
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
    let services = root.get("services")?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let vars = Variables::from_dotenv_and_process(Default::default());
    let mut r = Reader {
        file: path,
        dir: &dir,
        problems,
        vars: &vars,
    };
    let Some(entries) = services.as_map() else {
        r.error(
            services.line,
            "`services` must be a table of [services.NAME] tables",
        );
        return Some(());
    };
    for (k, n) in entries {
        if let Some(s) = read_service(&mut r, k, n) {
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

fn read_service(r: &mut Reader<'_>, key: &Key, n: &Node) -> Option<Service> {
    let (mut s, entries) =
        r.service(key, n, &format!("[services.{}] must be a table", key.name))?;
    for (k, v) in entries {
        match k.name.as_str() {
            "image" => s.image = r.string(v, "image"),
            "command" | "args" => s.command = r.argv(v, &k.name),
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
            other => r.unknown_key(
                other,
                k.line,
                &format!("[services.{}]", key.name),
                SERVICE_KEYS,
            ),
        }
    }
    Some(s)
}

/// The test runner's `wait_for = { port | log | command, timeout }` as a
/// health check probed every 250 ms until the timeout.
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
        if let Some(argv) = r.argv(c, "wait_for.command") {
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
        Some(t) => match t.text().and_then(crate::model::parse_compose_duration) {
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
    h.retries = (timeout.as_millis() / WAIT_FOR_INTERVAL.as_millis()).max(1) as u32;
    Some(h)
}
