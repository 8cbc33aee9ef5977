//! Health checks run as compose runs them: a probe inside the service every
//! interval, failures not counted during the start period, unhealthy after
//! `retries` failures in a row (with uncounted early retries in between, so
//! healthy is seen soon). Also how a service's log tail is read.

use std::time::{Duration, Instant};

use cleanroom::{Backend, Cmd, Detached, LogOptions, SandboxState};

use crate::model::{Healthcheck, Probe};

/// How often the start period probes when `start_interval` is not set
/// (compose's default).
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);

/// Why a service did not become healthy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unhealthy {
    /// "failed 3 health probes in a row", "exited with code 1 before ...".
    pub reason: String,
    /// What the last probe printed (or why it could not run).
    pub last_probe: String,
}

/// How soon a failed probe is repeated at first; each later pause doubles,
/// up to the interval. Only probes an interval apart count toward
/// `retries`, so a service is seen healthy soon after it is, while one that
/// never gets there fails exactly as compose's schedule says.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The shortest time a probe gets before a deadline ends the wait.
const MIN_PROBE_TIME: Duration = Duration::from_millis(50);

/// Probes `name` until it is healthy, it fails `retries` counted probes in
/// a row after the start period, its deadline (a `wait_for.timeout`)
/// passes, or its main process ends.
pub async fn wait_healthy(
    backend: &dyn Backend,
    name: &str,
    h: &Healthcheck,
) -> Result<u32, Unhealthy> {
    let started = Instant::now();
    let mut failures = 0u32;
    let mut probes = 0u32;
    let mut last = String::new();
    // When the next failed probe counts toward `retries`.
    let mut counts_at = started;
    let mut pause = FIRST_PAUSE;
    loop {
        let Some(sandbox) = backend.attach(name).await.ok().flatten() else {
            return Err(Unhealthy {
                reason: "its sandbox is gone".into(),
                last_probe: last,
            });
        };
        if let Some(reason) = not_running(sandbox.info().state.clone()) {
            return Err(Unhealthy {
                reason: format!("{reason} before it became healthy"),
                last_probe: last,
            });
        }
        probes += 1;
        let left = h.deadline.map(|d| d.saturating_sub(started.elapsed()));
        let timeout = match left {
            Some(left) => h.timeout.min(left.max(MIN_PROBE_TIME)),
            None => h.timeout,
        };
        match probe(sandbox.as_ref(), sandbox.as_ref(), &h.test, timeout).await {
            Ok(()) => return Ok(probes),
            Err(output) => last = output,
        }
        let now = Instant::now();
        let elapsed = now - started;
        if let Some(d) = h.deadline {
            if elapsed >= d {
                return Err(Unhealthy {
                    reason: format!("not ready after {:.1}s", d.as_secs_f64()),
                    last_probe: last,
                });
            }
        }
        let in_start_period = elapsed < h.start_period;
        if !in_start_period && now >= counts_at {
            failures += 1;
            if failures >= h.retries.max(1) {
                return Err(Unhealthy {
                    reason: format!(
                        "failed {failures} health probes in a row ({} apart)",
                        crate::model::format_duration(h.interval)
                    ),
                    last_probe: last,
                });
            }
            counts_at = now + h.interval;
        }
        let period = if in_start_period {
            h.start_interval
                .unwrap_or(DEFAULT_START_INTERVAL)
                .min(h.interval)
        } else {
            h.interval
        };
        let mut wait = pause.min(period);
        if !in_start_period {
            wait = wait.min(counts_at.saturating_duration_since(now));
        }
        if let Some(d) = h.deadline {
            wait = wait.min(d.saturating_sub(elapsed));
        }
        pause = (pause * 2).min(period);
        tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
    }
}

/// What a probe that never passes means, in words: "nothing listens on
/// TCP port 80", "its output never matched /ready/".
pub fn unmet(test: &Probe) -> String {
    match test {
        Probe::Port(p) => format!("nothing listens on TCP port {p}"),
        Probe::Log(re) => format!("its output never matched /{re}/"),
        Probe::Cmd(argv) => format!("`{}` never exited 0", Cmd::from(argv.clone()).display()),
        Probe::Shell(script) => format!("`sh -c {script:?}` never exited 0"),
    }
}

/// Why a sandbox is not running, in words, or `None` when it runs.
pub fn not_running(state: SandboxState) -> Option<String> {
    match state {
        SandboxState::Running => None,
        SandboxState::Exited { code } => Some(format!("exited with code {code}")),
        SandboxState::Dead { reason } => Some(format!("died ({reason})")),
    }
}

/// What a probe runs in: a named sandbox of an environment.
#[async_trait::async_trait]
pub trait ProbeTarget: Send + Sync {
    async fn run(&self, cmd: Cmd) -> cleanroom::Result<cleanroom::RunResult>;
    /// The main process's output so far (the last `tail` lines when given).
    async fn output(&self, tail: Option<usize>) -> Result<String, String>;
}

#[async_trait::async_trait]
impl<'a> ProbeTarget for dyn Detached + 'a {
    async fn run(&self, cmd: Cmd) -> cleanroom::Result<cleanroom::RunResult> {
        self.exec(cmd, None).await
    }
    async fn output(&self, tail: Option<usize>) -> Result<String, String> {
        log_text(self, tail).await
    }
}

/// Runs one probe in `target`; a port probe reads the listening sockets
/// through `netns` (any sandbox of the same network namespace, often the
/// target itself). `Err` holds its output (or why it could not run).
pub async fn probe<T, N>(
    target: &T,
    netns: &N,
    test: &Probe,
    timeout: Duration,
) -> Result<(), String>
where
    T: ProbeTarget + ?Sized,
    N: ProbeTarget + ?Sized,
{
    let cmd = match test {
        Probe::Cmd(argv) => Cmd::from(argv.clone()),
        Probe::Shell(script) => Cmd::shell(script.clone()),
        // /proc/net/tcp{,6} describe the reader's network namespace: the pod's.
        Probe::Port(_) => Cmd::from(["cat", "/proc/net/tcp", "/proc/net/tcp6"]),
        Probe::Log(re) => {
            let re = regex::Regex::new(re)
                .map_err(|e| format!("`{re}` is not a regular expression: {e}"))?;
            let text = target.output(None).await?;
            // A pattern matches one line of output (`^ready$`), or the whole.
            return if text.lines().any(|l| re.is_match(l)) || re.is_match(&text) {
                Ok(())
            } else {
                Err(unmet(test))
            };
        }
    };
    let cmd = cmd.timeout(timeout);
    let result = match test {
        Probe::Port(_) => netns.run(cmd).await,
        _ => target.run(cmd).await,
    }
    .map_err(|e| e.to_string())?;
    let output = format!("{}{}", result.stdout_lossy(), result.stderr_lossy())
        .trim()
        .to_string();
    match test {
        Probe::Port(port) if result.success() => {
            if listening(&output, *port) {
                Ok(())
            } else {
                Err(unmet(test))
            }
        }
        _ if result.success() => Ok(()),
        _ if result.timed_out => Err(format!(
            "probe timed out after {}",
            crate::model::format_duration(timeout)
        )),
        _ => Err(if output.is_empty() {
            result.status_line()
        } else {
            format!("{} ({})", output, result.status_line())
        }),
    }
}

/// Whether `/proc/net/tcp`-format text has a socket listening on `port`.
pub fn listening(proc_net_tcp: &str, port: u16) -> bool {
    proc_net_tcp.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st ...; st 0A is LISTEN.
        fields.len() > 3
            && fields[3] == "0A"
            && fields[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
                == Some(port)
    })
}

/// The main process's recorded output (stdout and stderr as they came), the
/// last `tail` lines when given.
pub async fn log_text(sandbox: &dyn Detached, tail: Option<usize>) -> Result<String, String> {
    let (sink, mut rx) = cleanroom::output_channel(64);
    let collect = tokio::spawn(async move {
        let mut bytes = Vec::new();
        while let Some(chunk) = rx.recv().await {
            bytes.extend_from_slice(&chunk.bytes);
        }
        bytes
    });
    let res = sandbox
        .logs(
            LogOptions {
                tail,
                follow: false,
            },
            sink,
        )
        .await;
    let bytes = collect.await.unwrap_or_default();
    res.map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listening_sockets() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue\n   0: 00000000:18EB 00000000:0000 0A 00000000:00000000\n   1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000\n";
        assert!(listening(tcp, 6379));
        assert!(!listening(tcp, 8080), "established, not listening");
    }
}
