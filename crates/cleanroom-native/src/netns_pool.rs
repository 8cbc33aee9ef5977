//! Network namespaces handed from one finished one-shot sandbox to the next
//! in a process that runs many (a test suite), instead of one made and torn
//! down per sandbox.
//!
//! Making a network namespace, and the kernel's clean-up of it afterwards
//! (`cleanup_net`, on a kernel worker), is one of the larger costs of a
//! short sandbox. A namespace is reused only when a process inside could not
//! tell it from a fresh one but by its identity (`/proc/self/ns/net`, its
//! cookie): on return no socket of any kind is left in it
//! (`TIME_WAIT` included) and its counters (`/proc/net/dev`, `snmp`,
//! `snmp6`, `netstat`) are exactly as they were when it was made, so not
//! one packet moved through it. A sandbox that used the network in any way
//! leaves its namespace to the kernel, and the next one gets a new one.
//!
//! Nothing inside can change the namespace itself: a root caller's pooled
//! namespace belongs to the host's user namespace, a rootless caller's to a
//! user namespace made for it that maps only the caller, and the sandbox's
//! own user namespace is another one (rootless, a child of that one), which gives
//! its processes no capability over it (addresses, routes, sysctls, firewall
//! rules stay as made). Only one-shot runs take part: no other sandbox can
//! join a one-shot's network (a pod), so when its init is gone, nothing of
//! it is left in there.
//!
//! A process uses the pool only while it runs sandboxes back to back (one
//! started within the last second); a single `cleanroom run` makes its
//! namespace as before. Each pooled namespace has a holder: a sleeping
//! child sharing our memory ([`crate::clone::Sleeper`]) that stays in it, so
//! its `/proc/PID/net` can be read; idle ones go after a second.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::clone::Sleeper;

/// A process that started a one-shot sandbox less than this long ago is
/// running them back to back: worth a pooled namespace.
const BUSY: Duration = Duration::from_secs(1);
/// A namespace returned and not taken again within this long is dropped.
const IDLE: Duration = Duration::from_secs(1);
/// At most this many idle namespaces are kept (one per sandbox running at
/// once is enough).
const MAX_IDLE: usize = 16;
/// The files whose text must be as it was when the namespace was made.
const COUNTERS: [&str; 4] = ["dev", "snmp", "snmp6", "netstat"];

/// A pooled network namespace, lent to one sandbox at a time.
pub struct Lease {
    net: OwnedFd,
    /// The user namespace that owns `net` (a rootless caller's); entered
    /// before it. `None`: the host's, where the caller already is.
    user: Option<OwnedFd>,
    /// Whether `lo` is still down (a new namespace): the first sandbox's
    /// first process brings it up.
    fresh: bool,
    /// The counters' text as made (`lo` up or down moves none of them).
    baseline: Vec<u8>,
    holder: Holder,
    /// Our end of the holder's pipe: closing it ends the holder.
    _wake: OwnedFd,
    returned: Instant,
}

/// What the sandbox's first process needs to enter a pooled namespace:
/// copies of the descriptors, since the plan goes with the fork.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Join {
    #[serde(with = "crate::fdpass")]
    pub net: OwnedFd,
    #[serde(with = "crate::fdpass::option")]
    pub user: Option<OwnedFd>,
    /// Bring `lo` up after entering (the namespace is new).
    pub bring_up: bool,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Lease>,
    last_start: Option<Instant>,
    sweeping: bool,
}

fn pool() -> &'static Mutex<Pool> {
    static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
    POOL.get_or_init(Mutex::default)
}

fn lock() -> std::sync::MutexGuard<'static, Pool> {
    pool().lock().unwrap_or_else(|p| p.into_inner())
}

/// A namespace for a one-shot sandbox about to start, and what its first
/// process needs to join it; `None` when the sandbox should make its own
/// (the process is not running sandboxes back to back, or a namespace
/// could not be made here, which the sandbox then reports itself).
pub fn lease() -> Option<(Lease, Join)> {
    let now = Instant::now();
    let (idle, busy) = {
        let mut pool = lock();
        let busy = pool.last_start.is_some_and(|t| now - t < BUSY);
        pool.last_start = Some(now);
        (pool.idle.pop(), busy)
    };
    let mut lease = match idle {
        Some(l) => l,
        None if !busy => return None,
        None => match Lease::new() {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!("native: no pooled network namespace ({e}); one per sandbox");
                return None;
            }
        },
    };
    let join = Join {
        net: lease.net.try_clone().ok()?,
        user: match &lease.user {
            Some(u) => Some(u.try_clone().ok()?),
            None => None,
        },
        bring_up: lease.fresh,
    };
    lease.fresh = false;
    Some((lease, join))
}

/// Takes back `lease` from a sandbox whose processes are all gone: kept
/// for the next sandbox if nothing inside could tell it was used, else
/// dropped (the kernel removes the namespace).
pub fn give_back(mut lease: Lease) {
    match lease.unused() {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::debug!("native: reading a pooled network namespace's counters: {e}");
            return;
        }
    }
    lease.returned = Instant::now();
    let arm = {
        let mut pool = lock();
        if pool.idle.len() >= MAX_IDLE {
            return;
        }
        pool.idle.push(lease);
        !std::mem::replace(&mut pool.sweeping, true)
    };
    if arm {
        arm_sweeper();
    }
}

/// Drops namespaces idle for [`IDLE`], checking again until none is left
/// (on the caller's runtime; without one, they stay until the next use or
/// the process ends).
fn arm_sweeper() {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        lock().sweeping = false;
        return;
    };
    rt.spawn(async {
        loop {
            tokio::time::sleep(IDLE).await;
            let (stale, again) = {
                let mut pool = lock();
                let now = Instant::now();
                let (keep, stale): (Vec<Lease>, Vec<Lease>) = std::mem::take(&mut pool.idle)
                    .into_iter()
                    .partition(|l| now - l.returned < IDLE);
                pool.idle = keep;
                pool.sweeping = !pool.idle.is_empty();
                (stale, pool.sweeping)
            };
            // Outside the lock: each holder is killed and reaped.
            drop(stale);
            if !again {
                return;
            }
        }
    });
}

/// The process that keeps a pooled namespace readable through /proc.
struct Holder(Sleeper);

// SAFETY: a `Sleeper` is a child's pid and the stack it runs on (a raw
// pointer to a mapping that belongs to it alone, unmapped once the child
// is reaped): any thread may own it, and reap and unmap on drop.
unsafe impl Send for Holder {}

impl Lease {
    /// A new network namespace with its holder: owned by the host's user
    /// namespace for a root caller, else by a new one mapping only the
    /// caller's ids to themselves.
    fn new() -> std::io::Result<Lease> {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        let rootless = uid != 0;
        let mut flags = libc::CLONE_NEWNET;
        if rootless {
            flags |= libc::CLONE_NEWUSER;
        }
        let (read, wake) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let holder = Holder(Sleeper::start(flags, read.as_fd(), wake.as_fd())?);
        drop(read);
        let proc = format!("/proc/{}", holder.0.pid.as_raw_pid());
        let write = |file: &str, text: String| {
            std::fs::write(format!("{proc}/{file}"), &text).map_err(|e| {
                std::io::Error::new(e.kind(), format!("writing {file} ({text:?}): {e}"))
            })
        };
        if rootless {
            write("setgroups", "deny".into())?;
            write("uid_map", format!("{uid} {uid} 1\n"))?;
            write("gid_map", format!("{gid} {gid} 1\n"))?;
        }
        let open = |ns: &str| std::fs::File::open(format!("{proc}/ns/{ns}")).map(OwnedFd::from);
        let net = open("net")?;
        let user = if rootless { Some(open("user")?) } else { None };
        let mut lease = Lease {
            net,
            user,
            fresh: true,
            baseline: Vec::new(),
            holder,
            _wake: wake,
            returned: Instant::now(),
        };
        lease.baseline = lease.counters()?;
        Ok(lease)
    }

    /// The counters' text, read through the holder.
    fn counters(&self) -> std::io::Result<Vec<u8>> {
        let dir = format!("/proc/{}/net", self.holder.0.pid.as_raw_pid());
        let mut text = Vec::with_capacity(self.baseline.len().max(8192));
        for name in COUNTERS {
            let mut f = std::fs::File::open(format!("{dir}/{name}"))?;
            std::io::Read::read_to_end(&mut f, &mut text)?;
        }
        Ok(text)
    }

    /// No socket in the namespace and no counter moved since it was made.
    fn unused(&self) -> std::io::Result<bool> {
        let dir = format!("/proc/{}/net", self.holder.0.pid.as_raw_pid());
        let sockstat = std::fs::read_to_string(format!("{dir}/sockstat"))?;
        if !no_sockets(&sockstat) {
            return Ok(false);
        }
        Ok(self.counters()? == self.baseline)
    }
}

/// Whether `/proc/net/sockstat` shows no socket in use (of any family: the
/// first line counts them all in this namespace) and none in `TIME_WAIT`.
fn no_sockets(sockstat: &str) -> bool {
    let field = |line: &str, name: &str| -> Option<u64> {
        let mut words = line.split_whitespace();
        words.find(|w| *w == name)?;
        words.next()?.parse().ok()
    };
    let mut used = None;
    let mut tw = None;
    for line in sockstat.lines() {
        if line.starts_with("sockets:") {
            used = field(line, "used");
        } else if line.starts_with("TCP:") {
            tw = field(line, "tw");
        }
    }
    used == Some(0) && tw == Some(0)
}

#[cfg(test)]
mod tests {
    use super::no_sockets;

    #[test]
    fn sockstat_is_read_strictly() {
        let clean =
            "sockets: used 0\nTCP: inuse 0 orphan 3 tw 0 alloc 2 mem 0\nUDP: inuse 0 mem 0\n";
        assert!(no_sockets(clean));
        assert!(!no_sockets(&clean.replace("used 0", "used 1")));
        assert!(!no_sockets(&clean.replace("tw 0", "tw 4")));
        // A format we do not know is never taken for clean.
        assert!(!no_sockets("sockets: used 0\n"));
        assert!(!no_sockets(""));
    }
}
