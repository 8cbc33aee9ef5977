//! [`VmBackend`]: the [`Backend`] that runs each sandbox in its own VM. The
//! caller boots the VM with the spec's host paths shared over 9p, rewrites
//! the spec to where the guest sees them, and the agent runs it through the
//! native backend.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use cleanroom_core::{
    Availability, Backend, Captured, Cmd, Constraint, DetachOptions, Detached, Enforcement, Error,
    Network, OutputChunk, OutputSink, Prepared, Result, RootFs, RunResult, Sandbox, SandboxInfo,
    SandboxSpec, Stream,
};

use crate::accel::AccelProbe;
use crate::protocol::{Frame, Reply, Request, WireResult};
use crate::sandbox::VmSandbox;
use crate::vm::{BootOptions, Link, Share, Vm};
use crate::NAME;

/// Memory the guest kernel and agent need beside the sandbox's own limit.
const GUEST_OVERHEAD_MIB: u64 = 256;
/// The sandbox's share of the guest's memory when the spec sets no limit.
const DEFAULT_SANDBOX_MIB: u64 = 512;
/// Where the guest mounts the spec's host paths.
const GUEST_MOUNTS: &str = "/run/cleanroom/mounts";
const GUEST_ROOTFS: &str = "/run/cleanroom/rootfs";

/// The microVM backend. Never chosen by `auto`: a user asks for it by name.
#[derive(Clone, Debug, Default)]
pub struct VmBackend {
    spare: bool,
}

impl VmBackend {
    /// Boots a VM per run; with `CLEANROOM_VM_SPARE=1`, as [`Self::with_spare`].
    pub fn new() -> Self {
        VmBackend {
            spare: std::env::var("CLEANROOM_VM_SPARE").is_ok_and(|v| v == "1"),
        }
    }

    /// Keeps one spare VM booting ahead of the next run of the same shape
    /// (rootfs, mounts, memory, vCPUs): for a process that runs many
    /// sandboxes in a row (a test suite), where each run then waits only
    /// for what is left of the spare's boot. A spare still booting when the
    /// process exits dies with it.
    pub fn with_spare(mut self) -> Self {
        self.spare = true;
        self
    }

    /// Boots the spare for runs of `spec`'s shape now and returns when it
    /// is ready (a suite's setup, before any run is timed).
    pub fn warm_spare(&self, spec: &SandboxSpec) -> Result<()> {
        let probe = accel()?;
        let (kernel, initramfs) = crate::boot_files()?;
        let (opts, _) = plan(spec, &probe)?;
        let image = kernel.boot_image();
        let key = spare_key(&image, &initramfs, &opts);
        let taken = SPARE
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .filter(|s| s.key == key);
        let vm = match taken.and_then(|s| s.boot.join().ok()).and_then(|r| r.ok()) {
            Some(vm) => vm,
            None => Vm::boot(&image, &initramfs, &opts)?,
        };
        let boot = std::thread::Builder::new()
            .name("cleanroom-vm-spare".into())
            .spawn(move || Ok(vm))
            .map_err(|e| Error::io("starting the spare VM's thread", e))?;
        *SPARE.lock().unwrap_or_else(|p| p.into_inner()) = Some(Spare { key, boot });
        Ok(())
    }
}

fn spare_key(image: &Path, initramfs: &Path, opts: &BootOptions) -> String {
    format!("{image:?} {initramfs:?} {opts:?}")
}

/// The VM booting ahead, for a run whose boot options print as `key`.
struct Spare {
    key: String,
    boot: std::thread::JoinHandle<Result<Vm>>,
}

static SPARE: std::sync::Mutex<Option<Spare>> = std::sync::Mutex::new(None);

/// The accelerator for this process's runs, chosen once.
pub(crate) fn accel() -> Result<AccelProbe> {
    static CHOSEN: std::sync::OnceLock<AccelProbe> = std::sync::OnceLock::new();
    if let Some(p) = CHOSEN.get() {
        return Ok(p.clone());
    }
    let p = crate::accelerator()?;
    Ok(CHOSEN.get_or_init(|| p).clone())
}

/// What the vm backend enforces for `spec`: what the native backend does
/// inside the guest, where the agent is root with the whole cgroup tree
/// (so the limits hold), plus a kernel of its own and no network device.
pub fn vm_enforcement(spec: &SandboxSpec) -> Enforcement {
    let mut e = cleanroom_native::native_enforcement(spec);
    e.backend = NAME.to_string();
    for c in [
        Constraint::MemoryLimit,
        Constraint::CpuLimit,
        Constraint::PidsLimit,
        Constraint::NetworkIsolation,
    ] {
        if e.status(c).is_some() {
            e.enforced(c);
        }
    }
    if !spec.publish.is_empty() {
        e.not_enforced(
            Constraint::PublishPorts,
            "the vm backend's guests have no network device, so no port can be published",
        );
    }
    e.notes.retain(|n| !n.contains("the caller's hard limit"));
    e.notes.push(
        "isolation: vm — a QEMU microvm with its own guest kernel; the sandbox inside is the \
         native backend's"
            .into(),
    );
    e.user_mapping = None;
    e
}

#[async_trait]
impl Backend for VmBackend {
    fn name(&self) -> &str {
        NAME
    }

    async fn availability(&self) -> Availability {
        let probe = tokio::task::spawn_blocking(|| -> Result<(String, AccelProbe)> {
            let (kernel, _) = crate::boot_files()?;
            Ok((kernel.release, accel()?))
        })
        .await;
        match probe {
            Ok(Ok((release, p))) => Availability::yes(format!(
                "QEMU microvm with guest kernel {release}; accelerator {}: {}; {}",
                p.accel.name(),
                p.why,
                match crate::vm::last_boot(p.accel) {
                    Some(t) => format!("the last boot to the agent took {} ms", t.as_millis()),
                    None => "no guest has booted here yet".into(),
                }
            )),
            Ok(Err(e)) => Availability::no(e.to_string(), hint_for(&e)),
            Err(e) => Availability::no(format!("probing the vm backend: {e}"), "report this bug"),
        }
    }

    async fn can_honour(&self, spec: &SandboxSpec) -> std::result::Result<(), String> {
        match &spec.rootfs {
            RootFs::Host => {}
            RootFs::Dir(d) if d.is_dir() => {}
            RootFs::Dir(d) => {
                return Err(format!("rootfs directory {} does not exist", d.display()))
            }
            RootFs::Tar(t) if t.is_file() => {}
            RootFs::Tar(t) => return Err(format!("rootfs tarball {} does not exist", t.display())),
            other => {
                return Err(format!(
                    "the vm backend runs the `host`, `file://DIR` and `tar://FILE` root \
                     filesystems; {other} is not supported on it yet (use the native backend \
                     for images)"
                ))
            }
        }
        match &spec.network {
            Network::None => Ok(()),
            other => Err(format!(
                "the vm backend's guests have no network device; network = {other:?} needs \
                 another backend"
            )),
        }
    }

    fn enforcement(&self, spec: &SandboxSpec) -> Enforcement {
        vm_enforcement(spec)
    }

    async fn run_prepared(
        &self,
        spec: &SandboxSpec,
        cmd: Cmd,
        sink: Option<OutputSink>,
        prepared: Prepared,
    ) -> Result<RunResult> {
        self.can_honour(spec)
            .await
            .map_err(|what| Error::Unsupported {
                backend: NAME.into(),
                what,
            })?;
        let enforcement = prepared.into_enforcement();
        let spec = spec.clone();
        let spare = self.spare;
        let guard = cmd
            .timeout
            .or(spec.timeout)
            .map(|t| t + Duration::from_secs(60));
        let (wire, booted) = tokio::task::spawn_blocking(move || {
            let (mut vm, guest_spec, probe, ahead) = boot_for(&spec, spare)?;
            let limit = guest_spec.output_limit;
            vm.send(&Request::Run {
                spec: Box::new(guest_spec),
                cmd,
            })?;
            let wire = collect_result(&mut vm, limit, guard, &sink)?;
            let booted = Booted::of(&vm, probe, ahead);
            vm.shutdown();
            Ok::<_, Error>((wire, booted))
        })
        .await
        .map_err(|e| Error::backend(NAME, format!("the VM's thread failed: {e}")))??;
        Ok(booted.result(wire, enforcement))
    }

    async fn create_prepared(
        &self,
        spec: &SandboxSpec,
        main: Option<Cmd>,
        prepared: Prepared,
    ) -> Result<Box<dyn Sandbox>> {
        self.can_honour(spec)
            .await
            .map_err(|what| Error::Unsupported {
                backend: NAME.into(),
                what,
            })?;
        let enforcement = prepared.into_enforcement();
        let spec = spec.clone();
        let spare = self.spare;
        let sb = tokio::task::spawn_blocking(move || {
            let (mut vm, guest_spec, probe, ahead) = boot_for(&spec, spare)?;
            vm.send(&Request::Create {
                spec: Box::new(guest_spec),
                main,
            })?;
            expect_done(&mut vm)?;
            let booted = Booted::of(&vm, probe, ahead);
            Ok::<_, Error>(VmSandbox::new(vm, &spec, booted.report(enforcement)))
        })
        .await
        .map_err(|e| Error::backend(NAME, format!("the VM's thread failed: {e}")))??;
        Ok(Box::new(sb))
    }

    async fn create_detached_prepared(
        &self,
        spec: &SandboxSpec,
        main: Option<Cmd>,
        options: DetachOptions,
        prepared: Prepared,
    ) -> Result<Box<dyn Detached>> {
        self.can_honour(spec)
            .await
            .map_err(|what| Error::Unsupported {
                backend: NAME.into(),
                what,
            })?;
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || crate::named::create(&spec, main, options, prepared))
            .await
            .map_err(|e| Error::backend(NAME, format!("the VM's thread failed: {e}")))?
    }

    async fn list(&self, all: bool) -> Result<Vec<SandboxInfo>> {
        tokio::task::spawn_blocking(move || crate::named::list(all))
            .await
            .map_err(|e| Error::backend(NAME, format!("vm list: {e}")))?
    }

    async fn attach(&self, name: &str) -> Result<Option<Box<dyn Detached>>> {
        let name = name.to_string();
        tokio::task::spawn_blocking(move || crate::named::attach(&name))
            .await
            .map_err(|e| Error::backend(NAME, format!("vm attach: {e}")))?
    }

    async fn gc(&self) -> Result<Vec<cleanroom_core::Removed>> {
        tokio::task::spawn_blocking(|| {
            let mut removed = crate::gc::remove_dead();
            removed.extend(crate::named::gc());
            removed
        })
        .await
        .map_err(|e| Error::backend(NAME, format!("vm gc: {e}")))
    }
}

/// Boots the VM for `spec` (or takes the spare booted for it); returns it
/// with the spec as the agent must run it, and whether it was a spare.
fn boot_for(spec: &SandboxSpec, spare: bool) -> Result<(Vm, SandboxSpec, AccelProbe, bool)> {
    let probe = accel()?;
    let (kernel, initramfs) = crate::boot_files()?;
    let (opts, guest_spec) = plan(spec, &probe)?;
    let image = kernel.boot_image();
    if !spare {
        let vm = Vm::boot(&image, &initramfs, &opts)?;
        return Ok((vm, guest_spec, probe, false));
    }
    let key = spare_key(&image, &initramfs, &opts);
    let taken = SPARE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .filter(|s| s.key == key);
    let from_spare = taken.and_then(|s| s.boot.join().ok()).and_then(|r| r.ok());
    let was_spare = from_spare.is_some();
    let vm = match from_spare {
        Some(vm) => vm,
        None => Vm::boot(&image, &initramfs, &opts)?,
    };
    // The next one boots while this one runs.
    let boot = std::thread::Builder::new()
        .name("cleanroom-vm-spare".into())
        .spawn(move || Vm::boot(&image, &initramfs, &opts))
        .map_err(|e| Error::io("starting the spare VM's thread", e))?;
    *SPARE.lock().unwrap_or_else(|p| p.into_inner()) = Some(Spare { key, boot });
    Ok((vm, guest_spec, probe, was_spare))
}

/// What a run's report says about the VM it ran in.
pub(crate) struct Booted {
    probe: AccelProbe,
    kernel: String,
    boot: Duration,
    guest_uptime: Duration,
    /// It was a spare, booted before the run asked for it.
    ahead: bool,
}

impl Booted {
    fn of(vm: &Vm, probe: AccelProbe, ahead: bool) -> Booted {
        Booted {
            probe,
            kernel: vm.kernel.clone(),
            boot: vm.boot_time,
            guest_uptime: vm.guest_uptime,
            ahead,
        }
    }

    /// The caller's report with the VM's kernel, accelerator and boot time.
    fn report(&self, mut enforcement: Enforcement) -> Enforcement {
        enforcement.notes.push(format!(
            "vm: guest kernel {}, accelerator {} ({}), booted in {} ms ({} ms of them in the \
             guest kernel){}",
            self.kernel,
            self.probe.accel.name(),
            self.probe.why,
            self.boot.as_millis(),
            self.guest_uptime.as_millis(),
            if self.ahead {
                " (a spare, booted ahead of the run)"
            } else {
                ""
            }
        ));
        enforcement
    }

    fn result(&self, wire: WireResult, enforcement: Enforcement) -> RunResult {
        let mut enforcement = self.report(enforcement);
        enforcement.user_mapping = wire.enforcement.user_mapping.clone();
        wire.into_result(NAME, enforcement)
    }
}

/// Reads a command's output frames and its result: output goes to `sink`
/// as it comes, and is kept up to `limit` bytes per stream. `guard` bounds
/// the wait (the command's own timeout plus a margin).
pub(crate) fn collect_result(
    vm: &mut impl Link,
    limit: u64,
    guard: Option<Duration>,
    sink: &Option<OutputSink>,
) -> Result<WireResult> {
    vm.set_read_timeout(guard)?;
    let (mut out, mut err) = (Captured::default(), Captured::default());
    loop {
        match vm.read()? {
            Frame::Stdout(bytes) => {
                out.push(&bytes, limit);
                forward(sink, Stream::Stdout, bytes);
            }
            Frame::Stderr(bytes) => {
                err.push(&bytes, limit);
                forward(sink, Stream::Stderr, bytes);
            }
            Frame::Message(Reply::Finished(w)) => {
                let mut w = *w;
                w.stdout = out.bytes;
                w.stderr = err.bytes;
                w.stdout_truncated |= out.truncated;
                w.stderr_truncated |= err.truncated;
                return Ok(w);
            }
            Frame::Message(Reply::Failed { message }) => {
                return Err(Error::backend(NAME, format!("inside the VM: {message}")))
            }
            other => {
                return Err(Error::backend(
                    NAME,
                    format!("the agent sent {} while a command ran", describe(&other)),
                ))
            }
        }
    }
}

/// Waits for the agent's `Done`.
pub(crate) fn expect_done(vm: &mut impl Link) -> Result<()> {
    match vm.read()? {
        Frame::Message(Reply::Done) => Ok(()),
        Frame::Message(Reply::Failed { message }) => {
            Err(Error::backend(NAME, format!("inside the VM: {message}")))
        }
        other => Err(Error::backend(
            NAME,
            format!("the agent sent {} instead of Done", describe(&other)),
        )),
    }
}

/// Collects the tar archive a `CopyOut` sends, up to the agent's `Done`.
pub(crate) fn receive_tar(vm: &mut impl Link) -> Result<Vec<u8>> {
    let mut tar = Vec::new();
    loop {
        match vm.read()? {
            Frame::Data(b) => tar.extend_from_slice(&b),
            Frame::Message(Reply::Done) => return Ok(tar),
            Frame::Message(Reply::Failed { message }) => {
                return Err(Error::backend(NAME, format!("inside the VM: {message}")))
            }
            other => {
                return Err(Error::backend(
                    NAME,
                    format!("the agent sent {} during a copy", describe(&other)),
                ))
            }
        }
    }
}

/// A frame in a few words, for protocol errors.
pub(crate) fn describe(f: &Frame<Reply>) -> String {
    match f {
        Frame::Message(m) => format!("{m:?}").chars().take(120).collect(),
        Frame::Stdout(b) => format!("{} bytes of stdout", b.len()),
        Frame::Stderr(b) => format!("{} bytes of stderr", b.len()),
        Frame::Data(b) => format!("{} bytes of copy data", b.len()),
    }
}

fn forward(sink: &Option<OutputSink>, stream: Stream, bytes: Vec<u8>) {
    if let Some(s) = sink {
        let _ = s.blocking_send(OutputChunk { stream, bytes });
    }
}

fn hint_for(e: &Error) -> String {
    let text = e.to_string();
    if text.contains("cleanroom vm setup") {
        "run `cleanroom vm setup` (fetches Debian's kernel into the user's cache)".into()
    } else if text.contains("qemu") {
        "install qemu-system-x86 (`apt-get install qemu-system-x86`)".into()
    } else {
        "see the reason".into()
    }
}

/// The VM for `spec` and the spec as the agent must run it: the rootfs
/// directory and each mount's source rewritten to where the guest mounts
/// them over 9p.
pub fn plan(spec: &SandboxSpec, probe: &AccelProbe) -> Result<(BootOptions, SandboxSpec)> {
    let mut opts = BootOptions::host_root(probe.accel);
    let mut guest = spec.clone();
    let mib = 1 << 20;
    opts.memory_mib = GUEST_OVERHEAD_MIB
        + spec
            .memory
            .map(|m| m.div_ceil(mib))
            .unwrap_or(DEFAULT_SANDBOX_MIB);
    opts.cpus = spec
        .cpus
        .map(|c| c.ceil().max(1.0) as u32)
        .unwrap_or(1)
        .min(
            std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
        );
    if let RootFs::Dir(dir) = &spec.rootfs {
        opts.shares.push(Share {
            host: dir.clone(),
            guest: GUEST_ROOTFS.into(),
            read_only: true,
        });
        guest.rootfs = RootFs::Dir(GUEST_ROOTFS.into());
    }
    // A tarball travels as its directory; the native backend inside
    // unpacks it into the guest's own cache.
    if let RootFs::Tar(tar) = &spec.rootfs {
        let parent = tar.parent().unwrap_or(Path::new("/")).to_path_buf();
        let name = tar.file_name().map(PathBuf::from).unwrap_or_default();
        opts.shares.push(Share {
            host: parent,
            guest: GUEST_ROOTFS.into(),
            read_only: true,
        });
        guest.rootfs = RootFs::Tar(PathBuf::from(GUEST_ROOTFS).join(name));
    }
    for (i, m) in guest.mounts.iter_mut().enumerate() {
        let at = PathBuf::from(GUEST_MOUNTS).join(i.to_string());
        let meta = std::fs::metadata(&m.source).map_err(|e| {
            Error::io(
                format!(
                    "mount source {} (for {})",
                    m.source.display(),
                    m.target.display()
                ),
                e,
            )
        })?;
        // 9p shares directories: a file travels as its directory, and the
        // sandbox still sees only the file.
        let (host, source) = if meta.is_dir() {
            (m.source.clone(), at.clone())
        } else {
            let parent = m.source.parent().unwrap_or(Path::new("/")).to_path_buf();
            let name = m.source.file_name().map(PathBuf::from).unwrap_or_default();
            (parent, at.join(name))
        };
        opts.shares.push(Share {
            host,
            guest: at,
            read_only: m.read_only,
        });
        m.source = source;
    }
    Ok((opts, guest))
}
