//! The caller's side of the control socket: a [`Channel`] sends requests
//! with ids and routes replies to whoever waits for them; an [`Instance`]
//! is a channel to a sandbox this process forked, with its first child to
//! reap and its cgroup to remove.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cleanroom_core::{Error, Result};
use rustix::process::Pid;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use crate::plan::Plan;
use crate::protocol::{self, Message, MAX_MESSAGE};
use crate::spawn;

/// A reply and the descriptors that came with it.
pub type Reply = (Message, Vec<OwnedFd>);

/// Who waits for which request's replies; `closed` once the reader ended.
#[derive(Default)]
struct Waiting {
    by_id: HashMap<u64, mpsc::UnboundedSender<Reply>>,
    closed: bool,
}

type Pending = Arc<Mutex<Waiting>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data behind these locks stays usable after a panic elsewhere.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One connection to a sandbox's init.
pub struct Channel {
    sock: Arc<AsyncFd<OwnedFd>>,
    pending: Pending,
    next: AtomicU64,
}

/// One running sandbox this process forked, seen from the caller.
pub struct Instance {
    chan: Channel,
    /// The first child, until reaped.
    first: Mutex<Option<Pid>>,
    /// A pidfd for the init (PID 1 inside), readable once it has exited:
    /// from then on no process of the sandbox is left.
    init: Mutex<Option<OwnedFd>>,
    /// The init's and its supervisor's pids as this process sees them.
    pub init_pid: u32,
    pub supervisor_pid: u32,
    /// The sandbox's network and user namespaces (for pods).
    pub namespaces: Option<Arc<(OwnedFd, OwnedFd)>>,
    /// Its cgroup, removed once every process in it is gone.
    cgroup: Mutex<Option<crate::cgroups::Cgroup>>,
    /// Replies for the command carried in the plan, until taken.
    first_exec: Mutex<Option<mpsc::UnboundedReceiver<Reply>>>,
    /// OOM kills in its cgroup already reported (by an earlier exec).
    oom_seen: AtomicU64,
    /// The pooled network namespace it was lent, given back once every
    /// process of the sandbox is gone (dropped, and so not reused, if the
    /// sandbox ends any other way).
    network: Mutex<Option<crate::netns_pool::Lease>>,
}

impl std::ops::Deref for Instance {
    type Target = Channel;
    fn deref(&self) -> &Channel {
        &self.chan
    }
}

/// The request id of the command carried in the plan; requests sent over
/// the socket count from 1.
pub const FIRST_EXEC: u64 = 0;

fn gone(what: &str) -> Error {
    Error::backend(
        "native",
        format!("the sandbox ended while {what}; its init is gone"),
    )
}

/// `fd`, non-blocking, watched by the runtime.
fn register(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    rustix::io::ioctl_fionbio(&fd, true)?;
    // SAFETY: the OwnedFd is moved into the AsyncFd, which owns it (and so
    // keeps the same open descriptor) until it is dropped.
    unsafe { AsyncFd::register(fd) }.map_err(|e| std::io::Error::other(e.to_string()))
}

impl Channel {
    /// A channel over `sock` whose replies a background task routes.
    fn new(sock: Arc<AsyncFd<OwnedFd>>, pending: Pending) -> Channel {
        tokio::spawn(read_loop(sock.clone(), pending.clone()));
        Channel {
            sock,
            pending,
            next: AtomicU64::new(1),
        }
    }

    /// Connects to a named sandbox's control socket and checks that its
    /// init speaks this protocol version. `name` is for messages.
    pub async fn connect_path(path: &Path, name: &str) -> Result<Channel> {
        use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
        let io = |what: &str, e: std::io::Error| {
            Error::io(format!("{what} sandbox `{name}` ({})", path.display()), e)
        };
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| io("opening a socket to", e.into()))?;
        let addr = SocketAddrUnix::new(path).map_err(|e| io("addressing", e.into()))?;
        rustix::net::connect(&fd, &addr).map_err(|e| io("connecting to", e.into()))?;
        let sock = Arc::new(register(fd).map_err(|e| io("registering the socket of", e))?);
        let mut buf = vec![0u8; 4096];
        let first = tokio::time::timeout(Duration::from_secs(10), recv(&sock, &mut buf)).await;
        match first {
            Ok(Ok(Some((Message::Hello { version, release }, _)))) => {
                if version != protocol::VERSION {
                    return Err(Error::backend(
                        "native",
                        protocol::version_mismatch(&release, version),
                    ));
                }
            }
            Ok(Ok(Some((Message::Fail { reason }, _)))) => {
                return Err(Error::backend(
                    "native",
                    format!("sandbox `{name}` refused: {reason}"),
                ))
            }
            Ok(Ok(Some((other, _)))) => {
                return Err(Error::backend(
                    "native",
                    format!("sandbox `{name}` opened with {other:?} instead of hello"),
                ))
            }
            Ok(Ok(None)) => {
                return Err(Error::backend(
                    "native",
                    format!(
                        "sandbox `{name}` closed the connection at once (another user's sandbox?)"
                    ),
                ))
            }
            Ok(Err(e)) => return Err(io("reading the hello of", e)),
            Err(_) => {
                return Err(Error::backend(
                    "native",
                    format!("sandbox `{name}` did not answer within 10 s"),
                ))
            }
        }
        Ok(Channel::new(sock, Pending::default()))
    }

    /// Sends a request built from a fresh id; replies arrive on the receiver.
    pub async fn request(
        &self,
        build: impl FnOnce(u64) -> Message,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(u64, mpsc::UnboundedReceiver<Reply>)> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut waiting = lock(&self.pending);
            if waiting.closed {
                return Err(gone("sending a request"));
            }
            waiting.by_id.insert(id, tx);
        }
        let msg = build(id);
        if let Err(e) = send(&self.sock, &msg, fds).await {
            lock(&self.pending).by_id.remove(&id);
            return Err(Error::io("sending a request to the sandbox", e));
        }
        Ok((id, rx))
    }

    /// Forgets request `id` (its last reply arrived).
    pub fn done(&self, id: u64) {
        lock(&self.pending).by_id.remove(&id);
    }

    /// A request with exactly one `ok`/`err` reply.
    pub async fn call(&self, build: impl FnOnce(u64) -> Message, what: &str) -> Result<()> {
        let (id, mut rx) = self.request(build, &[]).await?;
        let reply = rx.recv().await;
        self.done(id);
        match reply {
            Some((Message::Ok { .. }, _)) => Ok(()),
            Some((Message::Err { reason, .. }, _)) => {
                Err(Error::backend("native", format!("{what}: {reason}")))
            }
            Some((other, _)) => Err(Error::backend(
                "native",
                format!("{what}: unexpected reply {other:?}"),
            )),
            None => Err(gone(what)),
        }
    }

    /// The sandbox's network and user namespaces, handed over by its init
    /// (which a caller without privileges may not open through /proc: the
    /// init is not dumpable).
    pub async fn namespaces(&self) -> Result<(OwnedFd, OwnedFd)> {
        let (id, mut rx) = self.request(|id| Message::Namespaces { id }, &[]).await?;
        let reply = rx.recv().await;
        self.done(id);
        match reply {
            Some((Message::Ns { .. }, fds)) if fds.len() == 2 => {
                let mut fds = fds.into_iter();
                match (fds.next(), fds.next()) {
                    (Some(net), Some(user)) => Ok((net, user)),
                    _ => Err(Error::backend("native", "the init sent no namespaces")),
                }
            }
            Some((Message::Err { reason, .. }, _)) => Err(Error::backend("native", reason)),
            Some((other, _)) => Err(Error::backend(
                "native",
                format!("asking for the sandbox's namespaces: unexpected reply {other:?}"),
            )),
            None => Err(gone("asking for its namespaces")),
        }
    }

    /// A TCP connection to `port` on the sandbox's loopback, made by its init.
    pub async fn connect(&self, port: u16) -> Result<std::net::TcpStream> {
        let (id, mut rx) = self
            .request(|id| Message::Connect { id, port }, &[])
            .await?;
        let reply = rx.recv().await;
        self.done(id);
        match reply {
            Some((Message::Conn { .. }, mut fds)) if fds.len() == 1 => {
                let s = std::net::TcpStream::from(fds.remove(0));
                s.set_nonblocking(true)
                    .map_err(|e| Error::io("preparing a published-port connection", e))?;
                Ok(s)
            }
            Some((Message::Err { reason, .. }, _)) => Err(Error::backend("native", reason)),
            Some((other, _)) => Err(Error::backend(
                "native",
                format!("connecting to port {port}: unexpected reply {other:?}"),
            )),
            None => Err(gone("connecting to a published port")),
        }
    }

    /// Closes this side: the init sees the channel end.
    pub fn close(&self) {
        let _ = rustix::net::shutdown(self.sock.get_ref(), rustix::net::Shutdown::Both);
    }
}

impl Instance {
    /// Forks the sandbox and waits until its init reports ready. Its cgroup
    /// was made before the fork or, for a plan with [`Plan::cgroup_later`],
    /// is made right after it (while the first child creates the
    /// namespaces) and sent to it.
    pub async fn start(plan: Plan, cgroup: CgroupPlan) -> Result<Instance> {
        let carries_exec = plan.first_exec.is_some();
        let spawned = spawn::on_spawner(move || spawn::spawn(plan))
            .await
            .and_then(|r| r)
            .map_err(|e| Error::io("forking the native sandbox", e))?;
        let first = spawned.pid;
        let sock = match register(spawned.control) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                kill_and_reap(first);
                return Err(Error::io("registering the control socket", e));
            }
        };
        let cgroup = match cgroup {
            CgroupPlan::Made(cgroup) => cgroup,
            CgroupPlan::Later(limits) => match send_cgroup(&sock, limits).await {
                Ok(cgroup) => Some(cgroup),
                Err(e) => {
                    kill_and_reap(first);
                    return Err(e);
                }
            },
        };
        // "ready" or "fail" with its reason. The pool's buffer, which the
        // reader below takes next: nothing is zeroed per sandbox.
        let mut buf = cleanroom_core::scratch::take(MAX_MESSAGE);
        let first_reply =
            tokio::time::timeout(Duration::from_secs(60), recv(&sock, &mut buf)).await;
        let (namespaces, init, init_pid, supervisor_pid) = match first_reply {
            Ok(Ok(Some((
                Message::Ready {
                    version,
                    release,
                    init_pid,
                    supervisor_pid,
                },
                fds,
            )))) => {
                if version != protocol::VERSION {
                    kill_and_reap(first);
                    return Err(Error::backend(
                        "native",
                        protocol::version_mismatch(&release, version),
                    ));
                }
                let mut fds = fds.into_iter();
                let namespaces = match (fds.next(), fds.next()) {
                    (Some(net), Some(user)) => Some(Arc::new((net, user))),
                    _ => None,
                };
                let parent = Pid::from_raw(supervisor_pid as i32).unwrap_or(first);
                let init = watch_init(init_pid as u64, parent);
                if init.is_none() {
                    tracing::debug!(
                        "native: no pidfd for the init; shutdown waits for the first child"
                    );
                }
                (namespaces, init, init_pid, supervisor_pid)
            }
            Ok(Ok(Some((Message::Fail { reason }, _)))) => {
                kill_and_reap(first);
                return Err(Error::backend(
                    "native",
                    format!("setting up the sandbox failed: {reason}"),
                ));
            }
            other => {
                kill_and_reap(first);
                let why = match other {
                    Err(_) => "it did not report ready within 60 s".to_string(),
                    Ok(Err(e)) => format!("reading its first message: {e}"),
                    Ok(Ok(None)) => "it exited before reporting ready".to_string(),
                    Ok(Ok(Some((m, _)))) => format!("unexpected first message {m:?}"),
                };
                return Err(Error::backend(
                    "native",
                    format!("the sandbox's init failed to start: {why}"),
                ));
            }
        };
        // Back to the pool before the reader takes one.
        drop(buf);
        let pending: Pending = Arc::default();
        // Registered before the reader starts: the command may end at once.
        let first_exec = carries_exec.then(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            lock(&pending).by_id.insert(FIRST_EXEC, tx);
            rx
        });
        Ok(Instance {
            chan: Channel::new(sock, pending),
            oom_seen: AtomicU64::new(0),
            first: Mutex::new(Some(first)),
            init: Mutex::new(init),
            init_pid,
            supervisor_pid,
            namespaces,
            cgroup: Mutex::new(cgroup),
            first_exec: Mutex::new(first_exec),
            network: Mutex::new(None),
        })
    }

    /// Keeps the pooled network namespace the sandbox was started in, to
    /// give back at [`Instance::shutdown`].
    pub fn lend_network(&self, lease: Option<crate::netns_pool::Lease>) {
        *lock(&self.network) = lease;
    }

    /// Gives the network namespace back: call once no process of the
    /// sandbox is left.
    fn give_back_network(&self) {
        if let Some(lease) = lock(&self.network).take() {
            crate::netns_pool::give_back(lease);
        }
    }

    /// The replies for the command the plan carried ([`FIRST_EXEC`]).
    pub fn take_first_exec(&self) -> Option<mpsc::UnboundedReceiver<Reply>> {
        lock(&self.first_exec).take()
    }

    /// Lets a detached sandbox go: it keeps running after this process,
    /// which no longer reaps or removes anything of it. Returns its cgroup,
    /// which the sandbox's record now owns.
    pub fn release(&self) -> Option<crate::cgroups::Cgroup> {
        if let Some(pid) = lock(&self.first).take() {
            // The first child exits at once (its child supervises).
            spawn::reap_in_background(pid);
        }
        lock(&self.init).take();
        self.chan.close();
        lock(&self.cgroup).take()
    }

    pub fn is_running(&self) -> bool {
        lock(&self.first).is_some()
    }

    /// Ends the sandbox and waits until every process in it is gone.
    pub async fn shutdown(&self) {
        let Some(pid) = lock(&self.first).take() else {
            return;
        };
        // Closing our end makes the init exit; the kernel then kills the
        // rest of the pid namespace.
        self.chan.close();
        let cgroup = lock(&self.cgroup).take();
        let init = lock(&self.init).take();
        // SAFETY: the pidfd is owned by the AsyncFd until it is dropped.
        let init = init.and_then(|fd| unsafe { AsyncFd::register(fd) }.ok());
        if let Some(init) = init {
            // The init's exit is the sandbox's end: as PID 1 it leaves only
            // once every other process in its pid namespace is gone. The
            // first child then tears down the namespaces and the copy of
            // our memory on its own.
            let ended = tokio::time::timeout(Duration::from_secs(5), init.readable()).await;
            if ended.is_err() {
                // Killing the first child kills the init (its death signal).
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                let _ = init.readable().await;
            }
            // The cgroup goes now: only the init and what it started were
            // in it (the first child never was), and they have all left
            // it (a readable pidfd means the init's exit has passed the
            // point where it leaves its cgroups). A caller must not exit
            // before it is removed: `spawn_cleanup` makes the process wait
            // for it when it exits. Waiting for the first child first cost
            // a `run --memory` about 2 ms at exit: the child unmaps its
            // copy of our memory as it exits.
            if cgroup.is_some() {
                spawn_cleanup(move || remove_cgroup(cgroup));
            }
            self.give_back_network();
            // Nothing else to clean after the first child: a task that is
            // simply dropped if the runtime shuts down first (the child,
            // already exiting, is then reaped by whoever inherits it).
            tokio::spawn(reap_async(pid, Duration::from_secs(5)));
            return;
        }
        // Without a pidfd for the init: wait for the first child, which
        // exits right after it.
        reap_async(pid, Duration::from_secs(5)).await;
        self.give_back_network();
        // Every process of the sandbox is gone; the empty cgroup is removed
        // in the background.
        spawn_cleanup(move || remove_cgroup(cgroup));
    }

    /// Whether the kernel's OOM killer ended a process for the memory limit.
    /// Only kills since the last call count: an exec after one that ran
    /// out of memory is not reported for it.
    pub fn oom_killed(&self) -> bool {
        let kills = lock(&self.cgroup).as_ref().map_or(0, |c| c.oom_kills());
        self.oom_seen.fetch_max(kills, Ordering::Relaxed) < kills
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(pid) = lock(&self.first).take() {
            kill_and_reap(pid);
        }
    }
}

/// Waits for our child `pid` to exit (killing it after `grace`) and reaps
/// it, without holding a thread while it waits.
async fn reap_async(pid: Pid, grace: Duration) {
    // SAFETY: the pidfd is owned by the AsyncFd until it is dropped.
    match spawn::pidfd_open(pid).and_then(|fd| unsafe { AsyncFd::register(fd) }.ok()) {
        Some(afd) => {
            // Readable once the child has exited.
            if tokio::time::timeout(grace, afd.readable()).await.is_err() {
                spawn::pidfd_kill(afd.get_ref());
                let _ = afd.readable().await;
            }
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
        }
        None => {
            let _ = tokio::task::spawn_blocking(move || spawn::reap(pid, grace)).await;
        }
    }
}

/// Runs a sandbox's clean-up in the background, and makes sure the process
/// waits for it when it exits: a caller's runtime may outlive the call (the
/// bridge's lives as long as the process), and a clean-up cut off by the
/// exit leaves the sandbox's cgroup behind.
fn spawn_cleanup(f: impl FnOnce() + Send + 'static) {
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    AT_EXIT.call_once(|| {
        extern "C" fn drain_at_exit() {
            if !cleanroom_core::bridge::drain(Duration::from_secs(10)) {
                // Not `eprintln!`: a panic must not unwind out of an
                // `extern "C"` function.
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    b"cleanroom: a sandbox's clean-up did not finish in 10 s; \
                      `cleanroom gc` removes what it left\n",
                );
            }
        }
        // SAFETY: `drain_at_exit` is a plain `extern "C" fn` with no
        // arguments that never unwinds (drain and the write do not panic)
        // and touches only statics that live until the process ends. A failure to
        // register (out of slots) only loses the wait at exit.
        unsafe {
            libc::atexit(drain_at_exit);
        }
    });
    cleanroom_core::bridge::spawn_cleanup(f);
}

fn remove_cgroup(cgroup: Option<crate::cgroups::Cgroup>) {
    if let Some(cg) = cgroup {
        if let Err(e) = cg.remove() {
            tracing::warn!("native: removing the sandbox's cgroup: {e}");
        }
    }
}

/// Where a sandbox's cgroup comes from (see [`Instance::start`]).
pub enum CgroupPlan {
    /// Made before the fork (or none).
    Made(Option<crate::cgroups::Cgroup>),
    /// To be made with these limits after the fork, for a plan with
    /// [`Plan::cgroup_later`].
    Later(crate::cgroups::Limits),
}

/// Makes the cgroup for `limits` and sends its files to the first child,
/// which waits for them before it starts the init.
async fn send_cgroup(
    sock: &AsyncFd<OwnedFd>,
    limits: crate::cgroups::Limits,
) -> Result<crate::cgroups::Cgroup> {
    let (cgroup, files) = cleanroom_core::bridge::blocking(move || -> Result<_> {
        // One-shot: no v2 directory just to track processes (see there).
        let cgroup = crate::cgroups::Cgroup::create_with(&limits, false)
            .map_err(|e| Error::io("creating the sandbox's cgroup for its limits", e))?;
        let files = cgroup
            .open_procs()
            .map_err(|e| Error::io("opening the sandbox cgroup's procs files", e))?;
        Ok((cgroup, files))
    })
    .await
    .map_err(|e| Error::backend("native", format!("making the sandbox's cgroup: {e}")))??;
    let (v1, v2, fds) = files.into_parts();
    let attached: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    protocol::send(
        sock.get_ref().as_fd(),
        &Message::Cgroup { v1, v2 },
        &attached,
    )
    .map_err(|e| Error::io("sending the sandbox its cgroup", e))?;
    // What dead callers left beside it goes while the sandbox starts (the
    // exit waits for it), not before the first child can go on.
    let bases = cgroup.neighbourhood();
    if crate::cgroups::reap_dead_pending(&bases) {
        spawn_cleanup(move || {
            crate::cgroups::reap_dead_once(&bases);
        });
    }
    Ok(cgroup)
}

/// A pidfd for the init, whose pid in our namespace it reported, once it is
/// sure to be that process: a child of our first child.
fn watch_init(pid: u64, first: Pid) -> Option<OwnedFd> {
    let pid = i32::try_from(pid).ok().filter(|p| *p > 0)?;
    let fd = spawn::pidfd_open(Pid::from_raw(pid)?)?;
    // Taken after the pidfd: if the pid was reused before it, the parent
    // is not our first child and the pidfd is dropped; if the init died
    // after it, the pidfd simply reports that.
    let stat = crate::proc_stat::read(pid as u32).ok()?;
    (crate::proc_stat::parent(&stat)? == first.as_raw_pid()).then_some(fd)
}

/// Kills the first child (its death signal kills the init, and with it the
/// whole sandbox) and reaps it in the background.
fn kill_and_reap(pid: Pid) {
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    spawn::reap_in_background(pid);
}

async fn send(
    sock: &AsyncFd<OwnedFd>,
    msg: &Message,
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<()> {
    loop {
        let mut guard = sock.writable().await?;
        match guard.try_io(|inner| protocol::send(inner.get_ref().as_fd(), msg, fds)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

async fn recv(sock: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> std::io::Result<Option<Reply>> {
    loop {
        let mut guard = sock.readable().await?;
        match guard.try_io(|inner| protocol::recv(inner.get_ref().as_fd(), buf)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

/// Tells everyone still waiting that the sandbox is gone, however the
/// reader ends (the socket closed, or its runtime shut down).
struct ClearOnDrop(Pending);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        let mut waiting = lock(&self.0);
        waiting.closed = true;
        waiting.by_id.clear();
    }
}

/// Routes every reply to the request it answers, until the socket closes.
async fn read_loop(sock: Arc<AsyncFd<OwnedFd>>, pending: Pending) {
    let pending = ClearOnDrop(pending);
    // One buffer for the sandbox's life: a fresh 256 KiB per message is an
    // mmap and munmap each time, and every munmap in a multi-threaded
    // caller interrupts its other CPUs to flush their TLBs. Taken from the
    // pool: zeroing 256 KiB per sandbox costs a copy-on-write fault per
    // page while the sandbox's first process (a fork of ours) lives.
    let mut buf = cleanroom_core::scratch::take(MAX_MESSAGE);
    while let Ok(Some((msg, fds))) = recv(&sock, &mut buf).await {
        let Some(id) = msg.id() else { continue };
        if let Some(tx) = lock(&pending.0).by_id.get(&id) {
            let _ = tx.send((msg, fds));
        }
    }
}
