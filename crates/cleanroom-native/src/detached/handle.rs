//! [`NativeDetached`]: one named native sandbox, reached through its control
//! socket by whichever process holds the handle.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cleanroom_core::{
    Cmd, Detached, Enforcement, Error, ExecStdio, LogOptions, OutputChunk, OutputSink, Removed,
    Result, RunResult, SandboxInfo, SandboxState, Stats,
};

use super::logfile::{self, Position};
use super::state::{self, Record};
use crate::client::Channel;
use crate::exec;
use crate::protocol::Message;

/// See the module docs. `record` is `None` for a sandbox whose creation
/// was cut short: it can only be removed.
pub struct NativeDetached {
    dir: PathBuf,
    info: SandboxInfo,
    record: Option<Record>,
    enforcement: Enforcement,
}

impl NativeDetached {
    pub fn new(dir: PathBuf, info: SandboxInfo, record: Record, enforcement: Enforcement) -> Self {
        NativeDetached {
            dir,
            info,
            record: Some(record),
            enforcement,
        }
    }

    /// A sandbox directory without a record (its creator died early).
    pub fn orphan(dir: PathBuf, name: &str) -> Self {
        let info = state::info(&dir, name)
            .map(|(i, _)| i)
            .unwrap_or_else(|| SandboxInfo {
                name: name.into(),
                backend: "native".into(),
                image: String::new(),
                state: SandboxState::Dead {
                    reason: "its creation was interrupted".into(),
                },
                created: 0,
                command: Vec::new(),
                labels: Default::default(),
                id: dir.display().to_string(),
            });
        NativeDetached {
            dir,
            info,
            record: None,
            enforcement: Enforcement::new("native"),
        }
    }

    fn name(&self) -> &str {
        &self.info.name
    }

    fn record(&self) -> Result<&Record> {
        self.record.as_ref().ok_or_else(|| {
            Error::backend(
                "native",
                format!(
                    "sandbox `{}` was never fully created; `cleanroom rm {}` removes it",
                    self.name(),
                    self.name()
                ),
            )
        })
    }

    /// Its state now (not when the handle was made).
    fn state_now(&self) -> SandboxState {
        state::info(&self.dir, self.name())
            .map(|(i, _)| i.state)
            .unwrap_or(SandboxState::Dead {
                reason: "its state directory is gone".into(),
            })
    }

    /// A connection to its init, or why there is none.
    async fn connect(&self) -> Result<Channel> {
        let record = self.record()?;
        let state = self.state_now();
        if state != SandboxState::Running {
            let info = SandboxInfo {
                state,
                ..self.info.clone()
            };
            return Err(cleanroom_core::detached::not_running(&info));
        }
        Channel::connect_path(&self.dir.join(state::SOCKET), self.name())
            .await
            .map_err(|e| match e {
                // The connection did not get as far as a version check: say
                // which release made the sandbox when it is not this one.
                Error::Io { .. } if record.release != crate::protocol::RELEASE => Error::backend(
                    "native",
                    format!(
                        "sandbox `{}`: {e}; it was created by cleanroom {}, this is {}",
                        self.name(),
                        record.release,
                        crate::protocol::RELEASE
                    ),
                ),
                e => e,
            })
    }

    fn command_in(&self, cmd: Cmd) -> Result<Cmd> {
        let record = self.record()?;
        Ok(cleanroom_core::image_config::starting_in(
            cmd,
            record.start_dir.as_deref(),
        ))
    }

    fn inside(&self, p: &Path) -> Result<PathBuf> {
        Ok(self.record()?.spec.workdir.join(p))
    }

    /// Waits until nothing of it runs any more (its lock is free). Polls
    /// 1 ms apart at first, backing off to 20 ms: a stopped init usually
    /// lets go within a few milliseconds, and `down` waits on each one.
    async fn wait_ended(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut pause = Duration::from_millis(1);
        while state::lock_held(&self.dir) {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        true
    }

    /// SIGKILL to the init, found by pid and checked by start time (so a
    /// reused pid is never hit); the supervisor then exits.
    fn kill_init(&self) {
        let Some(r) = &self.record else { return };
        if r.init_start != 0 && state::start_time(r.init_pid) == Some(r.init_start) {
            if let Some(pid) = rustix::process::Pid::from_raw(r.init_pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// Removes the cgroup and state directory of a sandbox nothing of which
/// runs, and says what went.
pub fn remove_traces(dir: &Path, record: Option<&Record>) -> Vec<Removed> {
    let mut removed = Vec::new();
    if let Some(r) = record {
        for c in state::remove_cgroup(r) {
            removed.push(Removed::one(
                Removed::CGROUP,
                format!("native: removed cgroup {c} of sandbox `{}`", r.name),
            ));
        }
    }
    if std::fs::remove_dir_all(dir).is_ok() {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        removed.push(Removed::one(
            Removed::TEMP,
            format!(
                "native: removed sandbox `{}` (state, socket and logs in {})",
                name.unwrap_or_default(),
                dir.display()
            ),
        ));
    }
    removed
}

#[async_trait]
impl Detached for NativeDetached {
    fn info(&self) -> &SandboxInfo {
        &self.info
    }

    async fn exec(&self, cmd: Cmd, sink: Option<OutputSink>) -> Result<RunResult> {
        let chan = self.connect().await?;
        let cmd = self.command_in(cmd)?;
        let mut e = exec::start(&chan, &self.record()?.spec, &cmd, sink).await?;
        let exit = match e.wait(&chan).await {
            Ok(x) => x,
            Err(err) => {
                e.abort();
                return Err(err);
            }
        };
        chan.close();
        Ok(e.finish(exit, self.enforcement.clone(), false).await)
    }

    async fn exec_attached(&self, cmd: Cmd, stdio: ExecStdio) -> Result<i32> {
        let chan = self.connect().await?;
        let cmd = self.command_in(cmd)?;
        let request = exec::Request::new(&self.record()?.spec, &cmd)?;
        if stdio.tty {
            return super::tty::run(&chan, &request, stdio.stdin).await;
        }
        let stdin: OwnedFd = if stdio.stdin {
            std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| Error::io("passing stdin", e))?
        } else {
            std::fs::File::open("/dev/null")
                .map_err(|e| Error::io("opening /dev/null", e))?
                .into()
        };
        let out = std::io::stdout();
        let err = std::io::stderr();
        let fds = [stdin.as_fd(), out.as_fd(), err.as_fd()];
        let (id, mut rx) = chan.request(|id| request.message(id, None), &fds).await?;
        drop(stdin);
        let reply = rx.recv().await;
        chan.done(id);
        chan.close();
        match reply {
            Some((Message::Exit { code, .. }, _)) => Ok(code),
            Some((Message::Err { reason, .. }, _)) => Err(Error::backend(
                "native",
                format!("starting `{}` failed: {reason}", cmd.program),
            )),
            Some((other, _)) => Err(Error::backend(
                "native",
                format!("unexpected reply {other:?}"),
            )),
            None => Err(Error::backend(
                "native",
                format!(
                    "sandbox `{}` ended while `{}` ran",
                    self.name(),
                    cmd.program
                ),
            )),
        }
    }

    async fn copy_in(&self, host_path: &Path, sandbox_path: &Path) -> Result<()> {
        let chan = self.connect().await?;
        let r = crate::copy::copy_in(&chan, host_path, &self.inside(sandbox_path)?).await;
        chan.close();
        r
    }

    async fn copy_out(&self, sandbox_path: &Path, host_path: &Path) -> Result<()> {
        let chan = self.connect().await?;
        let r = crate::copy::copy_out(&chan, &self.inside(sandbox_path)?, host_path).await;
        chan.close();
        r
    }

    async fn logs(&self, options: LogOptions, sink: OutputSink) -> Result<()> {
        let read = |from| {
            logfile::read_from(&self.dir, from)
                .map_err(|e| Error::io(format!("reading the logs of sandbox `{}`", self.name()), e))
        };
        let (mut records, mut at) = read(Position::default())?;
        if let Some(n) = options.tail {
            records = logfile::tail(records, n);
        }
        loop {
            for (stream, bytes) in records {
                if sink.send(OutputChunk { stream, bytes }).await.is_err() {
                    return Ok(());
                }
            }
            if !options.follow {
                return Ok(());
            }
            // Once it stopped, one last read takes what it wrote before.
            let running = state::lock_held(&self.dir);
            if !running {
                let (rest, _) = read(at)?;
                for (stream, bytes) in rest {
                    let _ = sink.send(OutputChunk { stream, bytes }).await;
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            (records, at) = read(at)?;
        }
    }

    async fn stop(&self, grace: Duration) -> Result<()> {
        if self.state_now() != SandboxState::Running {
            return Ok(());
        }
        let grace_ms = grace.as_millis() as u64;
        if let Ok(chan) = self.connect().await {
            // The reply comes as the init ends; a closed channel means the
            // same.
            let _ = chan
                .call(|id| Message::Stop { id, grace_ms }, "stopping")
                .await;
        }
        if !self.wait_ended(grace + Duration::from_secs(5)).await {
            self.kill_init();
            if !self.wait_ended(Duration::from_secs(5)).await {
                return Err(Error::backend(
                    "native",
                    format!("sandbox `{}` did not stop", self.name()),
                ));
            }
        }
        Ok(())
    }

    async fn remove(&self, force: bool) -> Result<()> {
        if self.state_now() == SandboxState::Running {
            if !force {
                return Err(Error::backend(
                    "native",
                    format!(
                        "sandbox `{}` is running; stop it first, or remove it with -f",
                        self.name()
                    ),
                ));
            }
            self.stop(Duration::ZERO).await?;
        }
        // An exit is recorded before the supervisor lets go of the lock
        // (its teardown comes after), so a sandbox whose main command has
        // just exited is given a moment rather than refused.
        if !self.wait_ended(Duration::from_secs(5)).await {
            return Err(Error::backend(
                "native",
                format!(
                    "sandbox `{}` is still being created or stopped",
                    self.name()
                ),
            ));
        }
        remove_traces(&self.dir, self.record.as_ref());
        if self.dir.exists() {
            return Err(Error::backend(
                "native",
                format!("could not remove {}", self.dir.display()),
            ));
        }
        Ok(())
    }

    async fn stats(&self) -> Result<Stats> {
        let record = self.record()?;
        let mut stats = super::stats::read(&record.cgroup).await;
        stats.name = self.name().to_string();
        if self.state_now() != SandboxState::Running {
            stats = Stats {
                name: stats.name,
                unavailable: Some("not running".into()),
                ..Stats::default()
            };
        }
        Ok(stats)
    }
}
