//! The one table of settings: each entry names a field's file key, flag,
//! environment variable and `[sandbox]` key, parses and range-checks its
//! value, says its default and how `cleanroom config` shows it, and puts it
//! into a [`SandboxSpec`]. Flags, the environment, config files, the display
//! and the runner's `[sandbox]` table are all built from [`FIELDS`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::choice::BackendChoice;
use serde::Serialize;

use crate::config::{Config, Origin, Setting};
use crate::error::{Error, Result};
use crate::ranges;
use crate::spec::{parse_duration, parse_size, RootFs, SandboxSpec};

/// Which commands take a field's flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagScope {
    /// Every command that makes sandboxes (`run`, `test`, `config`, `self-test`).
    Sandbox,
    /// `cleanroom test` only.
    Test,
}

/// A field's command-line flag.
#[derive(Debug)]
pub struct Flag {
    /// Without the leading `--`.
    pub long: &'static str,
    pub short: Option<char>,
    pub value_name: &'static str,
    /// A switch takes no value: given means `true`.
    pub switch: bool,
    pub scope: FlagScope,
}

/// Values the table's test sets: two valid ones that differ, one out of range.
#[derive(Debug)]
pub struct Samples {
    pub valid: &'static str,
    pub other: &'static str,
    pub invalid: &'static str,
}

/// One setting, end to end.
pub struct Field {
    /// The key in `cleanroom.toml` and `Cargo.toml` tables, and the row of `cleanroom config`.
    pub key: &'static str,
    pub env: &'static str,
    pub flag: Flag,
    /// A second file key taking a duration (`"30s"`) for a key in milliseconds;
    /// the flag and the `[sandbox]` key take durations too.
    pub duration_key: Option<&'static str>,
    /// The key in a test file's `[sandbox]` table, when a test may set it.
    pub sandbox_key: Option<&'static str>,
    pub help: &'static str,
    /// Parses and range-checks `raw`, and stores it in the config.
    pub set: fn(&mut Config, &str, Origin) -> Result<()>,
    /// The value as `cleanroom config` shows it, and where it came from.
    pub show: fn(&Config) -> (String, &Origin),
    /// The value in `cleanroom config --json`.
    pub json: fn(&Config) -> Json,
    /// Whether the value lands in the [`SandboxSpec`] (else the caller uses it).
    pub in_spec: bool,
    pub samples: Samples,
}

impl fmt::Debug for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Field").field("key", &self.key).finish()
    }
}

impl Field {
    /// The field whose file key (or duration key) is `key`.
    pub fn by_key(key: &str) -> Option<&'static Field> {
        FIELDS
            .iter()
            .find(|f| f.key == key || f.duration_key == Some(key))
    }

    /// The field a test file's `[sandbox]` table sets with `key`.
    pub fn by_sandbox_key(key: &str) -> Option<&'static Field> {
        FIELDS.iter().find(|f| f.sandbox_key == Some(key))
    }

    /// The flag as written, `--name`.
    pub fn flag_name(&self) -> String {
        format!("--{}", self.flag.long)
    }

    /// The help text with the environment variable, as `--help` shows it.
    pub fn flag_help(&self) -> String {
        format!("{} [env: {}]", self.help, self.env)
    }

    /// `raw` as this field's file value: a duration (`30s`) turned into
    /// milliseconds when the field has a [`Field::duration_key`], else as is.
    pub fn from_duration_form(&self, raw: &str) -> Result<String> {
        if self.duration_key.is_none() {
            return Ok(raw.to_string());
        }
        Ok(parse_duration(raw)?.as_millis().to_string())
    }

    /// Parses `raw` (in the file key's form) and stores it in `config`;
    /// an error names the origin, the key and the value.
    pub fn set_checked(&self, config: &mut Config, raw: &str, origin: Origin) -> Result<()> {
        (self.set)(config, raw, origin.clone()).map_err(|e| Error::Config {
            origin: origin.to_string(),
            message: format!("{} = `{raw}`: {}", self.key, strip_prefix(&e)),
        })
    }

    /// `spec` with this field set from `raw` (in the `[sandbox]` key's form).
    pub fn apply_raw(&self, spec: &mut SandboxSpec, raw: &str) -> Result<()> {
        let mut config = Config::defaults();
        config.sandbox = spec.clone();
        let raw = self.from_duration_form(raw)?;
        (self.set)(&mut config, &raw, Origin::Default)?;
        *spec = config.sandbox;
        Ok(())
    }
}

/// An error's message without the "invalid sandbox spec: " prefix.
pub(crate) fn strip_prefix(e: &Error) -> String {
    match e {
        Error::InvalidSpec(m) => m.clone(),
        other => other.to_string(),
    }
}

fn opt<T: fmt::Display>(v: &Option<T>, none: &str) -> String {
    v.as_ref()
        .map(|x| x.to_string())
        .unwrap_or_else(|| none.to_string())
}

/// A value as `cleanroom config --json` writes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Json {
    Null,
    Bool(bool),
    Int(u64),
    Float(f64),
    Str(String),
}

fn millis_json(d: Option<Duration>) -> Json {
    d.map_or(Json::Null, |d| Json::Int(d.as_millis() as u64))
}

fn int_json(n: Option<u64>) -> Json {
    n.map_or(Json::Null, Json::Int)
}

/// Stores a spec field's value and where it came from.
fn put(
    c: &mut Config,
    key: &'static str,
    origin: Origin,
    f: impl FnOnce(&mut SandboxSpec),
) -> Result<()> {
    f(&mut c.sandbox);
    c.origins.insert(key, origin);
    Ok(())
}

fn set<T>(slot: &mut Setting<T>, value: T, origin: Origin) -> Result<()> {
    *slot = Setting { value, origin };
    Ok(())
}

fn millis(v: &str, example: &str) -> Result<Duration> {
    let ms: u64 = v.trim().parse().map_err(|_| {
        Error::InvalidSpec(format!(
            "not a whole number of milliseconds (for example {example})"
        ))
    })?;
    ranges::timeout(Duration::from_millis(ms))
}

fn size(v: &str, what: &str, range: &str) -> Result<u64> {
    parse_size(v)
        .map_err(|e| Error::InvalidSpec(format!("{}; {what} is {range}", strip_prefix(&e))))
}

/// A boolean as flags, variables and files write it.
pub fn parse_bool(v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Error::InvalidSpec("not true or false".into())),
    }
}

const fn flag(long: &'static str, value_name: &'static str) -> Flag {
    Flag {
        long,
        short: None,
        value_name,
        switch: false,
        scope: FlagScope::Sandbox,
    }
}

/// Every setting, in the order `cleanroom config` shows them.
pub static FIELDS: &[Field] = &[
    Field {
        key: "backend",
        env: "CLEANROOM_BACKEND",
        flag: flag("backend", "BACKEND"),
        duration_key: None,
        sandbox_key: None,
        help: "Backend: auto, native, podman, docker, local or vm (auto never picks vm)",
        set: |c, v, o| {
            let b = BackendChoice::parse(v, "config").map_err(|_| {
                Error::InvalidSpec(
                    "unknown backend; choose one of: auto, native, podman, docker, local, vm"
                        .into(),
                )
            })?;
            set(&mut c.backend, b, o)
        },
        show: |c| (c.backend.value.to_string(), &c.backend.origin),
        json: |c| Json::Str(c.backend.value.to_string()),
        in_spec: false,
        samples: Samples {
            valid: "local",
            other: "docker",
            invalid: "nonsense",
        },
    },
    Field {
        key: "image",
        env: "CLEANROOM_IMAGE",
        flag: flag("image", "IMAGE"),
        duration_key: None,
        sandbox_key: None,
        help: "Image or root filesystem: `host`, an image name, file://DIR or tar://FILE",
        set: |c, v, o| {
            let v = v.trim();
            // A path may hold spaces; an image reference never does.
            let image = matches!(v.parse::<RootFs>()?, RootFs::Image(_));
            if image && v.contains(|c: char| c.is_whitespace() || c.is_control()) {
                return Err(Error::InvalidSpec(
                    "an image name has no spaces or control characters".into(),
                ));
            }
            set(&mut c.image, Some(v.to_string()), o)
        },
        show: |c| {
            let v = opt(&c.image.value, "host (no image: the host rootfs)");
            (v, &c.image.origin)
        },
        json: |c| c.image.value.clone().map_or(Json::Null, Json::Str),
        in_spec: true,
        samples: Samples {
            valid: "busybox",
            other: "alpine",
            invalid: "two words",
        },
    },
    Field {
        key: "timeout_ms",
        env: "CLEANROOM_TIMEOUT_MS",
        flag: flag("timeout", "DURATION"),
        duration_key: Some("timeout"),
        sandbox_key: Some("timeout"),
        help: "Kill the command (and everything it started) after this long: 500ms, 30s, 2m",
        set: |c, v, o| {
            let d = millis(v, "30000")?;
            put(c, "timeout_ms", o, |s| s.timeout = Some(d))
        },
        show: |c| {
            let v = opt(&c.sandbox.timeout.map(|d| d.as_millis()), "none");
            (v, c.origin("timeout_ms"))
        },
        json: |c| millis_json(c.sandbox.timeout),
        in_spec: true,
        samples: Samples {
            valid: "5000",
            other: "7000",
            invalid: "0",
        },
    },
    Field {
        key: "memory",
        env: "CLEANROOM_MEMORY",
        flag: flag("memory", "SIZE"),
        duration_key: None,
        sandbox_key: Some("memory"),
        help: "Memory limit: 512M, 2G",
        set: |c, v, o| {
            let bytes = ranges::memory(size(v, "a memory limit", ranges::MEMORY_RANGE)?)?;
            put(c, "memory", o, |s| s.memory = Some(bytes))
        },
        show: |c| (opt(&c.sandbox.memory, "unlimited"), c.origin("memory")),
        json: |c| int_json(c.sandbox.memory),
        in_spec: true,
        samples: Samples {
            valid: "64M",
            other: "128M",
            invalid: "1K",
        },
    },
    Field {
        key: "cpus",
        env: "CLEANROOM_CPUS",
        flag: flag("cpus", "CORES"),
        duration_key: None,
        sandbox_key: Some("cpus"),
        help: "CPU limit in cores, fractions allowed",
        set: |c, v, o| {
            let n = v.trim().parse::<f64>().map_err(|_| {
                Error::InvalidSpec("not a positive number of cores (for example 1.5)".into())
            })?;
            let n = ranges::cpus(n)?;
            put(c, "cpus", o, |s| s.cpus = Some(n))
        },
        show: |c| (opt(&c.sandbox.cpus, "unlimited"), c.origin("cpus")),
        json: |c| c.sandbox.cpus.map_or(Json::Null, Json::Float),
        in_spec: true,
        samples: Samples {
            valid: "1.5",
            other: "2",
            invalid: "1e308",
        },
    },
    Field {
        key: "pids",
        env: "CLEANROOM_PIDS",
        flag: flag("pids", "N"),
        duration_key: None,
        sandbox_key: Some("pids"),
        help: "Maximum number of processes and threads",
        set: |c, v, o| {
            let n = v.trim().parse::<i64>().map_err(|_| {
                Error::InvalidSpec(format!(
                    "not a whole number of processes from 1 to {}",
                    ranges::MAX_PIDS
                ))
            })?;
            let n = ranges::pids(n)?;
            put(c, "pids", o, |s| s.pids = Some(n))
        },
        show: |c| (opt(&c.sandbox.pids, "unlimited"), c.origin("pids")),
        json: |c| int_json(c.sandbox.pids),
        in_spec: true,
        samples: Samples {
            valid: "64",
            other: "128",
            invalid: "0",
        },
    },
    Field {
        key: "network",
        env: "CLEANROOM_NETWORK",
        flag: flag("network", "NETWORK"),
        duration_key: None,
        sandbox_key: Some("network"),
        help: "Network: none (loopback only, the default), host, or pod:SANDBOX_ID",
        set: |c, v, o| {
            let n = v.trim().parse()?;
            put(c, "network", o, |s| s.network = n)
        },
        show: |c| (c.sandbox.network.to_string(), c.origin("network")),
        json: |c| Json::Str(c.sandbox.network.to_string()),
        in_spec: true,
        samples: Samples {
            valid: "host",
            other: "pod:abc",
            invalid: "everywhere",
        },
    },
    Field {
        key: "user",
        env: "CLEANROOM_USER",
        flag: flag("user", "UID[:GID]"),
        duration_key: None,
        sandbox_key: Some("user"),
        help: "User inside as UID or UID:GID (default 1000:1000)",
        set: |c, v, o| {
            let u = v.trim().parse()?;
            put(c, "user", o, |s| s.user = u)
        },
        show: |c| (c.sandbox.user.to_string(), c.origin("user")),
        json: |c| Json::Str(c.sandbox.user.to_string()),
        in_spec: true,
        samples: Samples {
            valid: "0:0",
            other: "2000:2000",
            invalid: "-1",
        },
    },
    Field {
        key: "workdir",
        env: "CLEANROOM_WORKDIR",
        flag: flag("workdir", "PATH"),
        duration_key: None,
        sandbox_key: Some("workdir"),
        help: "Working directory inside (default /workdir, a fresh tmpfs)",
        set: |c, v, o| {
            let p = PathBuf::from(v.trim());
            ranges::target("workdir", &p)?;
            put(c, "workdir", o, |s| s.workdir = p)
        },
        show: |c| (c.sandbox.workdir.display().to_string(), c.origin("workdir")),
        json: |c| Json::Str(c.sandbox.workdir.display().to_string()),
        in_spec: true,
        samples: Samples {
            valid: "/src",
            other: "/build",
            invalid: "/",
        },
    },
    Field {
        key: "strict",
        env: "CLEANROOM_STRICT",
        flag: Flag {
            switch: true,
            ..flag("strict", "BOOL")
        },
        duration_key: None,
        sandbox_key: Some("strict"),
        help: "Fail before running when the backend cannot enforce everything asked for",
        set: |c, v, o| {
            let b = parse_bool(v)?;
            put(c, "strict", o, |s| s.strict = b)
        },
        show: |c| (c.sandbox.strict.to_string(), c.origin("strict")),
        json: |c| Json::Bool(c.sandbox.strict),
        in_spec: true,
        samples: Samples {
            valid: "true",
            other: "false",
            invalid: "maybe",
        },
    },
    Field {
        key: "tmpfs_size",
        env: "CLEANROOM_TMPFS_SIZE",
        flag: flag("tmpfs-size", "SIZE"),
        duration_key: None,
        sandbox_key: Some("tmpfs_size"),
        help: "Size of each tmpfs (/tmp, the working directory, /dev/shm): 256M; \
               default the memory limit, at most 1G (/dev/shm 64M)",
        set: |c, v, o| {
            let bytes = size(v, "a tmpfs size", ranges::TMPFS_SIZE_RANGE)?;
            let bytes = ranges::tmpfs_size(bytes)?;
            put(c, "tmpfs_size", o, |s| s.tmpfs_size = Some(bytes))
        },
        show: |c| {
            let v = opt(
                &c.sandbox.tmpfs_size,
                "default (the memory limit, at most 1 GiB; /dev/shm at most 64 MiB)",
            );
            (v, c.origin("tmpfs_size"))
        },
        json: |c| int_json(c.sandbox.tmpfs_size),
        in_spec: true,
        samples: Samples {
            valid: "8M",
            other: "16M",
            invalid: "1K",
        },
    },
    Field {
        key: "userns",
        env: "CLEANROOM_USERNS",
        flag: flag("userns", "auto|identity"),
        duration_key: None,
        sandbox_key: Some("userns"),
        help: "User namespace: auto (never host root, the default) or identity \
               (the caller's own ids: host root for a root caller)",
        set: |c, v, o| {
            let u = v.parse()?;
            put(c, "userns", o, |s| s.userns = u)
        },
        show: |c| (c.sandbox.userns.to_string(), c.origin("userns")),
        json: |c| Json::Str(c.sandbox.userns.to_string()),
        in_spec: true,
        samples: Samples {
            valid: "identity",
            other: "auto",
            invalid: "host-root",
        },
    },
    Field {
        key: "jobs",
        env: "CLEANROOM_JOBS",
        flag: Flag {
            short: Some('j'),
            scope: FlagScope::Test,
            ..flag("jobs", "N")
        },
        duration_key: None,
        sandbox_key: None,
        help: "Tests run at once (default: the number of cores)",
        set: |c, v, o| match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => set(&mut c.jobs, Some(n), o),
            _ => Err(Error::InvalidSpec(
                "not a positive whole number of tests".into(),
            )),
        },
        show: |c| (opt(&c.jobs.value, "one per core"), &c.jobs.origin),
        json: |c| int_json(c.jobs.value.map(|n| n as u64)),
        in_spec: false,
        samples: Samples {
            valid: "2",
            other: "3",
            invalid: "0",
        },
    },
    Field {
        key: "test_timeout_ms",
        env: "CLEANROOM_TEST_TIMEOUT_MS",
        flag: Flag {
            scope: FlagScope::Test,
            ..flag("test-timeout", "DURATION")
        },
        duration_key: Some("test_timeout"),
        sandbox_key: None,
        help: "Time limit of each whole test unless its file sets one (default 10m)",
        set: |c, v, o| set(&mut c.test_timeout, Some(millis(v, "600000")?), o),
        show: |c| {
            let v = opt(
                &c.test_timeout.value.map(|d| d.as_millis()),
                "none (the runner's default)",
            );
            (v, &c.test_timeout.origin)
        },
        json: |c| millis_json(c.test_timeout.value),
        in_spec: false,
        samples: Samples {
            valid: "60000",
            other: "120000",
            invalid: "0",
        },
    },
];

#[cfg(test)]
#[path = "fields_tests.rs"]
mod tests;
