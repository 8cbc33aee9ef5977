//! What a sandbox is asked to be: [`SandboxSpec`] and its parts.
//!
//! A spec is backend-neutral. Every backend reads the same fields and reports,
//! through [`crate::Enforcement`], which of them it really enforced.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ranges;

/// Hostname every sandbox gets, so output does not depend on the machine.
pub const DEFAULT_HOSTNAME: &str = "cleanroom";
/// Working directory inside the sandbox unless the spec says otherwise.
pub const DEFAULT_WORKDIR: &str = "/workdir";
/// Bytes of each output stream kept in a [`crate::RunResult`] by default.
pub const DEFAULT_OUTPUT_LIMIT: u64 = 16 * 1024 * 1024;
/// `SOURCE_DATE_EPOCH` in every sandbox: 1980-01-01, the earliest date zip accepts.
pub const SOURCE_DATE_EPOCH: &str = "315532800";
/// Size of `/tmp` and of the working directory (each a tmpfs) when neither
/// a memory limit nor `tmpfs_size` says less: 1 GiB, so that one sandbox
/// cannot take half the machine's memory per tmpfs, as the kernel's default
/// would let it.
pub const DEFAULT_TMPFS_CAP: u64 = 1 << 30;
/// Size of `/dev/shm` likewise: 64 MiB, Docker's default shm size.
pub const DEFAULT_SHM_CAP: u64 = 64 << 20;
/// `PATH` in every sandbox.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// `RLIMIT_NOFILE` (soft and hard) on every backend: a value any process may
/// set without `CAP_SYS_RESOURCE`, so every engine can honour it.
pub const DEFAULT_NOFILE: u64 = 1024;
/// `RLIMIT_NPROC` (soft and hard) on every backend, for the same reason.
pub const DEFAULT_NPROC: u64 = 1024;
/// Mode of the working directory's tmpfs on every backend (owned by the
/// sandbox's user where the backend knows its numeric ids).
pub const WORKDIR_MODE: u32 = 0o1777;

/// Where the sandbox's root filesystem comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(into = "String", try_from = "String")]
pub enum RootFs {
    /// The host's own `/usr`, `/bin`, `/lib*` and a minimal `/etc`, read-only.
    #[default]
    Host,
    /// An image reference (`name:tag`, `name@sha256:...`), resolved by the backend.
    Image(String),
    /// A directory on the host used as the root (`file://PATH`).
    Dir(PathBuf),
    /// A rootfs tarball on the host, unpacked once into a cache (`tar://PATH`).
    Tar(PathBuf),
}

impl FromStr for RootFs {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Error::InvalidSpec(
                "empty rootfs/image; use `host`, an image name, file://DIR or tar://FILE".into(),
            ));
        }
        Ok(if s == "host" {
            RootFs::Host
        } else if let Some(p) = s.strip_prefix("file://") {
            RootFs::Dir(PathBuf::from(p))
        } else if let Some(p) = s.strip_prefix("tar://") {
            RootFs::Tar(PathBuf::from(p))
        } else {
            RootFs::Image(s.to_string())
        })
    }
}

impl TryFrom<String> for RootFs {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<RootFs> for String {
    fn from(r: RootFs) -> String {
        r.to_string()
    }
}

impl fmt::Display for RootFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootFs::Host => f.write_str("host"),
            RootFs::Image(r) => f.write_str(r),
            RootFs::Dir(p) => write!(f, "file://{}", p.display()),
            RootFs::Tar(p) => write!(f, "tar://{}", p.display()),
        }
    }
}

/// A numeric user and group inside the sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

impl User {
    /// The contract's default: an unprivileged 1000:1000.
    pub const DEFAULT: User = User {
        uid: 1000,
        gid: 1000,
    };
    /// uid 0 inside the sandbox (only a user namespace's root on rootless backends).
    pub const ROOT: User = User { uid: 0, gid: 0 };
}

impl Default for User {
    fn default() -> Self {
        User::DEFAULT
    }
}

impl FromStr for User {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidSpec(format!(
                "user `{s}` is not UID or UID:GID (numbers, for example 1000:1000)"
            ))
        };
        let (u, g) = match s.split_once(':') {
            Some((u, g)) => (u, g),
            None => (s, s),
        };
        Ok(User {
            uid: u.trim().parse().map_err(|_| bad())?,
            gid: g.trim().parse().map_err(|_| bad())?,
        })
    }
}

impl TryFrom<String> for User {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<User> for String {
    fn from(u: User) -> String {
        u.to_string()
    }
}

impl fmt::Display for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

/// How the sandbox's user and group ids map to the host's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(into = "String", try_from = "String")]
pub enum UserNs {
    /// Never host root: a rootless caller's own ids; for a root caller, an
    /// unprivileged range (subordinate ids of the `cleanroom` user in
    /// /etc/subuid and /etc/subgid, else `nobody`, 65534).
    #[default]
    Auto,
    /// The sandbox's user is the caller's own user on the host, root
    /// included: for a root caller, uid 0 inside is host root. Only when
    /// asked for by this name.
    Identity,
}

impl FromStr for UserNs {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "auto" => Ok(UserNs::Auto),
            "identity" => Ok(UserNs::Identity),
            other => Err(Error::InvalidSpec(format!(
                "userns `{other}` is not `auto` (never host root, the default) or `identity` \
                 (the caller's own ids, host root for a root caller)"
            ))),
        }
    }
}

impl TryFrom<String> for UserNs {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<UserNs> for String {
    fn from(u: UserNs) -> String {
        u.to_string()
    }
}

impl fmt::Display for UserNs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UserNs::Auto => "auto",
            UserNs::Identity => "identity",
        })
    }
}

/// A host path made visible inside the sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// Path on the host.
    pub source: PathBuf,
    /// Absolute path inside the sandbox.
    pub target: PathBuf,
    /// Read-only unless asked otherwise.
    #[serde(default = "yes")]
    pub read_only: bool,
}

fn yes() -> bool {
    true
}

impl Mount {
    /// A read-only bind of `source` at `target`.
    pub fn read_only(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Self {
        Mount {
            source: source.into(),
            target: target.into(),
            read_only: true,
        }
    }

    /// A read-write bind of `source` at `target`.
    pub fn read_write(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Self {
        Mount {
            read_only: false,
            ..Mount::read_only(source, target)
        }
    }
}

impl FromStr for Mount {
    type Err = Error;
    /// `SRC:DST`, `SRC:DST:ro` or `SRC:DST:rw` (read-only by default).
    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split(':').collect();
        let (src, dst, mode) = match parts.as_slice() {
            [src, dst] => (*src, *dst, "ro"),
            [src, dst, mode] => (*src, *dst, *mode),
            _ => {
                return Err(Error::InvalidSpec(format!(
                    "mount `{s}` is not SRC:DST[:ro|rw]"
                )))
            }
        };
        let read_only = match mode {
            "ro" => true,
            "rw" => false,
            other => {
                return Err(Error::InvalidSpec(format!(
                    "mount `{s}`: mode `{other}` is neither `ro` nor `rw`"
                )))
            }
        };
        Ok(Mount {
            source: PathBuf::from(src),
            target: PathBuf::from(dst),
            read_only,
        })
    }
}

/// A fresh tmpfs inside the sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tmpfs {
    pub target: PathBuf,
    /// Size cap in bytes; `None` is the backend's default.
    #[serde(default)]
    pub size: Option<u64>,
}

/// Which network the sandbox sees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(into = "String", try_from = "String")]
pub enum Network {
    /// A fresh network namespace with loopback only.
    #[default]
    None,
    /// The host's network (opt-in, not isolated).
    Host,
    /// Share the network namespace of the running sandbox with this id
    /// (a pod: members talk over 127.0.0.1).
    Pod(String),
}

impl FromStr for Network {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Network::None),
            "host" => Ok(Network::Host),
            _ => match s.strip_prefix("pod:") {
                Some(id) if !id.is_empty() => Ok(Network::Pod(id.to_string())),
                _ => Err(Error::InvalidSpec(format!(
                    "network `{s}` is not `none`, `host` or `pod:SANDBOX_ID`"
                ))),
            },
        }
    }
}

impl TryFrom<String> for Network {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Network> for String {
    fn from(n: Network) -> String {
        n.to_string()
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Network::None => f.write_str("none"),
            Network::Host => f.write_str("host"),
            Network::Pod(id) => write!(f, "pod:{id}"),
        }
    }
}

/// A port inside the sandbox published on the host's 127.0.0.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortPublish {
    /// Port the sandboxed program listens on (inside, on 127.0.0.1 or 0.0.0.0).
    pub sandbox_port: u16,
    /// Port on the host's 127.0.0.1; 0 lets the backend choose a free one.
    #[serde(default)]
    pub host_port: u16,
}

/// Everything a sandbox is asked to be. `Default` is the contract's default:
/// host rootfs, read-only root, 1000:1000, no network, `/workdir`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSpec {
    /// Image or root filesystem (`rootfs` and `image` mean the same here).
    #[serde(alias = "image")]
    pub rootfs: RootFs,
    pub user: User,
    /// How `user` maps to a host user.
    pub userns: UserNs,
    /// Variables set over the fixed base environment.
    pub env: BTreeMap<String, String>,
    pub workdir: PathBuf,
    pub mounts: Vec<Mount>,
    pub tmpfs: Vec<Tmpfs>,
    pub network: Network,
    pub publish: Vec<PortPublish>,
    /// Root filesystem read-only (the default) or writable (changes are discarded).
    pub read_only_root: bool,
    pub hostname: String,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPU limit in cores (fractions allowed).
    pub cpus: Option<f64>,
    /// Maximum number of processes/threads.
    pub pids: Option<u64>,
    /// Size of each tmpfs the sandbox gets (`/tmp`, the working directory,
    /// `/dev/shm`, and `tmpfs` entries without a size), bytes. `None`: see
    /// [`SandboxSpec::tmpfs_mounts`].
    pub tmpfs_size: Option<u64>,
    /// Wall-clock limit of each command, unless the command sets its own.
    #[serde(with = "opt_millis")]
    pub timeout: Option<Duration>,
    /// Bytes of each output stream kept in the result; more is dropped and flagged.
    pub output_limit: u64,
    /// Refuse to run when the backend cannot enforce a requested constraint.
    pub strict: bool,
}

impl Default for SandboxSpec {
    fn default() -> Self {
        SandboxSpec {
            rootfs: RootFs::Host,
            user: User::DEFAULT,
            userns: UserNs::Auto,
            env: BTreeMap::new(),
            workdir: PathBuf::from(DEFAULT_WORKDIR),
            mounts: Vec::new(),
            tmpfs: Vec::new(),
            network: Network::None,
            publish: Vec::new(),
            read_only_root: true,
            hostname: DEFAULT_HOSTNAME.to_string(),
            memory: None,
            cpus: None,
            pids: None,
            tmpfs_size: None,
            timeout: None,
            output_limit: DEFAULT_OUTPUT_LIMIT,
            strict: false,
        }
    }
}

impl SandboxSpec {
    /// The default spec on another root filesystem.
    pub fn with_rootfs(rootfs: RootFs) -> Self {
        SandboxSpec {
            rootfs,
            ..SandboxSpec::default()
        }
    }

    /// Checks what no backend could make sense of, so every backend rejects
    /// the same inputs with the same message.
    pub fn validate(&self) -> Result<()> {
        ranges::target("workdir", &self.workdir)?;
        for m in &self.mounts {
            ranges::target("mount target", &m.target)?;
            if !m.source.is_absolute() {
                return Err(Error::InvalidSpec(format!(
                    "mount source `{}` must be an absolute host path",
                    m.source.display()
                )));
            }
        }
        for t in &self.tmpfs {
            ranges::target("tmpfs target", &t.target)?;
        }
        self.cpus.map(ranges::cpus).transpose()?;
        self.memory.map(ranges::memory).transpose()?;
        if let Some(n) = self.pids {
            ranges::pids(i64::try_from(n).unwrap_or(i64::MAX))?;
        }
        if self.tmpfs_size == Some(0) || self.tmpfs.iter().any(|t| t.size == Some(0)) {
            return Err(Error::InvalidSpec(
                "tmpfs size 0: give a size of at least 4K, for example 64M".into(),
            ));
        }
        self.timeout.map(ranges::timeout).transpose()?;
        ranges::hostname(&self.hostname)?;
        for key in self.env.keys() {
            validate_env_key(key)?;
        }
        Ok(())
    }

    /// Every tmpfs the sandbox gets, with its size in bytes, in mount order:
    /// `/tmp`, the working directory and `/dev/shm`, then the spec's own
    /// (a later entry for the same path is mounted over an earlier one).
    ///
    /// Sizes: a `tmpfs` entry's own size, else `tmpfs_size`, else the
    /// default: 1 GiB ([`DEFAULT_TMPFS_CAP`]) for `/tmp`, the working
    /// directory and the spec's entries, 64 MiB ([`DEFAULT_SHM_CAP`]) for
    /// `/dev/shm`, and with a memory limit never more than that limit: a
    /// tmpfs's pages are charged to the sandbox's memory, so more could
    /// never be filled.
    pub fn tmpfs_mounts(&self) -> Vec<Tmpfs> {
        let default = |cap: u64| {
            self.tmpfs_size
                .unwrap_or_else(|| self.memory.map_or(cap, |m| m.min(cap)))
        };
        let mut v: Vec<Tmpfs> = [
            (PathBuf::from("/tmp"), DEFAULT_TMPFS_CAP),
            (self.workdir.clone(), DEFAULT_TMPFS_CAP),
            (PathBuf::from("/dev/shm"), DEFAULT_SHM_CAP),
        ]
        .into_iter()
        .map(|(target, cap)| Tmpfs {
            target,
            size: Some(default(cap)),
        })
        .collect();
        v.extend(self.tmpfs.iter().map(|t| Tmpfs {
            target: t.target.clone(),
            size: Some(t.size.unwrap_or_else(|| default(DEFAULT_TMPFS_CAP))),
        }));
        v
    }

    /// The environment a command sees: the fixed base, then the spec's
    /// variables, then the command's. Sorted, so runs are reproducible.
    pub fn environment(&self, cmd_env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut env = base_environment(&self.workdir);
        env.extend(self.env.clone());
        env.extend(cmd_env.clone());
        env
    }
}

/// The variables every sandbox starts from; nothing of the host's leaks in.
pub fn base_environment(home: &Path) -> BTreeMap<String, String> {
    [
        ("PATH", DEFAULT_PATH.to_string()),
        ("HOME", home.display().to_string()),
        ("LANG", "C.UTF-8".to_string()),
        ("TZ", "UTC".to_string()),
        ("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// An environment variable name must be non-empty and contain neither `=` nor NUL.
pub fn validate_env_key(key: &str) -> Result<()> {
    if key.is_empty() || key.contains('=') || key.contains('\0') {
        return Err(Error::InvalidSpec(format!(
            "environment variable name `{key}` is empty or contains `=` or NUL"
        )));
    }
    Ok(())
}

/// Parses a size such as `512M`, `2GiB`, `1g` or `1048576` into bytes.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        Error::InvalidSpec(format!(
            "size `{s}` is not a number with an optional unit (K, M, G, KiB, MiB, GiB)"
        ))
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Parses a duration such as `30s`, `500ms`, `2m`, `1h` or a bare number of milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        Error::InvalidSpec(format!(
            "duration `{s}` is not a whole number with a unit (ms, s, m, h), for example 30s"
        ))
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit {
        "" | "ms" => n,
        "s" => n.checked_mul(1000).ok_or_else(bad)?,
        "m" => n.checked_mul(60_000).ok_or_else(bad)?,
        "h" => n.checked_mul(3_600_000).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    Ok(Duration::from_millis(ms))
}

/// Serialises `Option<Duration>` as milliseconds, the unit config files use.
pub mod opt_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootfs_parses_every_form() {
        assert_eq!("host".parse::<RootFs>().unwrap(), RootFs::Host);
        assert_eq!(
            "file:///srv/root".parse::<RootFs>().unwrap(),
            RootFs::Dir("/srv/root".into())
        );
        assert_eq!(
            "tar:///a.tar".parse::<RootFs>().unwrap(),
            RootFs::Tar("/a.tar".into())
        );
        assert_eq!(
            "busybox:1".parse::<RootFs>().unwrap(),
            RootFs::Image("busybox:1".into())
        );
        assert!("".parse::<RootFs>().is_err());
    }

    #[test]
    fn mounts_are_read_only_unless_asked() {
        let m: Mount = "/a:/b".parse().unwrap();
        assert!(m.read_only);
        assert!(!"/a:/b:rw".parse::<Mount>().unwrap().read_only);
        let err = "/a:/b:rx".parse::<Mount>().unwrap_err().to_string();
        assert!(err.contains("rx"), "{err}");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("3 weeks").is_err());
    }

    #[test]
    fn validate_rejects_relative_and_dotdot() {
        let mut s = SandboxSpec {
            workdir: "rel".into(),
            ..SandboxSpec::default()
        };
        assert!(s.validate().is_err());
        s.workdir = "/w".into();
        s.mounts.push(Mount::read_only("/etc", "/x/../../y"));
        assert!(s.validate().unwrap_err().to_string().contains(".."));
    }

    #[test]
    fn environment_layers_base_spec_then_command() {
        let mut s = SandboxSpec::default();
        s.env.insert("A".into(), "spec".into());
        s.env.insert("TZ".into(), "Europe/Paris".into());
        let cmd_env = BTreeMap::from([("A".to_string(), "cmd".to_string())]);
        let env = s.environment(&cmd_env);
        assert_eq!(env["A"], "cmd");
        assert_eq!(env["TZ"], "Europe/Paris");
        assert_eq!(env["LANG"], "C.UTF-8");
        assert_eq!(env["HOME"], "/workdir");
    }

    #[test]
    fn tmpfs_sizes_follow_the_memory_limit_and_the_setting() {
        let sizes = |s: &SandboxSpec| -> Vec<(String, u64)> {
            s.tmpfs_mounts()
                .into_iter()
                .map(|t| (t.target.display().to_string(), t.size.unwrap()))
                .collect()
        };
        let mut s = SandboxSpec::default();
        assert_eq!(
            sizes(&s),
            [
                ("/tmp".to_string(), 1 << 30),
                ("/workdir".to_string(), 1 << 30),
                ("/dev/shm".to_string(), 64 << 20)
            ]
        );
        s.memory = Some(32 << 20);
        s.tmpfs.push(Tmpfs {
            target: "/cache".into(),
            size: None,
        });
        assert!(
            sizes(&s).iter().all(|(_, n)| *n == 32 << 20),
            "{:?}",
            sizes(&s)
        );
        s.tmpfs_size = Some(8 << 20);
        s.tmpfs[0].size = Some(1 << 20);
        let got = sizes(&s);
        assert!(got[..3].iter().all(|(_, n)| *n == 8 << 20), "{got:?}");
        assert_eq!(got[3], ("/cache".to_string(), 1 << 20));
        s.tmpfs_size = Some(0);
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("tmpfs size 0"));
    }

    #[test]
    fn spec_round_trips_through_serde_names() {
        let s = SandboxSpec {
            network: Network::Pod("abc".into()),
            user: User::ROOT,
            ..SandboxSpec::default()
        };
        assert_eq!(String::from(s.network.clone()), "pod:abc");
        assert_eq!(s.user.to_string(), "0:0");
    }
}
