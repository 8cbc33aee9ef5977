//! `cleanroom top` in a real terminal (tmux): it renders, follows a
//! service that stops, and quits on `q`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::text;

/// A tmux session running `cleanroom ARGS` in `dir`, killed when dropped.
struct Tmux {
    name: String,
}

impl Tmux {
    fn start(dir: &Path, state: &Path, args: &[&str]) -> Tmux {
        let name = format!("crtop-{}", std::process::id());
        let mut cmd = format!(
            "cd '{}' && CLEANROOM_STATE_DIR='{}' '{}'",
            dir.display(),
            state.display(),
            env!("CARGO_BIN_EXE_cleanroom")
        );
        for a in args {
            cmd.push_str(&format!(" '{a}'"));
        }
        let ok = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "120",
                "-y",
                "32",
                &cmd,
            ])
            .status()
            .expect("tmux is installed (scripts/setup.d/60-env-tools.sh)");
        assert!(ok.success(), "starting tmux");
        Tmux { name }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .unwrap();
        text(&out.stdout)
    }

    /// Waits until the screen shows `what`.
    fn wait_for(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen();
            if s.contains(what) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {what:?}:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn keys(&self, keys: &str) {
        Command::new("tmux")
            .args(["send-keys", "-t", &self.name, keys])
            .status()
            .unwrap();
    }

    fn running(&self) -> bool {
        Command::new("tmux")
            .args(["has-session", "-t", &self.name])
            .output()
            .unwrap()
            .status
            .success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .output();
    }
}

fn quits_on_q(t: &Tmux) {
    t.keys("q");
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.running() {
        assert!(
            Instant::now() < deadline,
            "top did not quit on q:\n{}",
            t.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn top_renders_and_quits_on_q() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Tmux::start(
        tmp.path(),
        tmp.path(),
        &["top", "--backend", "local", "--interval", "200"],
    );
    let s = t.wait_for("no environments are up");
    assert!(
        s.contains("ENVIRONMENT") && s.contains("MEMORY") && s.contains("q quit"),
        "{s}"
    );
    quits_on_q(&t);
}

#[test]
fn top_follows_a_service_that_stops_on_docker() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("topenv");
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        "services:\n  web:\n    command: [\"sh\", \"-c\", \"echo web-says-hi; exec sleep 1000\"]\n  worker:\n    command: [\"sleep\", \"1000\"]\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        common::command(&dir, args)
            .env("CLEANROOM_STATE_DIR", &state)
            .output()
            .unwrap()
    };
    if !common::backend_available(&dir, "docker") {
        return;
    }
    let up = run(&["up", "-d", "--backend", "docker"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    let t = Tmux::start(
        &dir,
        &state,
        &["top", "--backend", "docker", "--interval", "300"],
    );
    let s = t.wait_for("worker");
    assert!(s.contains("topenv") && s.contains("running"), "{s}");
    t.wait_for("web-says-hi");
    let stopped = run(&["env", "stop", "worker", "--backend", "docker"]);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    t.wait_for("exited");
    quits_on_q(&t);
    let down = run(&["down", "--backend", "docker", "--grace", "1"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
}
