//! Resource limits (`setrlimit`) for the sandboxed process.
//!
//! A sandbox inherits the caller's rlimits; [`apply`] lowers the ones a spec
//! names, in the forked child, just before the rest of the privilege drop.
//! Without `CAP_SYS_RESOURCE` nothing can be raised above its current hard
//! limit, so every value is clamped to the hard limit in force: asking for
//! more than the caller has never fails, it yields what the caller has.
//! [`effective`] computes those clamped values in the parent (the child
//! inherits the same limits), so the enforcement report can say what a run
//! really got.
//!
//! [`apply`] is async-signal-safe: it only issues `prlimit64` system calls and
//! neither allocates nor takes a lock, so it may run between `fork` and `exec`.

use std::io;

/// One resource an rlimit applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    /// `RLIMIT_CORE`: the largest core dump, in bytes (0: none).
    Core,
    /// `RLIMIT_CPU`: CPU time, in seconds.
    Cpu,
    /// `RLIMIT_DATA`: data segment size, in bytes.
    Data,
    /// `RLIMIT_FSIZE`: the largest file the process may create, in bytes.
    Fsize,
    /// `RLIMIT_MEMLOCK`: locked memory, in bytes.
    Memlock,
    /// `RLIMIT_NOFILE`: one more than the highest file descriptor number.
    Nofile,
    /// `RLIMIT_NPROC`: processes of the real user id (all of them on the
    /// host, not only the sandbox's: prefer the cgroup pids limit).
    Nproc,
    /// `RLIMIT_STACK`: main thread stack size, in bytes.
    Stack,
    /// `RLIMIT_AS`: address space, in bytes.
    As,
}

impl Resource {
    /// Every resource, in the order [`Rlimits`] stores them.
    pub const ALL: [Resource; 9] = [
        Resource::Core,
        Resource::Cpu,
        Resource::Data,
        Resource::Fsize,
        Resource::Memlock,
        Resource::Nofile,
        Resource::Nproc,
        Resource::Stack,
        Resource::As,
    ];

    /// The name as in `setrlimit(2)` and `ulimit`, e.g. `RLIMIT_NOFILE`.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Core => "RLIMIT_CORE",
            Resource::Cpu => "RLIMIT_CPU",
            Resource::Data => "RLIMIT_DATA",
            Resource::Fsize => "RLIMIT_FSIZE",
            Resource::Memlock => "RLIMIT_MEMLOCK",
            Resource::Nofile => "RLIMIT_NOFILE",
            Resource::Nproc => "RLIMIT_NPROC",
            Resource::Stack => "RLIMIT_STACK",
            Resource::As => "RLIMIT_AS",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn raw(self) -> libc::c_int {
        // The libc constants have different integer types on glibc and musl.
        #[allow(clippy::unnecessary_cast)]
        let raw = match self {
            Resource::Core => libc::RLIMIT_CORE as libc::c_int,
            Resource::Cpu => libc::RLIMIT_CPU as libc::c_int,
            Resource::Data => libc::RLIMIT_DATA as libc::c_int,
            Resource::Fsize => libc::RLIMIT_FSIZE as libc::c_int,
            Resource::Memlock => libc::RLIMIT_MEMLOCK as libc::c_int,
            Resource::Nofile => libc::RLIMIT_NOFILE as libc::c_int,
            Resource::Nproc => libc::RLIMIT_NPROC as libc::c_int,
            Resource::Stack => libc::RLIMIT_STACK as libc::c_int,
            Resource::As => libc::RLIMIT_AS as libc::c_int,
        };
        raw
    }
}

/// The kernel's `struct rlimit64` (two `__u64`), the argument of
/// `prlimit64(2)` on every architecture.
#[repr(C)]
struct Rlimit64 {
    cur: u64,
    max: u64,
}

/// The value meaning "no limit" (`RLIM_INFINITY`).
pub const INFINITY: u64 = u64::MAX;

/// The rlimits to set: `None` leaves a resource as inherited. A value sets
/// both the soft and the hard limit (lowering the hard limit is what keeps
/// the sandboxed process from raising the soft one again), clamped to the
/// hard limit in force.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rlimits {
    values: [Option<u64>; Resource::ALL.len()],
}

impl Rlimits {
    /// Nothing changed: every resource as inherited.
    pub fn none() -> Self {
        Rlimits::default()
    }

    /// What a sandbox gets unless the spec says otherwise: no core dumps,
    /// and the file descriptor and process limits every backend sets
    /// ([`cleanroom_core::spec::DEFAULT_NOFILE`], [`cleanroom_core::spec::DEFAULT_NPROC`]),
    /// clamped to the caller's hard limits. `RLIMIT_NPROC` counts the
    /// sandbox user's processes in the sandbox's own user namespace, not
    /// the caller's on the host.
    pub fn sandbox_default() -> Self {
        Rlimits::none()
            .with(Resource::Core, 0)
            .with(Resource::Nofile, cleanroom_core::spec::DEFAULT_NOFILE)
            .with(Resource::Nproc, cleanroom_core::spec::DEFAULT_NPROC)
    }

    /// This set with `resource` limited to `value` ([`INFINITY`]: as high as
    /// the hard limit allows).
    #[must_use]
    pub fn with(mut self, resource: Resource, value: u64) -> Self {
        self.values[resource.index()] = Some(value);
        self
    }

    /// The value asked for `resource`, if any.
    pub fn get(&self, resource: Resource) -> Option<u64> {
        self.values[resource.index()]
    }

    /// The resources this set changes, with the value asked.
    pub fn iter(&self) -> impl Iterator<Item = (Resource, u64)> + '_ {
        Resource::ALL
            .iter()
            .filter_map(|&r| self.get(r).map(|v| (r, v)))
    }
}

/// One resource as [`apply`] will set it in a child of this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Effective {
    /// Which resource.
    pub resource: Resource,
    /// The value asked for.
    pub requested: u64,
    /// The value the child will get: `requested` clamped to the hard limit.
    pub effective: u64,
}

impl Effective {
    /// Whether the child gets less than asked (the caller's hard limit is
    /// lower and cannot be raised without `CAP_SYS_RESOURCE`).
    pub fn clamped(&self) -> bool {
        self.effective < self.requested
    }
}

/// The current `(soft, hard)` limits of `resource` for this process.
pub fn get(resource: Resource) -> io::Result<(u64, u64)> {
    let mut old = Rlimit64 { cur: 0, max: 0 };
    // SAFETY: prlimit64 with pid 0 (this process), no new limit (null) and a
    // valid, writable rlimit64 for the old one.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0 as libc::c_long,
            resource.raw() as libc::c_long,
            std::ptr::null::<Rlimit64>(),
            &mut old as *mut Rlimit64,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((old.cur, old.max))
}

/// What [`apply`] will set in a child of this process, for the report: each
/// requested value clamped to this process's hard limit.
pub fn effective(limits: &Rlimits) -> io::Result<Vec<Effective>> {
    limits
        .iter()
        .map(|(resource, requested)| {
            let (_, hard) = get(resource).map_err(|e| {
                io::Error::new(e.kind(), format!("reading {}: {e}", resource.name()))
            })?;
            Ok(Effective {
                resource,
                requested,
                effective: requested.min(hard),
            })
        })
        .collect()
}

/// Sets every limit in `limits` on the calling process, soft and hard, each
/// clamped to its current hard limit (never an attempt to raise it).
///
/// Async-signal-safe (raw `prlimit64` calls only, no allocation), so it can
/// run in a forked child. On failure the error is the raw OS error of the
/// first resource that could not be set; the limits before it stay set.
pub fn apply(limits: &Rlimits) -> io::Result<()> {
    for &resource in Resource::ALL.iter() {
        let Some(value) = limits.values[resource.index()] else {
            continue;
        };
        let mut old = Rlimit64 { cur: 0, max: 0 };
        // SAFETY: read-only query of this process's limit into a valid,
        // writable rlimit64; no memory is allocated.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_prlimit64,
                0 as libc::c_long,
                resource.raw() as libc::c_long,
                std::ptr::null::<Rlimit64>(),
                &mut old as *mut Rlimit64,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let v = value.min(old.max);
        let new = Rlimit64 { cur: v, max: v };
        // SAFETY: sets this process's limit from a valid rlimit64 that is
        // never above the current hard limit; the old value is not asked for.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_prlimit64,
                0 as libc::c_long,
                resource.raw() as libc::c_long,
                &new as *const Rlimit64,
                std::ptr::null_mut::<Rlimit64>(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
