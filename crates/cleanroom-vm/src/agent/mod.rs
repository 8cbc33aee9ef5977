//! The guest agent: PID 1 of the VM. Once the guest is set up ([`crate::guest`]:
//! filesystems, modules, the host's shares) it serves requests on the
//! virtio-serial port by running each one through the native backend, which
//! makes the sandbox inside the guest exactly as it would on a host.
//!
//! It must never exit: the guest kernel panics when PID 1 does, and (with
//! `panic=-1` and QEMU's `-no-reboot`) the VM ends. A fatal error is printed
//! to the console for the caller to show, and then it does just that.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cleanroom_core::{Backend, OutputChunk, Sandbox, Stream};

use crate::guest;
use crate::protocol::{self, Frame, Reply, Request, WireResult};

mod named;

pub use named::port_name;

/// The name of the virtio-serial port the caller and agent talk over (a
/// named VM's first port; its others add `.1`, `.2`, …).
pub const PORT_NAME: &str = "cleanroom.agent";

/// The kernel command line's word that makes the agent serve a named VM
/// over this many ports.
pub const PORTS_KEY: &str = "cleanroom.ports=";

/// The agent's entry point; returns only on a fatal error.
pub fn main() -> String {
    if std::process::id() != 1 {
        return "cleanroom-vm-agent is a guest's PID 1 (its /init); the vm backend starts it \
                inside a VM, it does nothing on a host"
            .into();
    }
    match serve() {
        Ok(()) => "the caller closed the agent's port".into(),
        Err(e) => e,
    }
}

fn serve() -> Result<(), String> {
    guest::leave_initramfs()?;
    guest::mount_kernel_filesystems()?;
    guest::load_modules()?;
    let boot = guest::BootArgs::from_cmdline(
        &std::fs::read_to_string("/proc/cmdline").map_err(|e| format!("/proc/cmdline: {e}"))?,
    )?;
    guest::mount_shares(&boot)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    if let Some(ports) = named::ports_from_cmdline() {
        return named::serve(ports, runtime);
    }
    let port = guest::open_port(PORT_NAME)?;
    let writer = Arc::new(Mutex::new(
        port.try_clone().map_err(|e| format!("port: {e}"))?,
    ));
    let mut reader = BufReader::new(port);
    send(&writer, &ready())?;
    let mut sandbox: Option<Box<dyn Sandbox>> = None;
    let mut data = Vec::new();
    loop {
        let request = match protocol::read_frame::<Request>(&mut reader) {
            Ok(Some(Frame::Message(r))) => r,
            Ok(Some(Frame::Data(bytes))) => {
                data.extend_from_slice(&bytes);
                continue;
            }
            Ok(Some(_)) => return Err("the caller sent output frames to the agent".into()),
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("reading the port: {e}")),
        };
        let reply = match request {
            Request::Run { spec, cmd } => runtime.block_on(streamed(&writer, |sink| async move {
                cleanroom_native::NativeBackend::new()
                    .run_streaming(&spec, cmd, Some(sink))
                    .await
            })),
            Request::Create { spec, main } => {
                match runtime.block_on(cleanroom_native::NativeBackend::new().create(&spec, main)) {
                    Ok(sb) => {
                        sandbox = Some(sb);
                        Reply::Done
                    }
                    Err(e) => failed(e),
                }
            }
            Request::Exec { cmd } => match &sandbox {
                Some(sb) => runtime.block_on(streamed(&writer, |sink| async move {
                    sb.exec_streaming(cmd, Some(sink)).await
                })),
                None => no_sandbox(),
            },
            Request::CopyIn { path } => match &sandbox {
                Some(sb) => {
                    let bytes = std::mem::take(&mut data);
                    runtime.block_on(copy_in(Inside::Sandbox(sb.as_ref()), &bytes, &path))
                }
                None => no_sandbox(),
            },
            Request::CopyOut { path } => match &sandbox {
                Some(sb) => {
                    runtime.block_on(copy_out(Inside::Sandbox(sb.as_ref()), &path, &writer))
                }
                None => no_sandbox(),
            },
            Request::Logs => match &sandbox {
                Some(sb) => match runtime.block_on(sb.logs()) {
                    Ok(l) => Reply::Logs {
                        stdout: l.stdout,
                        stderr: l.stderr,
                    },
                    Err(e) => failed(e),
                },
                None => no_sandbox(),
            },
            Request::Stop => match &sandbox {
                Some(sb) => match runtime.block_on(sb.stop()) {
                    Ok(()) => Reply::Done,
                    Err(e) => failed(e),
                },
                None => no_sandbox(),
            },
            Request::Hello { nonce } => Reply::Welcome { nonce },
            Request::CreateNamed { .. }
            | Request::Info
            | Request::Stats
            | Request::NamedLogs { .. }
            | Request::NamedStop { .. } => Reply::Failed {
                message: "this VM was booted for one sandbox, not a named one".into(),
            },
            Request::Shutdown => {
                if let Some(sb) = sandbox.take() {
                    let _ = runtime.block_on(sb.remove());
                }
                rustix::fs::sync();
                let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
                return Err("power-off failed".into());
            }
        };
        // Everything written to the host's shares is there before the
        // caller hears the request ended (and may kill the VM).
        rustix::fs::sync();
        send(&writer, &reply)?;
    }
}

/// The agent's first message.
fn ready() -> Reply {
    Reply::Ready {
        version: protocol::VERSION,
        kernel: rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned(),
        uptime_ms: uptime_ms(),
    }
}

fn failed(e: cleanroom_core::Error) -> Reply {
    Reply::Failed {
        message: e.to_string(),
    }
}

fn no_sandbox() -> Reply {
    Reply::Failed {
        message: "this VM holds no long-lived sandbox".into(),
    }
}

/// A sink whose chunks go to the caller as output frames as they come,
/// and the task that writes them (done once the sink is dropped).
fn forward_output(
    writer: &Arc<Mutex<File>>,
) -> (cleanroom_core::OutputSink, tokio::task::JoinHandle<()>) {
    let (sink, mut rx) = cleanroom_core::output_channel(64);
    let w = writer.clone();
    let forward = tokio::task::spawn_blocking(move || {
        while let Some(OutputChunk { stream, bytes }) = rx.blocking_recv() {
            let mut port = w.lock().unwrap_or_else(|p| p.into_inner());
            for piece in bytes.chunks(1 << 20) {
                if protocol::write_output(&mut *port, stream == Stream::Stdout, piece).is_err() {
                    return;
                }
            }
        }
    });
    (sink, forward)
}

/// Runs `f` with a sink whose output goes to the caller as it comes; the
/// result's own copies of it are dropped (the caller has them).
async fn streamed<F, Fut>(writer: &Arc<Mutex<File>>, f: F) -> Reply
where
    F: FnOnce(cleanroom_core::OutputSink) -> Fut,
    Fut: std::future::Future<Output = cleanroom_core::Result<cleanroom_core::RunResult>>,
{
    let (sink, forward) = forward_output(writer);
    let result = f(sink).await;
    let _ = forward.await;
    match result {
        Ok(mut r) => {
            r.stdout = Vec::new();
            r.stderr = Vec::new();
            Reply::Finished(Box::new(WireResult::from(r)))
        }
        Err(e) => failed(e),
    }
}

/// A fresh scratch directory in the guest for one copy.
fn scratch() -> Result<PathBuf, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = PathBuf::from(format!(
        "/tmp/copy-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// What a copy goes into or comes out of.
#[derive(Clone, Copy)]
enum Inside<'a> {
    Sandbox(&'a dyn Sandbox),
    Named(&'a dyn cleanroom_core::Detached),
}

impl Inside<'_> {
    async fn copy_in(self, host: &Path, path: &Path) -> cleanroom_core::Result<()> {
        match self {
            Inside::Sandbox(sb) => sb.copy_in(host, path).await,
            Inside::Named(d) => d.copy_in(host, path).await,
        }
    }

    async fn copy_out(self, path: &Path, host: &Path) -> cleanroom_core::Result<()> {
        match self {
            Inside::Sandbox(sb) => sb.copy_out(path, host).await,
            Inside::Named(d) => d.copy_out(path, host).await,
        }
    }
}

async fn copy_in(sb: Inside<'_>, tar: &[u8], path: &Path) -> Reply {
    let dir = match scratch() {
        Ok(d) => d,
        Err(message) => return Reply::Failed { message },
    };
    let reply = match crate::copy::unpack(tar, &dir) {
        Ok(entry) => match sb.copy_in(&entry, path).await {
            Ok(()) => Reply::Done,
            Err(e) => failed(e),
        },
        Err(e) => Reply::Failed {
            message: format!("unpacking the copy: {e}"),
        },
    };
    let _ = std::fs::remove_dir_all(&dir);
    reply
}

async fn copy_out(sb: Inside<'_>, path: &Path, writer: &Mutex<File>) -> Reply {
    let dir = match scratch() {
        Ok(d) => d,
        Err(message) => return Reply::Failed { message },
    };
    let entry = dir.join("entry");
    let reply = match sb.copy_out(path, &entry).await {
        Ok(()) => match crate::copy::pack(&entry) {
            Ok(tar) => {
                let mut port = writer.lock().unwrap_or_else(|p| p.into_inner());
                match protocol::write_data(&mut *port, &tar) {
                    Ok(()) => Reply::Done,
                    Err(e) => Reply::Failed {
                        message: format!("sending the copy: {e}"),
                    },
                }
            }
            Err(e) => Reply::Failed {
                message: format!("packing the copy: {e}"),
            },
        },
        Err(e) => failed(e),
    };
    let _ = std::fs::remove_dir_all(&dir);
    reply
}

fn send(writer: &Mutex<File>, reply: &Reply) -> Result<(), String> {
    let mut port = writer.lock().unwrap_or_else(|p| p.into_inner());
    protocol::write_message(&mut *port, reply).map_err(|e| format!("writing the port: {e}"))
}

fn uptime_ms() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map(|s| (s * 1000.0) as u64)
        .unwrap_or(0)
}

/// Prints `msg` where the caller reads the console, then lets the kernel
/// end the VM.
pub fn fatal(msg: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "cleanroom-vm-agent: {msg}");
    rustix::fs::sync();
    let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
    std::process::exit(1)
}
