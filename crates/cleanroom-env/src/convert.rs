//! `cleanroom convert`: an environment written back as `[services.*]`
//! TOML that reads to the same services.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::model::{format_duration, Environment, Healthcheck, Probe, Restart, Service};

/// The TOML of `env`'s services, in file order.
pub fn to_toml(env: &Environment) -> String {
    let mut out = String::new();
    let from: Vec<String> = env.files.iter().map(|f| f.display().to_string()).collect();
    let _ = writeln!(
        out,
        "# The services of {}, as `cleanroom convert` wrote them.",
        from.join(", ")
    );
    for s in &env.services {
        out.push('\n');
        service(&mut out, s);
    }
    out
}

fn service(out: &mut String, s: &Service) {
    let _ = writeln!(out, "[services.{}]", key(&s.name));
    if let Some(i) = &s.image {
        let _ = writeln!(out, "image = {}", string(i));
    }
    if let Some(e) = &s.entrypoint {
        let _ = writeln!(out, "entrypoint = {}", list(e));
    }
    if let Some(c) = &s.command {
        let _ = writeln!(out, "command = {}", list(c));
    }
    if !s.env.is_empty() {
        let _ = writeln!(out, "env = {}", table(&s.env));
    }
    if let Some(w) = &s.working_dir {
        let _ = writeln!(out, "working_dir = {}", string(&w.display().to_string()));
    }
    if let Some(u) = &s.user {
        let _ = writeln!(out, "user = {}", string(u));
    }
    if !s.ports.is_empty() {
        let ports: Vec<String> = s
            .ports
            .iter()
            .map(|p| match p.host {
                None => p.container.to_string(),
                Some(_) => string(&p.to_string()),
            })
            .collect();
        let _ = writeln!(out, "ports = [{}]", ports.join(", "));
    }
    if !s.volumes.is_empty() {
        let v: Vec<String> = s.volumes.iter().map(|v| v.to_string()).collect();
        let _ = writeln!(out, "volumes = {}", list(&v));
    }
    if !s.depends_on.is_empty() {
        let deps: Vec<String> = s
            .depends_on
            .iter()
            .map(|d| {
                let value = if d.required {
                    string(d.condition.name())
                } else {
                    format!(
                        "{{ condition = {}, required = false }}",
                        string(d.condition.name())
                    )
                };
                format!("{} = {value}", key(&d.service))
            })
            .collect();
        let _ = writeln!(out, "depends_on = {{ {} }}", deps.join(", "));
    }
    if let Some(h) = &s.healthcheck {
        healthcheck(out, h);
    }
    if s.restart != Restart::No {
        let _ = writeln!(out, "restart = {}", string(&s.restart.to_string()));
    }
    if !s.profiles.is_empty() {
        let _ = writeln!(out, "profiles = {}", list(&s.profiles));
    }
}

fn healthcheck(out: &mut String, h: &Healthcheck) {
    let test = match &h.test {
        Probe::Cmd(argv) => {
            let mut all = vec!["CMD".to_string()];
            all.extend(argv.iter().cloned());
            list(&all)
        }
        Probe::Shell(s) => list(&["CMD-SHELL".to_string(), s.clone()]),
        // The runner's `wait_for` kinds have no compose spelling.
        Probe::Port(p) => {
            let _ = writeln!(
                out,
                "wait_for = {{ port = {p}, timeout = {} }}",
                string(&format_duration(h.interval * h.retries))
            );
            return;
        }
        Probe::Log(re) => {
            let _ = writeln!(
                out,
                "wait_for = {{ log = {}, timeout = {} }}",
                string(re),
                string(&format_duration(h.interval * h.retries))
            );
            return;
        }
    };
    let mut parts = vec![format!("test = {test}")];
    if h.interval != Healthcheck::DEFAULT_INTERVAL {
        parts.push(format!(
            "interval = {}",
            string(&format_duration(h.interval))
        ));
    }
    if h.timeout != Healthcheck::DEFAULT_TIMEOUT {
        parts.push(format!("timeout = {}", string(&format_duration(h.timeout))));
    }
    if h.retries != Healthcheck::DEFAULT_RETRIES {
        parts.push(format!("retries = {}", h.retries));
    }
    if !h.start_period.is_zero() {
        parts.push(format!(
            "start_period = {}",
            string(&format_duration(h.start_period))
        ));
    }
    if let Some(si) = h.start_interval {
        parts.push(format!("start_interval = {}", string(&format_duration(si))));
    }
    let _ = writeln!(out, "healthcheck = {{ {} }}", parts.join(", "));
}

fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        string(k)
    }
}

/// A TOML basic string.
fn string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|i| string(i)).collect();
    format!("[{}]", items.join(", "))
}

fn table(map: &BTreeMap<String, String>) -> String {
    let items: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{} = {}", key(k), string(v)))
        .collect();
    format!("{{ {} }}", items.join(", "))
}
