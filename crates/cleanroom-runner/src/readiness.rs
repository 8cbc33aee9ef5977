//! Waiting until a service is ready: a TCP port listening in the pod, a
//! line in its output, or a command that succeeds inside it — probed by
//! the environments' health-check engine.

use std::time::Duration;

use cleanroom::{Cmd, Sandbox};
use cleanroom_env::health;
use cleanroom_env::{Healthcheck, Probe};

use crate::model::{Readiness, WaitFor};

const POLL: Duration = Duration::from_millis(50);

/// Waits for `wait` on `service` with the environments' health-probe
/// engine (`cleanroom_env::health`), so test services and `cleanroom up`
/// probe alike; `probe` is a sandbox in the same network namespace (the
/// test's own) used to look for listening ports.
pub async fn wait(
    wait: &WaitFor,
    service: &dyn Sandbox,
    probe: &dyn Sandbox,
) -> Result<(), String> {
    let test = match &wait.condition {
        Readiness::Port(p) => Probe::Port(*p),
        Readiness::Log(re) => Probe::Log(re.as_str().to_string()),
        Readiness::Command(argv) => Probe::Cmd(argv.clone()),
    };
    let mut check = Healthcheck::new(test);
    check.interval = POLL;
    check.timeout = wait.timeout.clamp(POLL, Duration::from_secs(10));
    check.retries = (wait.timeout.as_millis() / POLL.as_millis()).max(1) as u32;
    let what = describe(&wait.condition);
    let not_ready = |last: &str| {
        let mut msg = format!("not ready after {:.1}s: {what}", wait.timeout.as_secs_f64());
        if !last.is_empty() && last != what {
            msg.push_str(&format!(" (last attempt: {last})"));
        }
        msg
    };
    // The retries bound the probes; the deadline bounds slow ones.
    match tokio::time::timeout(wait.timeout, health::wait_probe(service, probe, &check)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(unhealthy)) => Err(not_ready(&unhealthy.last_probe)),
        Err(_) => Err(not_ready("")),
    }
}

/// What readiness means, for messages.
pub fn describe(r: &Readiness) -> String {
    match r {
        Readiness::Port(p) => format!("nothing listens on TCP port {p}"),
        Readiness::Log(re) => format!("its output never matched /{re}/"),
        Readiness::Command(argv) => {
            format!("`{}` never exited 0", Cmd::from(argv.clone()).display())
        }
    }
}
