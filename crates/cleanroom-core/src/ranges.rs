//! The allowed range of every sandbox value that has one, stated once:
//! flags, `CLEANROOM_*` variables, `cleanroom.toml`, `Cargo.toml` tables,
//! test files and [`crate::SandboxSpec::validate`] all check through these,
//! so a value that can never work is refused where it is read, with the
//! range in the message, instead of failing inside a backend.

use std::path::{Component, Path};
use std::time::Duration;

use crate::error::{Error, Result};

/// The shortest timeout: a zero timeout races the command's start.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);
/// The longest timeout: a year (a longer one is no timeout at all).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);
/// The smallest memory limit a sandbox's init, its mounts and a shell fit in
/// (Docker's minimum too).
pub const MIN_MEMORY: u64 = 6 << 20;
/// The largest memory limit (1 PiB; cgroup v1 takes a signed 64-bit number).
pub const MAX_MEMORY: u64 = 1 << 50;
/// The smallest CPU limit: the kernel's minimum quota, 1 ms per 100 ms period.
pub const MIN_CPUS: f64 = 0.01;
/// The largest CPU limit in cores.
pub const MAX_CPUS: f64 = 1024.0;
/// The largest pids limit: the kernel's `PID_MAX_LIMIT`.
pub const MAX_PIDS: u64 = 4_194_304;
/// The longest hostname the kernel accepts (`HOST_NAME_MAX`).
pub const MAX_HOSTNAME: usize = 64;

/// A command's or a sandbox's timeout: 1 ms to a year.
pub fn timeout(d: Duration) -> Result<Duration> {
    if (MIN_TIMEOUT..=MAX_TIMEOUT).contains(&d) {
        Ok(d)
    } else {
        Err(Error::InvalidSpec(format!(
            "timeout must be from 1ms to 365 days, not {}ms",
            d.as_millis()
        )))
    }
}

/// The allowed memory limits, as messages say them.
pub const MEMORY_RANGE: &str = "from 6MiB to 1PiB";

/// A memory limit in bytes: 6 MiB to 1 PiB.
pub fn memory(bytes: u64) -> Result<u64> {
    if (MIN_MEMORY..=MAX_MEMORY).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(Error::InvalidSpec(format!(
            "memory limit must be {MEMORY_RANGE}, not {bytes} bytes"
        )))
    }
}

/// The allowed tmpfs sizes, as messages say them.
pub const TMPFS_SIZE_RANGE: &str = "from 4KiB to 1PiB";

/// A tmpfs size in bytes: 4 KiB (one page) to 1 PiB.
pub fn tmpfs_size(bytes: u64) -> Result<u64> {
    if (4 << 10..=MAX_MEMORY).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(Error::InvalidSpec(format!(
            "tmpfs size must be {TMPFS_SIZE_RANGE}, not {bytes} bytes"
        )))
    }
}

/// A CPU limit in cores: 0.01 to 1024.
pub fn cpus(c: f64) -> Result<f64> {
    if c.is_finite() && (MIN_CPUS..=MAX_CPUS).contains(&c) {
        Ok(c)
    } else {
        Err(Error::InvalidSpec(format!(
            "cpus must be a number of cores from 0.01 to 1024, not {c:?}"
        )))
    }
}

/// A pids limit: 1 to 4194304 (the kernel's most).
pub fn pids(n: i64) -> Result<u64> {
    match u64::try_from(n) {
        Ok(n) if (1..=MAX_PIDS).contains(&n) => Ok(n),
        _ => Err(Error::InvalidSpec(format!(
            "pids must be from 1 to {MAX_PIDS}, not {n}"
        ))),
    }
}

/// A hostname: 1 to 64 letters, digits, `-` and `.`, not starting with `-` or `.`.
pub fn hostname(h: &str) -> Result<()> {
    let ok_chars = h
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    let ok_start = !h.starts_with(['-', '.']);
    if !h.is_empty() && h.len() <= MAX_HOSTNAME && ok_chars && ok_start {
        return Ok(());
    }
    let shown: String = h.chars().take(20).collect();
    let more = if h.chars().count() > 20 { "..." } else { "" };
    Err(Error::InvalidSpec(format!(
        "hostname must be 1 to {MAX_HOSTNAME} letters, digits, `-` and `.` (not first), \
         not `{shown}{more}` ({} characters)",
        h.chars().count()
    )))
}

/// A path inside the sandbox where something is mounted (the working
/// directory, a bind mount's target, a tmpfs): absolute, without `..`, and
/// not `/` itself, which would hide the root filesystem and `/dev`, `/proc`.
pub fn target(what: &str, p: &Path) -> Result<()> {
    if !p.is_absolute() {
        return Err(Error::InvalidSpec(format!(
            "{what} `{}` must be an absolute path inside the sandbox",
            p.display()
        )));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(Error::InvalidSpec(format!(
            "{what} `{}` contains `..`; give the path without it",
            p.display()
        )));
    }
    if p.components()
        .all(|c| matches!(c, Component::RootDir | Component::CurDir))
    {
        return Err(Error::InvalidSpec(format!(
            "{what} cannot be `/` (it would hide the root filesystem); give a directory below it, such as /workdir"
        )));
    }
    Ok(())
}

/// An exit code a test expects: 0 to 255 (what a process can exit with).
pub fn exit_code(code: i64) -> Result<i32> {
    match u8::try_from(code) {
        Ok(c) => Ok(i32::from(c)),
        Err(_) => Err(Error::InvalidSpec(format!(
            "exit code must be from 0 to 255, not {code}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_that_can_never_work_is_refused_with_its_range() {
        let e = timeout(Duration::ZERO).unwrap_err().to_string();
        assert!(e.contains("from 1ms to 365 days"), "{e}");
        assert!(timeout(Duration::from_millis(1)).is_ok());
        assert!(timeout(MAX_TIMEOUT + Duration::from_millis(1)).is_err());

        let e = memory(1).unwrap_err().to_string();
        assert!(e.contains("from 6MiB to 1PiB, not 1 bytes"), "{e}");
        assert!(memory(MIN_MEMORY).is_ok() && memory(MAX_MEMORY + 1).is_err());

        let e = cpus(1e308).unwrap_err().to_string();
        assert!(e.contains("from 0.01 to 1024"), "{e}");
        assert!(cpus(f64::NAN).is_err() && cpus(0.0).is_err() && cpus(1.5).is_ok());

        let e = pids(9_223_372_036_854_775_807).unwrap_err().to_string();
        assert!(e.contains("from 1 to 4194304"), "{e}");
        assert!(pids(0).is_err() && pids(-1).is_err() && pids(256).is_ok());

        let long = "a".repeat(1000);
        let e = hostname(&long).unwrap_err().to_string();
        assert!(
            e.contains("1 to 64") && e.contains("(1000 characters)"),
            "{e}"
        );
        assert!(e.len() < 200, "the message stays one short line: {e}");
        assert!(hostname("cleanroom").is_ok() && hostname("a b").is_err());
        assert!(hostname("-x").is_err() && hostname("").is_err());

        for root in ["/", "//", "/."] {
            let e = target("tmpfs", Path::new(root)).unwrap_err().to_string();
            assert!(e.contains("cannot be `/`"), "{root}: {e}");
        }
        assert!(target("workdir", Path::new("/workdir")).is_ok());
        assert!(target("workdir", Path::new("rel")).is_err());

        let e = exit_code(-1).unwrap_err().to_string();
        assert!(e.contains("from 0 to 255, not -1"), "{e}");
        assert_eq!(exit_code(255).unwrap(), 255);
        assert!(exit_code(256).is_err());
    }

    #[test]
    fn the_library_path_checks_the_same_ranges() {
        let cmd = crate::Cmd::new("true").timeout(Duration::ZERO);
        assert!(cmd.validate().unwrap_err().to_string().contains("from 1ms"));
        let spec = crate::SandboxSpec {
            workdir: "/".into(),
            ..crate::SandboxSpec::default()
        };
        assert!(spec
            .validate()
            .unwrap_err()
            .to_string()
            .contains("cannot be `/`"));
        let spec = crate::SandboxSpec {
            hostname: "x".repeat(1000),
            ..crate::SandboxSpec::default()
        };
        assert!(spec.validate().is_err());
    }
}
