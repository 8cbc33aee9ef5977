//! [`VmNamed`]: the [`Detached`] handle on a named VM, from any process.
//! Each operation claims a port of the VM, says `Hello`, and makes one
//! request of the agent, which passes it to the native sandbox inside.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use cleanroom_core::detached::{not_running, ExecStdio, LogOptions, EXIT_TIMED_OUT};
use cleanroom_core::{
    Cmd, Detached, Enforcement, Error, OutputChunk, OutputSink, Result, RunResult, SandboxInfo,
    SandboxState, Stats, Stream,
};

use super::port::{Port, Use};
use super::Record;
use crate::backend::{collect_result, describe, expect_done, receive_tar};
use crate::protocol::{Frame, Reply, Request};
use crate::vm::Link;
use crate::NAME;

/// How long a caller waits for a free port before giving up.
const PORT_WAIT: Duration = Duration::from_secs(300);
/// How long a short request (state, stats) may take.
const SHORT: Duration = Duration::from_secs(60);

pub struct VmNamed {
    dir: PathBuf,
    info: SandboxInfo,
    record: Option<Record>,
    enforcement: Enforcement,
}

impl VmNamed {
    pub(super) fn new(
        dir: PathBuf,
        info: SandboxInfo,
        record: Record,
        enforcement: Enforcement,
    ) -> VmNamed {
        VmNamed::from_parts(dir, info, Some(record), enforcement)
    }

    pub(super) fn from_parts(
        dir: PathBuf,
        info: SandboxInfo,
        record: Option<Record>,
        enforcement: Enforcement,
    ) -> VmNamed {
        VmNamed {
            dir,
            info,
            record,
            enforcement,
        }
    }

    /// Refuses requests to a VM that cannot take them (dead, or never
    /// finished).
    fn live(&self) -> Result<&Record> {
        match &self.record {
            // The state directory is the user's own; a record naming
            // another owner was put there by hand and is not trusted.
            Some(r) if r.owner_uid != cleanroom_core::detached::current_uid() => {
                Err(Error::Config {
                    origin: format!("sandbox `{}`", self.info.name),
                    message: format!(
                        "its record in {} names uid {} as its owner, not you; remove that \
                         directory",
                        self.dir.display(),
                        r.owner_uid
                    ),
                })
            }
            Some(r) if r.alive() => Ok(r),
            _ => Err(not_running(&SandboxInfo {
                state: SandboxState::Dead {
                    reason: "its QEMU is gone".into(),
                },
                ..self.info.clone()
            })),
        }
    }

    /// Runs `f` on a port of the VM, off the async threads.
    async fn on_port<T: Send + 'static>(
        &self,
        what: Use,
        f: impl FnOnce(&mut Port) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.live()?;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut port = Port::open(&dir, what, PORT_WAIT, SHORT)?;
            f(&mut port)
        })
        .await
        .map_err(|e| Error::backend(NAME, format!("the VM's thread failed: {e}")))?
    }

    fn timeout_guard(&self, cmd: &Cmd) -> Option<Duration> {
        cmd.timeout
            .or(self.record.as_ref().and_then(|r| r.spec.timeout))
            .map(|t| t + Duration::from_secs(60))
    }

    fn output_limit(&self) -> u64 {
        self.record
            .as_ref()
            .map(|r| r.spec.output_limit)
            .unwrap_or(u64::MAX)
    }
}

/// The sandbox's state as the agent sees it, over `port`.
pub(super) fn info_over(port: &mut Port) -> Result<SandboxInfo> {
    port.set_read_timeout(Some(SHORT))?;
    port.send(&Request::Info)?;
    match port.read()? {
        Frame::Message(Reply::Info(i)) => Ok(*i),
        Frame::Message(Reply::Failed { message }) => {
            Err(Error::backend(NAME, format!("inside the VM: {message}")))
        }
        other => Err(Error::backend(
            NAME,
            format!("the agent sent {} instead of the state", describe(&other)),
        )),
    }
}

#[async_trait]
impl Detached for VmNamed {
    fn info(&self) -> &SandboxInfo {
        &self.info
    }

    async fn exec(&self, cmd: Cmd, sink: Option<OutputSink>) -> Result<RunResult> {
        let limit = self.output_limit();
        let guard = self.timeout_guard(&cmd);
        let wire = self
            .on_port(Use::Command, move |port| {
                port.send(&Request::Exec { cmd })?;
                collect_result(port, limit, guard, &sink)
            })
            .await?;
        let mut enforcement = self.enforcement.clone();
        enforcement.user_mapping = wire.enforcement.user_mapping.clone();
        Ok(wire.into_result(NAME, enforcement))
    }

    async fn exec_attached(&self, cmd: Cmd, stdio: ExecStdio) -> Result<i32> {
        if stdio.tty {
            return Err(Error::Unsupported {
                backend: NAME.into(),
                what: "a terminal for exec (-t) into a VM; run without -t, or use the native \
                       backend"
                    .into(),
            });
        }
        let cmd = if stdio.stdin {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| Error::io("reading stdin for exec -i", e))?;
            cmd.stdin(bytes)
        } else {
            cmd
        };
        let (sink, mut rx) = cleanroom_core::output_channel(64);
        let printer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let (mut out, mut err) = (tokio::io::stdout(), tokio::io::stderr());
            while let Some(OutputChunk { stream, bytes }) = rx.recv().await {
                let _ = match stream {
                    Stream::Stdout => out.write_all(&bytes).await.and(out.flush().await),
                    Stream::Stderr => err.write_all(&bytes).await.and(err.flush().await),
                };
            }
        });
        let r = self.exec(cmd, Some(sink)).await;
        let _ = printer.await;
        let r = r?;
        Ok(if r.timed_out {
            EXIT_TIMED_OUT
        } else if let Some(sig) = r.signal {
            128 + sig
        } else {
            r.exit_code
        })
    }

    async fn copy_in(&self, host_path: &Path, sandbox_path: &Path) -> Result<()> {
        let host = host_path.to_path_buf();
        let path = sandbox_path.to_path_buf();
        self.on_port(Use::Command, move |port| {
            let tar = crate::copy::pack(&host)
                .map_err(|e| Error::io(format!("packing {} to copy in", host.display()), e))?;
            port.send_data(&tar)?;
            port.send(&Request::CopyIn { path })?;
            expect_done(port)
        })
        .await
    }

    async fn copy_out(&self, sandbox_path: &Path, host_path: &Path) -> Result<()> {
        let host = host_path.to_path_buf();
        let path = sandbox_path.to_path_buf();
        self.on_port(Use::Command, move |port| {
            port.send(&Request::CopyOut { path })?;
            let tar = receive_tar(port)?;
            crate::copy::place(&tar, &host)
        })
        .await
    }

    async fn logs(&self, options: LogOptions, sink: OutputSink) -> Result<()> {
        self.on_port(Use::Command, move |port| {
            port.send(&Request::NamedLogs {
                tail: options.tail,
                follow: options.follow,
            })?;
            loop {
                let (stream, bytes) = match port.read()? {
                    Frame::Stdout(b) => (Stream::Stdout, b),
                    Frame::Stderr(b) => (Stream::Stderr, b),
                    Frame::Message(Reply::Done) => return Ok(()),
                    Frame::Message(Reply::Failed { message }) => {
                        return Err(Error::backend(NAME, format!("inside the VM: {message}")))
                    }
                    other => {
                        return Err(Error::backend(
                            NAME,
                            format!("the agent sent {} during logs", describe(&other)),
                        ))
                    }
                };
                if sink.blocking_send(OutputChunk { stream, bytes }).is_err() {
                    // The reader went away; so does this caller's port.
                    return Ok(());
                }
            }
        })
        .await
    }

    async fn stop(&self, grace: Duration) -> Result<()> {
        self.on_port(Use::Control, move |port| {
            port.set_read_timeout(Some(grace + SHORT))?;
            port.send(&Request::NamedStop {
                grace_ms: grace.as_millis() as u64,
            })?;
            expect_done(port)
        })
        .await
    }

    async fn remove(&self, force: bool) -> Result<()> {
        let dir = self.dir.clone();
        let name = self.info.name.clone();
        tokio::task::spawn_blocking(move || {
            let Some((state, record)) = super::state_of(&dir) else {
                return Err(Error::backend(
                    NAME,
                    format!("sandbox `{name}` is still being created; remove it once it is up"),
                ));
            };
            if state == SandboxState::Running && !force {
                return Err(Error::Config {
                    origin: format!("sandbox `{name}`"),
                    message: format!(
                        "is running; stop it first (`cleanroom stop {name}`) or remove it with \
                         `cleanroom rm -f {name}`"
                    ),
                });
            }
            super::remove_dir(&dir, record.as_ref())
        })
        .await
        .map_err(|e| Error::backend(NAME, format!("the VM's thread failed: {e}")))?
    }

    async fn stats(&self) -> Result<Stats> {
        self.on_port(Use::Control, |port| {
            port.set_read_timeout(Some(SHORT))?;
            port.send(&Request::Stats)?;
            match port.read()? {
                Frame::Message(Reply::Stats(s)) => Ok(*s),
                Frame::Message(Reply::Failed { message }) => {
                    Err(Error::backend(NAME, format!("inside the VM: {message}")))
                }
                other => Err(Error::backend(
                    NAME,
                    format!("the agent sent {} instead of stats", describe(&other)),
                )),
            }
        })
        .await
    }
}
