//! Waiting until a service is ready: a TCP port listening in the pod, a
//! line in its output, or a command that succeeds inside it.

use std::time::{Duration, Instant};

use cleanroom::{Cmd, Sandbox};

use crate::model::{Readiness, WaitFor};

const POLL: Duration = Duration::from_millis(50);

/// Waits for `wait` on `service`; `probe` is a sandbox in the same network
/// namespace (the test's own) used to look for listening ports.
pub async fn wait(
    wait: &WaitFor,
    service: &dyn Sandbox,
    probe: &dyn Sandbox,
) -> Result<(), String> {
    let deadline = Instant::now() + wait.timeout;
    let mut last = String::new();
    loop {
        match once(&wait.condition, service, probe, deadline).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            let what = describe(&wait.condition);
            let mut msg = format!("not ready after {:.1}s: {what}", wait.timeout.as_secs_f64());
            if !last.is_empty() {
                msg.push_str(&format!(" (last attempt: {last})"));
            }
            return Err(msg);
        }
        tokio::time::sleep(POLL).await;
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

async fn once(
    r: &Readiness,
    service: &dyn Sandbox,
    probe: &dyn Sandbox,
    deadline: Instant,
) -> Result<bool, String> {
    let left = deadline.saturating_duration_since(Instant::now()).max(POLL);
    match r {
        Readiness::Port(port) => {
            // /proc/net/tcp{,6} describe the reader's network namespace, so
            // reading them in the pod needs nothing but `cat`.
            let cmd = Cmd::from(["cat", "/proc/net/tcp", "/proc/net/tcp6"])
                .timeout(left.min(Duration::from_secs(5)));
            let out = probe.exec(cmd).await.map_err(|e| e.to_string())?;
            Ok(listening(&out.stdout_lossy(), *port))
        }
        Readiness::Log(re) => {
            let logs = service.logs().await.map_err(|e| e.to_string())?;
            Ok(re.is_match(&String::from_utf8_lossy(&logs.stdout))
                || re.is_match(&String::from_utf8_lossy(&logs.stderr)))
        }
        Readiness::Command(argv) => {
            let cmd = Cmd::from(argv.clone()).timeout(left.min(Duration::from_secs(10)));
            let out = service.exec(cmd).await.map_err(|e| e.to_string())?;
            if out.success() {
                Ok(true)
            } else {
                Err(out.status_line())
            }
        }
    }
}

/// Whether `/proc/net/tcp`-format `table` has a socket listening on `port`.
pub fn listening(table: &str, port: u16) -> bool {
    let want = format!("{port:04X}");
    table.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st ...; 0A is TCP_LISTEN.
        fields.len() > 3 && fields[3] == "0A" && fields[1].rsplit(':').next() == Some(want.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_listening_sockets_in_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue\n   0: 0100007F:18EB 00000000:0000 0A 00000000:00000000\n   1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000\n";
        assert!(listening(table, 6379));
        // 8080 appears only as an established connection.
        assert!(!listening(table, 8080));
    }
}
