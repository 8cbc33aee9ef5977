//! One QEMU `microvm` on the host: its command line, its run directory (the
//! agent's socket, the console log, the owner's pid for `gc`), booting it to
//! the agent's `Ready`, talking to the agent, and making sure it dies with
//! its owner (`setpriv --pdeathsig KILL`, spawned from a thread that lives
//! as long as the process).

use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cleanroom_core::{Error, Result};

use crate::guest::BootArgs;
use crate::protocol::{self, Frame, Reply, Request};

/// Where the guest sees the host's `/etc` (read-only; the agent links the
/// few files the native backend's `host` rootfs binds).
pub const HOST_ETC: &str = "/run/host/etc";

/// The QEMU binary this backend runs.
pub const QEMU: &str = "qemu-system-x86_64";

/// How the guest's instructions run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization through /dev/kvm.
    Kvm,
    /// QEMU's software emulation: works everywhere, several times slower.
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// A host directory the guest mounts over 9p.
#[derive(Clone, Debug)]
pub struct Share {
    pub host: PathBuf,
    pub guest: PathBuf,
    pub read_only: bool,
}

/// Everything one VM is booted with.
#[derive(Clone, Debug)]
pub struct BootOptions {
    pub accel: Accel,
    pub memory_mib: u64,
    pub cpus: u32,
    pub shares: Vec<Share>,
    /// Top-level symlinks in the guest (name, target), like the host's
    /// merged-/usr links.
    pub links: Vec<(String, String)>,
    /// How long the guest may take to reach the agent's `Ready`.
    pub boot_timeout: Duration,
}

impl BootOptions {
    /// A VM showing the host's `/usr` (and its top-level links or library
    /// directories) and `/etc` read-only, as the `host` rootfs needs.
    pub fn host_root(accel: Accel) -> BootOptions {
        let mut shares = vec![
            Share {
                host: "/usr".into(),
                guest: "/usr".into(),
                read_only: true,
            },
            Share {
                host: "/etc".into(),
                guest: HOST_ETC.into(),
                read_only: true,
            },
        ];
        let mut links = Vec::new();
        let mut names: Vec<String> = std::fs::read_dir("/")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("lib") || n == "bin" || n == "sbin")
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        for name in names {
            let path = Path::new("/").join(&name);
            match std::fs::read_link(&path) {
                Ok(target) => links.push((name, target.to_string_lossy().into_owned())),
                Err(_) if path.is_dir() => shares.push(Share {
                    host: path.clone(),
                    guest: path,
                    read_only: true,
                }),
                Err(_) => {}
            }
        }
        BootOptions {
            accel,
            memory_mib: 512,
            cpus: 1,
            shares,
            links,
            boot_timeout: default_boot_timeout(accel),
        }
    }
}

/// The boot timeout: `CLEANROOM_VM_BOOT_TIMEOUT_MS`, else 20 s under KVM
/// and 120 s under TCG (a loaded two-core machine boots slowly).
pub fn default_boot_timeout(accel: Accel) -> Duration {
    if let Some(ms) = std::env::var("CLEANROOM_VM_BOOT_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        return Duration::from_millis(ms);
    }
    match accel {
        Accel::Kvm => Duration::from_secs(20),
        Accel::Tcg => Duration::from_secs(120),
    }
}

/// A VM's files on the host, removed when dropped. `gc` removes those of
/// owners that died.
pub struct RunDir {
    pub path: PathBuf,
}

/// The directory holding every VM's run directory.
pub fn runs_root() -> PathBuf {
    std::env::temp_dir().join(format!(
        "cleanroom-vm-{}",
        rustix::process::geteuid().as_raw()
    ))
}

/// The file in a run directory naming its owner's pid.
pub const OWNER_FILE: &str = "owner";

impl RunDir {
    fn new() -> Result<RunDir> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let root = runs_root();
        std::fs::create_dir_all(&root)
            .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
        let path = root.join(format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = cleanroom_core::paths::remove_all(&path);
        std::fs::create_dir(&path)
            .and_then(|()| std::fs::write(path.join(OWNER_FILE), std::process::id().to_string()))
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(RunDir { path })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = cleanroom_core::paths::remove_all(&self.path);
    }
}

/// A booted VM with its agent ready. Killed (and its files removed) when
/// dropped.
pub struct Vm {
    child: Child,
    pub stream: UnixStream,
    /// The guest kernel's release, as the agent reported it.
    pub kernel: String,
    /// From spawning QEMU to the agent's `Ready`.
    pub boot_time: Duration,
    /// The guest's own clock from its kernel's start to the agent's
    /// `Ready` (the rest of `boot_time` is QEMU, firmware and loading).
    pub guest_uptime: Duration,
    pub accel: Accel,
    /// The console log, kept open: the run directory is removed once QEMU
    /// has connected, so a VM whose owner is killed leaves no files.
    console: std::fs::File,
}

impl Vm {
    /// Boots a VM and waits for its agent.
    pub fn boot(kernel: &Path, initramfs: &Path, opts: &BootOptions) -> Result<Vm> {
        let dir = RunDir::new()?;
        let sock = dir.path.join("agent.sock");
        let listener = UnixListener::bind(&sock)
            .map_err(|e| Error::io(format!("listening on {}", sock.display()), e))?;
        let console = dir.path.join("console.log");
        // Made (and opened for reading) before QEMU, which writes the same
        // file: our handle outlives the run directory.
        let console_log = std::fs::File::create(&console)
            .and_then(|_| std::fs::File::open(&console))
            .map_err(|e| Error::io(format!("creating {}", console.display()), e))?;
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--", QEMU]);
        cmd.args(qemu_args(
            kernel,
            initramfs,
            opts,
            &Channel::Connect(&sock),
            &console,
        ));
        cmd.stdin(Stdio::null());
        let qemu_log = dir.path.join("qemu.log");
        let log =
            std::fs::File::create(&qemu_log).map_err(|e| Error::io("creating qemu.log", e))?;
        let mut qemu_log =
            std::fs::File::open(&qemu_log).map_err(|e| Error::io("opening qemu.log", e))?;
        cmd.stdout(Stdio::null()).stderr(log);
        let started = Instant::now();
        let mut child = spawn_owned(cmd)?;
        let deadline = started + opts.boot_timeout;
        let mut console_log = console_log;
        let stream = match accept_until(&listener, &mut child, deadline) {
            Ok(s) => s,
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(boot_failed(&why, &mut console_log, &mut qemu_log, opts));
            }
        };
        // QEMU holds its files open and is connected: nothing needs their
        // names any more, and a caller killed from here on leaves none.
        drop(dir);
        let mut vm = Vm {
            child,
            stream,
            kernel: String::new(),
            boot_time: Duration::ZERO,
            guest_uptime: Duration::ZERO,
            accel: opts.accel,
            console: console_log,
        };
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        vm.stream
            .set_read_timeout(Some(left))
            .map_err(|e| Error::io("setting the agent socket's timeout", e))?;
        match protocol::read_frame::<Reply>(&mut vm.stream) {
            Ok(Some(Frame::Message(Reply::Ready {
                version,
                kernel,
                uptime_ms,
            }))) => {
                if version != protocol::VERSION {
                    return Err(Error::backend(
                        crate::NAME,
                        format!(
                            "the guest agent speaks protocol {version}, this caller {}: rebuild \
                             both from one source (the initramfs is rebuilt with the agent)",
                            protocol::VERSION
                        ),
                    ));
                }
                vm.kernel = kernel;
                vm.guest_uptime = Duration::from_millis(uptime_ms);
            }
            Ok(None) => {
                let why = "the agent ended before it was ready";
                return Err(boot_failed(why, &mut vm.console, &mut qemu_log, opts));
            }
            Ok(Some(other)) => {
                let why = format!("the agent sent {other:?} before Ready");
                return Err(boot_failed(&why, &mut vm.console, &mut qemu_log, opts));
            }
            Err(e) => {
                let why = format!("waiting for the agent's Ready: {e}");
                return Err(boot_failed(&why, &mut vm.console, &mut qemu_log, opts));
            }
        }
        vm.boot_time = started.elapsed();
        record_boot(opts.accel, vm.boot_time);
        vm.stream
            .set_read_timeout(None)
            .map_err(|e| Error::io("clearing the agent socket's timeout", e))?;
        Ok(vm)
    }

    /// Sends one request.
    pub fn send(&mut self, r: &Request) -> Result<()> {
        protocol::write_message(&mut self.stream, r)
            .map_err(|e| self.gone(&format!("sending to the agent: {e}")))
    }

    /// Sends bytes as data frames (a copy's tar).
    pub fn send_data(&mut self, bytes: &[u8]) -> Result<()> {
        protocol::write_data(&mut self.stream, bytes)
            .map_err(|e| self.gone(&format!("sending to the agent: {e}")))
    }

    /// Reads one frame from the agent.
    pub fn read(&mut self) -> Result<Frame<Reply>> {
        match protocol::read_frame::<Reply>(&mut self.stream) {
            Ok(Some(f)) => Ok(f),
            Ok(None) => Err(self.gone("the agent closed its port")),
            Err(e) => Err(self.gone(&format!("reading from the agent: {e}"))),
        }
    }

    /// An error for a VM that stopped answering, with the console's tail.
    fn gone(&mut self, why: &str) -> Error {
        let status = match self.child.try_wait() {
            Ok(Some(s)) => format!("; QEMU exited ({s})"),
            _ => String::new(),
        };
        Error::backend(
            crate::NAME,
            format!(
                "{why}{status}; guest console: {}",
                tail_of(&mut self.console)
            ),
        )
    }

    /// Powers the guest off and kills QEMU if it does not exit at once.
    pub fn shutdown(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The host pid of the VM's QEMU.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// A connection to an agent: a VM's own, or one port of a named VM.
pub(crate) trait Link {
    fn read(&mut self) -> Result<Frame<Reply>>;
    fn set_read_timeout(&mut self, t: Option<Duration>) -> Result<()>;
}

impl Link for Vm {
    fn read(&mut self) -> Result<Frame<Reply>> {
        Vm::read(self)
    }

    fn set_read_timeout(&mut self, t: Option<Duration>) -> Result<()> {
        self.stream
            .set_read_timeout(t)
            .map_err(|e| Error::io("setting the agent socket's timeout", e))
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How the caller reaches the agent.
pub(crate) enum Channel<'a> {
    /// QEMU connects to the caller's listening socket: one caller, for
    /// the VM's whole life.
    Connect(&'a Path),
    /// QEMU listens on `port-N.sock` in `dir` for each of `ports`
    /// virtio-serial ports: any process may connect, one per port at a time.
    Listen { dir: &'a Path, ports: usize },
}

/// The socket of a named VM's port `i` in its directory.
pub(crate) fn port_socket(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("port-{i}.sock"))
}

pub(crate) fn qemu_args(
    kernel: &Path,
    initramfs: &Path,
    opts: &BootOptions,
    channel: &Channel<'_>,
    console: &Path,
) -> Vec<String> {
    let mut boot = BootArgs::default();
    let mut devices = Vec::new();
    for (i, s) in opts.shares.iter().enumerate() {
        let tag = format!("s{i}");
        devices.push("-fsdev".to_string());
        // Read-only shares pass the host's owners through; writable ones
        // create files as QEMU's user (the caller), keeping the guest's
        // owners in xattrs: what the sandbox writes lands as the caller's.
        devices.push(format!(
            "local,id={tag},path={},{}",
            s.host.display().to_string().replace(',', ",,"),
            if s.read_only {
                "security_model=none,readonly=on"
            } else {
                "security_model=mapped-xattr"
            }
        ));
        devices.push("-device".into());
        devices.push(format!("virtio-9p-device,fsdev={tag},mount_tag={tag}"));
        boot.shares.push((tag, s.guest.clone(), s.read_only));
    }
    boot.links = opts.links.clone();
    // Under emulation the guest cannot calibrate its TSC against the PIT
    // (it hangs); QEMU's TSC runs at the host's, whose rate we know.
    let mut append = format!(
        "console=ttyS0 quiet panic=-1 rdinit=/init tsc_early_khz={} tsc=reliable no_timer_check {}",
        host_tsc_khz(),
        boot.to_cmdline()
    );
    if let Channel::Listen { ports, .. } = channel {
        append.push_str(&format!(" {}{ports}", crate::agent::PORTS_KEY));
    }
    let mut args: Vec<String> = [
        "-M",
        "microvm",
        "-accel",
        opts.accel.name(),
        "-cpu",
        if opts.accel == Accel::Kvm {
            "host"
        } else {
            "max"
        },
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ]
    .map(String::from)
    .to_vec();
    args.extend([
        "-m".into(),
        format!("{}M", opts.memory_mib),
        "-smp".into(),
        opts.cpus.to_string(),
        "-kernel".into(),
        kernel.display().to_string(),
        "-initrd".into(),
        initramfs.display().to_string(),
        "-append".into(),
        append,
        // The console's file chardev comes first: QEMU opens it before it
        // connects to the agent socket, after which the caller removes the
        // run directory.
        "-chardev".into(),
        format!("file,id=console,path={}", console.display()),
        "-serial".into(),
        "chardev:console".into(),
        "-device".into(),
        "virtio-serial-device".into(),
    ]);
    match channel {
        Channel::Connect(sock) => args.extend([
            "-chardev".into(),
            format!("socket,id=agent,path={}", sock.display()),
            "-device".into(),
            format!(
                "virtserialport,chardev=agent,name={}",
                crate::agent::PORT_NAME
            ),
        ]),
        Channel::Listen { dir, ports } => {
            for i in 0..*ports {
                args.extend([
                    "-chardev".into(),
                    format!(
                        "socket,id=port{i},path={},server=on,wait=off",
                        port_socket(dir, i).display().to_string().replace(',', ",,")
                    ),
                    "-device".into(),
                    format!(
                        "virtserialport,chardev=port{i},name={}",
                        crate::agent::port_name(i)
                    ),
                ]);
            }
        }
    }
    args.extend(devices);
    args
}

/// Where the last boot time under `accel` is kept, for `doctor`.
fn last_boot_file(accel: Accel) -> PathBuf {
    crate::assets::cache_root()
        .join("accel")
        .join(format!("last-boot-{}", accel.name()))
}

pub(crate) fn record_boot(accel: Accel, took: Duration) {
    let f = last_boot_file(accel);
    if let Some(d) = f.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let _ = std::fs::write(f, took.as_millis().to_string());
}

/// The last boot to the agent under `accel` on this machine, if any.
pub fn last_boot(accel: Accel) -> Option<Duration> {
    std::fs::read_to_string(last_boot_file(accel))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
}

/// The host's TSC rate in kHz (`cpu MHz` of /proc/cpuinfo, which is the
/// TSC's on the machines with a constant TSC that QEMU needs); 2 GHz when
/// unknown.
fn host_tsc_khz() -> u64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map(|mhz| (mhz * 1000.0) as u64)
        .unwrap_or(2_000_000)
}

/// Waits for QEMU to connect to the agent socket, or to exit, or the deadline.
fn accept_until(
    listener: &UnixListener,
    child: &mut Child,
    deadline: Instant,
) -> std::result::Result<UnixStream, String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("agent socket: {e}"))?;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)
                    .map_err(|e| format!("agent socket: {e}"))?;
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("accepting QEMU's connection: {e}")),
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("QEMU exited ({status}) before connecting"));
        }
        if Instant::now() > deadline {
            return Err("QEMU did not connect to the agent socket in time".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub(crate) fn boot_failed(
    why: &str,
    console: &mut std::fs::File,
    qemu_log: &mut std::fs::File,
    opts: &BootOptions,
) -> Error {
    Error::backend(
        crate::NAME,
        format!(
            "the VM ({}) did not boot to its agent within {:?}: {why}; qemu: {}; guest console: {} \
             (raise CLEANROOM_VM_BOOT_TIMEOUT_MS on a slow machine, or force the accelerator \
             with CLEANROOM_VM_ACCEL=tcg)",
            opts.accel.name(),
            opts.boot_timeout,
            tail_of(qemu_log),
            tail_of(console),
        ),
    )
}

/// The last lines of an open log, on one line.
pub(crate) fn tail_of(f: &mut std::fs::File) -> String {
    use std::io::Seek;
    let mut text = String::new();
    let _ = f.seek(std::io::SeekFrom::Start(0));
    let _ = f.read_to_string(&mut text);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(8);
    let shown = lines[start..].join(" | ");
    if shown.is_empty() {
        "(empty)".into()
    } else {
        shown
    }
}

/// Spawns `cmd` from a thread that lives as long as this process, so the
/// parent-death signal fires when the process dies, not when a short-lived
/// thread (a runtime's blocking pool) ends.
fn spawn_owned(cmd: Command) -> Result<Child> {
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<std::sync::Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("cleanroom-vm-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("starting the VM spawner thread");
        std::sync::Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((cmd, tx))
        .map_err(|_| Error::backend(crate::NAME, "the VM spawner thread is gone"))?;
    let spawned = rx
        .recv()
        .map_err(|_| Error::backend(crate::NAME, "the VM spawner thread is gone"))?;
    spawned.map_err(|e| {
        Error::backend(
            crate::NAME,
            if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "cannot run setpriv or {QEMU}: {e}; install qemu-system-x86 and util-linux \
                     (`apt-get install qemu-system-x86`)"
                )
            } else {
                format!("starting {QEMU}: {e}")
            },
        )
    })
}
