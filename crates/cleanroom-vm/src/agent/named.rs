//! The agent of a named VM: one sandbox, the native backend's detached
//! sandbox inside the guest, reached over several virtio-serial ports at
//! once, each a listening socket on the host that any later process may
//! connect to. Each port is served by a thread of its own, so parallel
//! callers (one per port) each get their own output.
//!
//! A caller may go away at any time: the port's host side then closes,
//! reads here end (the agent waits for the next caller instead of exiting),
//! and what was being written waits for that caller, who skips it: every
//! connection starts with `Hello`, and the caller reads up to the matching
//! `Welcome`.

use std::fs::File;
use std::io::BufReader;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cleanroom_core::{Backend, DetachOptions, Detached, LogOptions};
use cleanroom_native::NativeBackend;

use super::{
    copy_in, copy_out, failed, forward_output, ready, send, streamed, Inside, PORTS_KEY, PORT_NAME,
};
use crate::guest;
use crate::protocol::{self, Frame, Reply, Request};

/// The number of ports the caller gave this VM, from the kernel command line.
pub(super) fn ports_from_cmdline() -> Option<usize> {
    let line = std::fs::read_to_string("/proc/cmdline").ok()?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(PORTS_KEY))
        .and_then(|n| n.parse().ok())
}

/// The name of port `i` of a named VM.
pub fn port_name(i: usize) -> String {
    if i == 0 {
        PORT_NAME.to_string()
    } else {
        format!("{PORT_NAME}.{i}")
    }
}

/// The name of the one sandbox this VM holds, once made.
static NAME: OnceLock<String> = OnceLock::new();

/// Serves every port until the VM is powered off; returns only on a
/// fatal error.
pub(super) fn serve(ports: usize, runtime: tokio::runtime::Runtime) -> Result<(), String> {
    let runtime = Arc::new(runtime);
    let mut files = Vec::new();
    for i in 0..ports {
        files.push(guest::open_port(&port_name(i))?);
    }
    let mut files = files.into_iter().enumerate();
    let (_, first) = files.next().ok_or("a named VM needs at least one port")?;
    for (i, file) in files {
        let rt = runtime.clone();
        std::thread::Builder::new()
            .name(format!("port-{i}"))
            .spawn(move || {
                if let Err(e) = serve_port(file, &rt, false) {
                    eprintln!("cleanroom-vm-agent: port {i}: {e}");
                }
            })
            .map_err(|e| format!("starting port {i}'s thread: {e}"))?;
    }
    serve_port(first, &runtime, true)
}

fn serve_port(port: File, runtime: &tokio::runtime::Runtime, first: bool) -> Result<(), String> {
    let writer = Arc::new(Mutex::new(
        port.try_clone().map_err(|e| format!("port: {e}"))?,
    ));
    let mut reader = BufReader::new(port);
    if first {
        // Waits (in the kernel) for the creator to connect.
        send(&writer, &ready())?;
    }
    let mut data = Vec::new();
    loop {
        let request = match protocol::read_frame::<Request>(&mut reader) {
            Ok(Some(Frame::Message(r))) => r,
            Ok(Some(Frame::Data(bytes))) => {
                data.extend_from_slice(&bytes);
                continue;
            }
            Ok(Some(_)) => continue,
            // The caller closed its end (or died mid-frame): wait for the
            // next one, whose Hello starts afresh.
            Ok(None) | Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let reply = match request {
            Request::Hello { nonce } => {
                data.clear();
                Reply::Welcome { nonce }
            }
            Request::Shutdown => {
                rustix::fs::sync();
                let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
                return Err("power-off failed".into());
            }
            Request::CreateNamed { spec, main, name } => runtime.block_on(async {
                if NAME.get().is_some() {
                    return Reply::Failed {
                        message: "this VM already holds its sandbox".into(),
                    };
                }
                let options = DetachOptions {
                    name: name.clone(),
                    labels: Default::default(),
                };
                match NativeBackend::new()
                    .create_detached(&spec, main, options)
                    .await
                {
                    Ok(_) => {
                        let _ = NAME.set(name);
                        Reply::Done
                    }
                    Err(e) => failed(e),
                }
            }),
            other => match runtime.block_on(sandbox()) {
                Ok(d) => runtime.block_on(on_named(other, d.as_ref(), &writer, &mut data)),
                Err(message) => Reply::Failed { message },
            },
        };
        // Everything written to the host's shares is there before the
        // caller hears the request ended.
        rustix::fs::sync();
        send(&writer, &reply)?;
    }
}

/// A fresh handle on this VM's sandbox (its state as of now).
async fn sandbox() -> Result<Box<dyn Detached>, String> {
    let name = NAME
        .get()
        .ok_or("this VM holds no named sandbox yet".to_string())?;
    match NativeBackend::new().attach(name).await {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(format!("the sandbox `{name}` is gone from the VM")),
        Err(e) => Err(e.to_string()),
    }
}

async fn on_named(
    request: Request,
    d: &dyn Detached,
    writer: &Arc<Mutex<File>>,
    data: &mut Vec<u8>,
) -> Reply {
    match request {
        Request::Exec { cmd } => streamed(writer, |sink| d.exec(cmd, Some(sink))).await,
        Request::CopyIn { path } => {
            let bytes = std::mem::take(data);
            copy_in(Inside::Named(d), &bytes, &path).await
        }
        Request::CopyOut { path } => copy_out(Inside::Named(d), &path, writer).await,
        Request::Info => Reply::Info(Box::new(d.info().clone())),
        Request::Stats => match d.stats().await {
            Ok(s) => Reply::Stats(Box::new(s)),
            Err(e) => failed(e),
        },
        Request::NamedStop { grace_ms } => match d.stop(Duration::from_millis(grace_ms)).await {
            Ok(()) => Reply::Done,
            Err(e) => failed(e),
        },
        Request::NamedLogs { tail, follow } => logs(d, LogOptions { tail, follow }, writer).await,
        Request::Run { .. }
        | Request::Create { .. }
        | Request::Logs
        | Request::Stop
        | Request::Hello { .. }
        | Request::CreateNamed { .. }
        | Request::Shutdown => Reply::Failed {
            message: "a named VM does not take this request".into(),
        },
    }
}

/// The main command's output as output frames, then `Done`.
async fn logs(d: &dyn Detached, options: LogOptions, writer: &Arc<Mutex<File>>) -> Reply {
    let (sink, forward) = forward_output(writer);
    let result = d.logs(options, sink).await;
    let _ = forward.await;
    match result {
        Ok(()) => Reply::Done,
        Err(e) => failed(e),
    }
}
