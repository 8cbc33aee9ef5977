//! The enforcement report: for every constraint a spec asks for, whether the
//! backend really enforced it, and if not, why.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::spec::{Network, SandboxSpec, Tmpfs};

/// One property of the contract that a backend may or may not enforce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Constraint {
    /// Host files are invisible unless mounted.
    FilesystemIsolation,
    ReadOnlyRoot,
    NetworkIsolation,
    /// Runs as the spec's uid:gid.
    User,
    /// No capabilities in any set.
    Capabilities,
    NoNewPrivs,
    Seccomp,
    /// Own PID namespace: cannot see or signal host processes.
    PidNamespace,
    Hostname,
    /// Only the spec's environment, never the host's.
    EnvIsolation,
    MemoryLimit,
    CpuLimit,
    PidsLimit,
    Timeout,
    OutputLimit,
    Mounts,
    PublishPorts,
}

impl Constraint {
    /// Every constraint, in report order.
    pub const ALL: [Constraint; 17] = [
        Constraint::FilesystemIsolation,
        Constraint::ReadOnlyRoot,
        Constraint::NetworkIsolation,
        Constraint::User,
        Constraint::Capabilities,
        Constraint::NoNewPrivs,
        Constraint::Seccomp,
        Constraint::PidNamespace,
        Constraint::Hostname,
        Constraint::EnvIsolation,
        Constraint::MemoryLimit,
        Constraint::CpuLimit,
        Constraint::PidsLimit,
        Constraint::Timeout,
        Constraint::OutputLimit,
        Constraint::Mounts,
        Constraint::PublishPorts,
    ];

    /// Human words, as used in `WARN: <backend> backend cannot enforce <words>`.
    pub fn describe(self) -> &'static str {
        match self {
            Constraint::FilesystemIsolation => "filesystem isolation",
            Constraint::ReadOnlyRoot => "read-only filesystem",
            Constraint::NetworkIsolation => "network isolation",
            Constraint::User => "user",
            Constraint::Capabilities => "capability drop",
            Constraint::NoNewPrivs => "no_new_privs",
            Constraint::Seccomp => "seccomp filter",
            Constraint::PidNamespace => "process isolation",
            Constraint::Hostname => "hostname",
            Constraint::EnvIsolation => "environment isolation",
            Constraint::MemoryLimit => "memory limit",
            Constraint::CpuLimit => "cpu limit",
            Constraint::PidsLimit => "pids limit",
            Constraint::Timeout => "timeout",
            Constraint::OutputLimit => "output limit",
            Constraint::Mounts => "mounts",
            Constraint::PublishPorts => "published ports",
        }
    }

    /// The constraints `spec` asks for. Isolation properties are always asked
    /// for; limits only when set; read-only root unless turned off.
    pub fn requested_by(spec: &SandboxSpec) -> Vec<Constraint> {
        use Constraint::*;
        let mut v = vec![FilesystemIsolation];
        if spec.read_only_root {
            v.push(ReadOnlyRoot);
        }
        if spec.network != Network::Host {
            v.push(NetworkIsolation);
        }
        v.extend([
            User,
            Capabilities,
            NoNewPrivs,
            Seccomp,
            PidNamespace,
            Hostname,
            EnvIsolation,
        ]);
        if spec.memory.is_some() {
            v.push(MemoryLimit);
        }
        if spec.cpus.is_some() {
            v.push(CpuLimit);
        }
        if spec.pids.is_some() {
            v.push(PidsLimit);
        }
        v.extend([Timeout, OutputLimit]);
        if !spec.mounts.is_empty() {
            v.push(Mounts);
        }
        if !spec.publish.is_empty() {
            v.push(PublishPorts);
        }
        v
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Whether one constraint was enforced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    Enforced,
    NotEnforced {
        reason: String,
    },
    /// The backend cannot tell (a custom backend behind the two-method
    /// `run_cmd` trait, for example): treated as not enforced everywhere
    /// it matters, and reported in words of its own.
    Unknown {
        reason: String,
    },
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub constraint: Constraint,
    #[serde(flatten)]
    pub status: Status,
}

/// What a backend enforces for one spec. Built by the backend before it runs
/// anything, so strict mode can refuse early, and carried in every result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enforcement {
    pub backend: String,
    pub entries: Vec<Entry>,
    /// Things no backend can fix and that are not constraints, such as the wall clock.
    pub notes: Vec<String>,
    /// The tmpfs mounts the sandbox gets and their sizes (see
    /// [`Enforcement::with_tmpfs`]); empty where the backend mounts none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<Tmpfs>,
    /// How the sandbox's user and group ids map to the host's, in words
    /// (for example `sandbox uid 0 = host uid 100000 (subordinate ids of
    /// cleanroom)`); `None` where the backend does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_mapping: Option<String>,
}

impl Enforcement {
    pub fn new(backend: impl Into<String>) -> Self {
        Enforcement {
            backend: backend.into(),
            entries: Vec::new(),
            notes: vec!["the wall clock is the host's; it cannot be fixed or frozen".into()],
            tmpfs: Vec::new(),
            user_mapping: None,
        }
    }

    /// Records the tmpfs mounts `spec` gets, with their sizes
    /// ([`SandboxSpec::tmpfs_mounts`]), for a backend that mounts them so.
    pub fn with_tmpfs(mut self, spec: &SandboxSpec) -> Self {
        self.tmpfs = spec.tmpfs_mounts();
        self
    }

    /// Records `c` as enforced (replacing an earlier entry for it).
    pub fn enforced(&mut self, c: Constraint) -> &mut Self {
        self.set(c, Status::Enforced)
    }

    /// Records `c` as not enforced, with the reason a user should read.
    pub fn not_enforced(&mut self, c: Constraint, reason: impl Into<String>) -> &mut Self {
        self.set(
            c,
            Status::NotEnforced {
                reason: reason.into(),
            },
        )
    }

    /// Records that whether `c` is enforced is unknown, and why.
    pub fn unknown(&mut self, c: Constraint, reason: impl Into<String>) -> &mut Self {
        self.set(
            c,
            Status::Unknown {
                reason: reason.into(),
            },
        )
    }

    pub fn set(&mut self, c: Constraint, status: Status) -> &mut Self {
        match self.entries.iter_mut().find(|e| e.constraint == c) {
            Some(e) => e.status = status,
            None => self.entries.push(Entry {
                constraint: c,
                status,
            }),
        }
        self
    }

    /// Keeps only the entries `spec` asks for, in report order.
    pub fn restrict_to(mut self, spec: &SandboxSpec) -> Self {
        let wanted = Constraint::requested_by(spec);
        self.entries.retain(|e| wanted.contains(&e.constraint));
        self.entries.sort_by_key(|e| e.constraint);
        self
    }

    pub fn status(&self, c: Constraint) -> Option<&Status> {
        self.entries
            .iter()
            .find(|e| e.constraint == c)
            .map(|e| &e.status)
    }

    pub fn is_enforced(&self, c: Constraint) -> bool {
        matches!(self.status(c), Some(Status::Enforced))
    }

    /// The constraints not enforced, with their reasons.
    pub fn unenforced(&self) -> Vec<(Constraint, &str)> {
        self.entries
            .iter()
            .filter_map(|e| match &e.status {
                Status::NotEnforced { reason } => Some((e.constraint, reason.as_str())),
                Status::Enforced | Status::Unknown { .. } => None,
            })
            .collect()
    }

    /// The constraints whose enforcement is unknown, with the reasons.
    pub fn unknowns(&self) -> Vec<(Constraint, &str)> {
        self.entries
            .iter()
            .filter_map(|e| match &e.status {
                Status::Unknown { reason } => Some((e.constraint, reason.as_str())),
                Status::Enforced | Status::NotEnforced { .. } => None,
            })
            .collect()
    }

    /// One `WARN: <backend> backend cannot enforce <constraint> (<reason>)`
    /// line per constraint not enforced, then one `WARN: <backend> backend:
    /// enforcement of <constraint> is unknown (<reason>)` per unknown one.
    pub fn warnings(&self) -> Vec<String> {
        let unenforced = self.unenforced().into_iter().map(|(c, reason)| {
            format!(
                "WARN: {} backend cannot enforce {} ({reason})",
                self.backend,
                c.describe()
            )
        });
        let unknown = self.unknowns().into_iter().map(|(c, reason)| {
            format!(
                "WARN: {} backend: enforcement of {} is unknown ({reason})",
                self.backend,
                c.describe()
            )
        });
        unenforced.chain(unknown).collect()
    }

    /// In strict mode, the error to return before running anything: a
    /// constraint not known to be enforced is refused like one not enforced.
    pub fn check_strict(&self, spec: &SandboxSpec) -> Result<()> {
        let missing: Vec<String> = self
            .unenforced()
            .into_iter()
            .map(|(c, r)| format!("{} ({r})", c.describe()))
            .chain(
                self.unknowns()
                    .into_iter()
                    .map(|(c, r)| format!("{} (unknown: {r})", c.describe())),
            )
            .collect();
        if spec.strict && !missing.is_empty() {
            return Err(Error::NotEnforceable {
                backend: self.backend.clone(),
                unenforced: missing,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_name_backend_and_constraint() {
        let mut e = Enforcement::new("local");
        e.enforced(Constraint::Timeout)
            .not_enforced(Constraint::NetworkIsolation, "plain child process");
        assert_eq!(
            e.warnings(),
            vec!["WARN: local backend cannot enforce network isolation (plain child process)"]
        );
        let spec = SandboxSpec {
            strict: true,
            ..SandboxSpec::default()
        };
        let err = e.check_strict(&spec).unwrap_err().to_string();
        assert!(err.contains("network isolation"), "{err}");
        assert!(e.check_strict(&SandboxSpec::default()).is_ok());
    }

    #[test]
    fn unknown_is_warned_about_and_refused_in_strict_mode() {
        let mut e = Enforcement::new("custom");
        e.enforced(Constraint::Timeout)
            .unknown(Constraint::Seccomp, "a custom backend");
        assert!(!e.is_enforced(Constraint::Seccomp));
        assert!(e.unenforced().is_empty());
        assert_eq!(
            e.unknowns(),
            vec![(Constraint::Seccomp, "a custom backend")]
        );
        assert_eq!(
            e.warnings(),
            vec![
                "WARN: custom backend: enforcement of seccomp filter is unknown (a custom backend)"
            ]
        );
        let spec = SandboxSpec {
            strict: true,
            ..SandboxSpec::default()
        };
        let err = e.check_strict(&spec).unwrap_err().to_string();
        assert!(
            err.contains("seccomp filter (unknown: a custom backend)"),
            "{err}"
        );
    }

    #[test]
    fn limits_are_requested_only_when_set() {
        let mut spec = SandboxSpec::default();
        assert!(!Constraint::requested_by(&spec).contains(&Constraint::MemoryLimit));
        spec.memory = Some(1 << 20);
        spec.network = Network::Host;
        let r = Constraint::requested_by(&spec);
        assert!(r.contains(&Constraint::MemoryLimit));
        assert!(!r.contains(&Constraint::NetworkIsolation));
    }
}
