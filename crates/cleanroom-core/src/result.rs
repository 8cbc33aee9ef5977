//! [`RunResult`]: what came back from a command.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::enforcement::Enforcement;

/// The outcome of one command. `exit_code` is always set: a command killed
/// by signal N reports `signal = Some(N)` and `exit_code = 128 + N`, as a shell would.
///
/// A backend of one's own builds it from a finished [`std::process::Output`]
/// (`RunResult::from(output)`) or field by field over `RunResult::default()`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunResult {
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// The command ran past its timeout and its whole process tree was killed.
    pub timed_out: bool,
    /// The kernel's OOM killer ended it because of the memory limit.
    pub oom_killed: bool,
    #[serde(serialize_with = "lossy")]
    pub stdout: Vec<u8>,
    #[serde(serialize_with = "lossy")]
    pub stderr: Vec<u8>,
    /// More stdout was written than the output limit kept.
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
    /// Which backend ran it.
    pub backend: String,
    /// What was and was not enforced for this run.
    pub enforcement: Enforcement,
}

fn lossy<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(b))
}

fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl RunResult {
    /// Exit code 0, no signal, no timeout.
    pub fn success(&self) -> bool {
        self.exit_code == 0 && self.signal.is_none() && !self.timed_out
    }

    pub fn stdout_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    pub fn stderr_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }

    /// One line for messages: `exit 3`, `killed by signal 9 (exit 137)`, `timed out`.
    pub fn status_line(&self) -> String {
        let mut s = match self.signal {
            Some(sig) => format!("killed by signal {sig} (exit {})", self.exit_code),
            None => format!("exit {}", self.exit_code),
        };
        if self.timed_out {
            s.push_str(", timed out");
        }
        if self.oom_killed {
            s.push_str(", out of memory");
        }
        s
    }
}

impl From<std::process::Output> for RunResult {
    /// Exit code, signal and both streams; nothing truncated, no duration,
    /// no backend name and an empty report, for the caller to fill in.
    fn from(out: std::process::Output) -> Self {
        let (exit_code, signal) = exit_code_and_signal(out.status);
        RunResult {
            exit_code,
            signal,
            stdout: out.stdout,
            stderr: out.stderr,
            ..RunResult::default()
        }
    }
}

/// A host process's exit code as a shell reports it (128+N for signal N),
/// and the signal that killed it, if one did.
pub fn exit_code_and_signal(status: std::process::ExitStatus) -> (i32, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    let signal = status.signal();
    let exit_code = match (status.code(), signal) {
        (Some(c), _) => c,
        (None, Some(s)) => signal_exit_code(s),
        (None, None) => -1,
    };
    (exit_code, signal)
}

/// The exit code a shell reports for a process killed by `signal`.
pub fn signal_exit_code(signal: i32) -> i32 {
    128 + signal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_output_keeps_code_signal_and_streams() {
        let out = std::process::Command::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .output()
            .unwrap();
        let r = RunResult::from(out);
        assert_eq!((r.exit_code, r.signal), (3, None));
        assert_eq!(
            (r.stdout_lossy(), r.stderr_lossy()),
            ("out\n".into(), "err\n".into())
        );
        let out = std::process::Command::new("sh")
            .args(["-c", "kill -9 $$"])
            .output()
            .unwrap();
        let r = RunResult::from(out);
        assert_eq!((r.exit_code, r.signal), (137, Some(9)));
        assert!(!r.success());
    }
}
