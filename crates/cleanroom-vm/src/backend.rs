//! [`VmBackend`]: the [`Backend`] that runs each sandbox in its own VM. The
//! caller boots the VM with the spec's host paths shared over 9p, rewrites
//! the spec to where the guest sees them, and the agent runs it through the
//! native backend.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use cleanroom_core::{
    Availability, Backend, Captured, Cmd, Constraint, Enforcement, Error, Network, OutputChunk,
    OutputSink, Prepared, Result, RootFs, RunResult, Sandbox, SandboxSpec, Stream,
};

use crate::accel::AccelProbe;
use crate::protocol::{Frame, Reply, Request};
use crate::vm::{BootOptions, Share, Vm};
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
    _private: (),
}

impl VmBackend {
    pub fn new() -> Self {
        VmBackend::default()
    }
}

/// The accelerator for this process's runs, chosen once.
fn accel() -> Result<AccelProbe> {
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
            other => {
                return Err(format!(
                    "the vm backend runs the `host` and `file://DIR` root filesystems; {other} \
                     is not supported on it yet (use the native backend for images)"
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
        let mut enforcement = prepared.into_enforcement();
        let spec = spec.clone();
        let guard = cmd
            .timeout
            .or(spec.timeout)
            .map(|t| t + Duration::from_secs(60));
        let (wire, probe, kernel, boot) = tokio::task::spawn_blocking(move || {
            let probe = accel()?;
            let (kernel, initramfs) = crate::boot_files()?;
            let (opts, guest_spec) = plan(&spec, &probe)?;
            let mut vm = Vm::boot(&kernel.boot_image(), &initramfs, &opts)?;
            let limit = guest_spec.output_limit;
            vm.send(&Request::Run {
                spec: Box::new(guest_spec),
                cmd,
            })?;
            let (mut out, mut err) = (Captured::default(), Captured::default());
            vm.stream
                .set_read_timeout(guard)
                .map_err(|e| Error::io("setting the agent socket's timeout", e))?;
            let wire = loop {
                match vm.read()? {
                    Frame::Stdout(bytes) => {
                        out.push(&bytes, limit);
                        forward(&sink, Stream::Stdout, bytes);
                    }
                    Frame::Stderr(bytes) => {
                        err.push(&bytes, limit);
                        forward(&sink, Stream::Stderr, bytes);
                    }
                    Frame::Message(Reply::Finished(w)) => {
                        let mut w = *w;
                        w.stdout = out.bytes;
                        w.stderr = err.bytes;
                        w.stdout_truncated |= out.truncated;
                        w.stderr_truncated |= err.truncated;
                        break w;
                    }
                    Frame::Message(Reply::Failed { message }) => {
                        return Err(Error::backend(NAME, format!("inside the VM: {message}")))
                    }
                    Frame::Message(other) => {
                        return Err(Error::backend(
                            NAME,
                            format!("the agent sent {other:?} while a command ran"),
                        ))
                    }
                }
            };
            let boot = vm.boot_time;
            let kernel = vm.kernel.clone();
            vm.shutdown();
            Ok::<_, Error>((wire, probe, kernel, boot))
        })
        .await
        .map_err(|e| Error::backend(NAME, format!("the VM's thread failed: {e}")))??;
        enforcement.user_mapping = wire.enforcement.user_mapping.clone();
        enforcement.notes.push(format!(
            "vm: guest kernel {kernel}, accelerator {} ({}), booted in {} ms",
            probe.accel.name(),
            probe.why,
            boot.as_millis()
        ));
        Ok(wire.into_result(NAME, enforcement))
    }

    async fn create_prepared(
        &self,
        spec: &SandboxSpec,
        main: Option<Cmd>,
        prepared: Prepared,
    ) -> Result<Box<dyn Sandbox>> {
        let _ = (spec, main, prepared);
        Err(Error::Unsupported {
            backend: NAME.into(),
            what: "long-lived sandboxes yet (one-shot runs only); use the native backend for \
                   `create`"
                .into(),
        })
    }

    async fn gc(&self) -> Result<Vec<cleanroom_core::Removed>> {
        tokio::task::spawn_blocking(crate::gc::remove_dead)
            .await
            .map_err(|e| Error::backend(NAME, format!("vm gc: {e}")))
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
