//! What an environment is once read, whatever file it came from: its
//! services, each with what to run, how to tell it is healthy, what it
//! waits for and how it restarts.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::problem::{Location, Problem};

/// An environment: a named set of services brought up and down together.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    /// `-p NAME`, else the directory's name, made into a valid sandbox name.
    pub name: String,
    /// The files it was read from, in the order they were merged.
    pub files: Vec<PathBuf>,
    /// In the order the files list them.
    pub services: Vec<Service>,
    /// Named volumes (compose's top-level `volumes`, and any a service uses).
    pub volumes: Vec<String>,
    /// What reading found worth saying but did not stop it.
    pub warnings: Vec<Problem>,
}

impl Environment {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// One service: a long-lived named sandbox of the environment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Service {
    pub name: String,
    /// An image, `host`, `file://DIR` or `tar://FILE`; `None` uses the
    /// configured root filesystem.
    pub image: Option<String>,
    /// Replaces the image's entrypoint; the command follows it.
    pub entrypoint: Option<Vec<String>>,
    /// `None` runs the image's default (or idles on `host`).
    pub command: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<PathBuf>,
    /// `UID[:GID]`.
    pub user: Option<String>,
    pub ports: Vec<Port>,
    pub volumes: Vec<Volume>,
    pub depends_on: Vec<Dependency>,
    pub healthcheck: Option<Healthcheck>,
    pub restart: Restart,
    /// Only started when one of these profiles is active (none: always).
    pub profiles: Vec<String>,
    pub at: Location,
}

impl Service {
    /// The argv its main process runs: entrypoint then command.
    pub fn argv(&self) -> Option<Vec<String>> {
        match (&self.entrypoint, &self.command) {
            (None, None) => None,
            (e, c) => Some(
                e.iter()
                    .flatten()
                    .chain(c.iter().flatten())
                    .cloned()
                    .collect(),
            ),
        }
    }
}

/// A port the service listens on, and the host loopback port it is
/// published to, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port {
    pub container: u16,
    pub host: Option<u16>,
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host {
            Some(h) => write!(f, "{h}:{}", self.container),
            None => write!(f, "{}", self.container),
        }
    }
}

/// A bind mount of a host path or a named volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    pub source: VolumeSource,
    pub target: PathBuf,
    pub read_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeSource {
    /// An absolute host path (relative ones are resolved against the file's directory).
    Bind(PathBuf),
    /// A volume of the environment, kept until `down -v`.
    Named(String),
}

impl fmt::Display for Volume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            VolumeSource::Bind(p) => write!(f, "{}", p.display())?,
            VolumeSource::Named(n) => write!(f, "{n}")?,
        }
        write!(f, ":{}", self.target.display())?;
        if self.read_only {
            write!(f, ":ro")?;
        }
        Ok(())
    }
}

/// One `depends_on` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dependency {
    pub service: String,
    pub condition: Condition,
    /// `required: false`: a dependency that is not defined or not started
    /// (its profile is off) is skipped with a warning instead of an error.
    pub required: bool,
    pub at: Location,
}

/// What a dependency must reach before its dependent starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Condition {
    Started,
    Healthy,
    CompletedSuccessfully,
}

impl Condition {
    pub const ALL: [(&'static str, Condition); 3] = [
        ("service_started", Condition::Started),
        ("service_healthy", Condition::Healthy),
        (
            "service_completed_successfully",
            Condition::CompletedSuccessfully,
        ),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Condition::Started => "service_started",
            Condition::Healthy => "service_healthy",
            Condition::CompletedSuccessfully => "service_completed_successfully",
        }
    }
}

/// How a service is checked for health, with compose's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Healthcheck {
    pub test: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    /// Failures in this first period do not count.
    pub start_period: Duration,
    /// How often to probe during `start_period` (compose: 5 s when set).
    pub start_interval: Option<Duration>,
    /// The test runner's `wait_for.timeout`: unhealthy once this long has
    /// passed, whatever the retries (compose has no such bound).
    pub deadline: Option<Duration>,
}

impl Healthcheck {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_RETRIES: u32 = 3;

    /// A probe with compose's defaults: every 30 s, 30 s timeout, 3 retries.
    pub fn new(test: Probe) -> Self {
        Healthcheck {
            test,
            interval: Self::DEFAULT_INTERVAL,
            timeout: Self::DEFAULT_TIMEOUT,
            retries: Self::DEFAULT_RETRIES,
            start_period: Duration::ZERO,
            start_interval: None,
            deadline: None,
        }
    }
}

/// What a health probe runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Probe {
    /// `["CMD", argv...]`: run directly in the service.
    Cmd(Vec<String>),
    /// `["CMD-SHELL", script]` or a string: run with `sh -c`.
    Shell(String),
    /// The test runner's `wait_for.port`: something listens on this TCP port.
    Port(u16),
    /// The test runner's `wait_for.log`: the service's output matches.
    Log(String),
}

/// `restart:` — honoured while a foreground `up` watches the environment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Restart {
    #[default]
    No,
    /// At most this many restarts (unlimited when `None`) after a non-zero exit.
    OnFailure(Option<u32>),
    Always,
    UnlessStopped,
}

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Restart::No => f.write_str("no"),
            Restart::OnFailure(None) => f.write_str("on-failure"),
            Restart::OnFailure(Some(n)) => write!(f, "on-failure:{n}"),
            Restart::Always => f.write_str("always"),
            Restart::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

impl std::str::FromStr for Restart {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "no" | "" => Restart::No,
            "always" => Restart::Always,
            "unless-stopped" => Restart::UnlessStopped,
            "on-failure" => Restart::OnFailure(None),
            _ => match s.strip_prefix("on-failure:").map(str::parse::<u32>) {
                Some(Ok(n)) => Restart::OnFailure(Some(n)),
                _ => {
                    return Err(format!(
                        "restart `{s}` is not one of no, always, unless-stopped, on-failure[:N]"
                    ))
                }
            },
        })
    }
}

/// A duration as compose writes it: `1m30s`, `500ms`, `10s`, `1h`, `2.5s`.
pub fn parse_compose_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<u64>() {
        // A bare number: seconds, as compose accepts.
        return Some(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(value * scale);
    }
    Some(total)
}

/// Compose's way to write a duration back (`1m30s`, `500ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let mut secs = d.as_secs();
    let mut out = String::new();
    if secs >= 3600 && secs % 3600 == 0 {
        return format!("{}h", secs / 3600);
    }
    if secs >= 60 {
        out.push_str(&format!("{}m", secs / 60));
        secs %= 60;
        if secs == 0 {
            return out;
        }
    }
    out.push_str(&format!("{secs}s"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        for (text, d) in [
            ("1m30s", Duration::from_secs(90)),
            ("500ms", Duration::from_millis(500)),
            ("10s", Duration::from_secs(10)),
            ("2h", Duration::from_secs(7200)),
        ] {
            assert_eq!(parse_compose_duration(text), Some(d), "{text}");
            assert_eq!(format_duration(d), text);
        }
        assert_eq!(
            parse_compose_duration("1.5s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_compose_duration("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_compose_duration("5x"), None);
    }

    #[test]
    fn restart_policies() {
        for s in [
            "no",
            "always",
            "unless-stopped",
            "on-failure",
            "on-failure:3",
        ] {
            assert_eq!(s.parse::<Restart>().unwrap().to_string(), s);
        }
        assert!("sometimes"
            .parse::<Restart>()
            .unwrap_err()
            .contains("on-failure[:N]"));
    }
}
