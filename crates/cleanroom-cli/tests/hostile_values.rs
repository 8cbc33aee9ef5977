//! Values that can never work are refused where they are read (flags,
//! environment, config files, test files) with the allowed range in one
//! line; usage errors are one line with exit 125; `cleanroom test` exits
//! 143 on SIGTERM and 130 on SIGINT.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::text;

fn cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = common::command(dir, args);
    c.env("CLEANROOM_HOME", dir.join(".home"));
    c
}

fn cleanroom(dir: &Path, args: &[&str]) -> Output {
    cmd(dir, args)
        .output()
        .expect("running the cleanroom binary")
}

/// Asserts `out` failed with `code` and exactly one line on stderr that
/// contains every one of `needles`.
fn one_line_error(out: &Output, code: i32, needles: &[&str]) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` missing from: {err}");
    }
}

#[test]
fn flags_out_of_range_are_refused_with_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |flags: &[&str]| {
        let mut args = vec!["run", "--backend", "local", "-q"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "true"]);
        cleanroom(d, &args)
    };
    one_line_error(
        &run(&["--timeout", "0"]),
        125,
        &["flag --timeout", "from 1ms"],
    );
    one_line_error(
        &run(&["--memory", "1"]),
        125,
        &["flag --memory", "from 6MiB to 1PiB"],
    );
    one_line_error(
        &run(&["--memory", "-1"]),
        125,
        &["flag --memory", "-1", "from 6MiB to 1PiB"],
    );
    one_line_error(
        &run(&["--cpus", "1e308"]),
        125,
        &["flag --cpus", "from 0.01 to 1024"],
    );
    one_line_error(
        &run(&["--pids", "9223372036854775807"]),
        125,
        &["flag --pids", "from 1 to 4194304"],
    );
    one_line_error(&run(&["--user", "-1"]), 125, &["flag --user", "-1"]);
    one_line_error(
        &run(&["--workdir", "/"]),
        125,
        &["flag --workdir", "cannot be `/`"],
    );
    one_line_error(
        &run(&["--mount", "/tmp:/"]),
        125,
        &["flag --mount", "cannot be `/`"],
    );
}

#[test]
fn environment_and_config_files_are_checked_alike() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = cmd(d, &["config"])
        .env("CLEANROOM_CPUS", "1e308")
        .output()
        .unwrap();
    one_line_error(
        &out,
        125,
        &["environment CLEANROOM_CPUS", "from 0.01 to 1024"],
    );

    std::fs::write(
        d.join("cleanroom.toml"),
        "memory = \"512M\"\npids = 9223372036854775807\n",
    )
    .unwrap();
    let out = cleanroom(d, &["config"]);
    one_line_error(&out, 125, &["cleanroom.toml:2", "from 1 to 4194304"]);
    std::fs::write(d.join("cleanroom.toml"), "timeout_ms = 0\n").unwrap();
    one_line_error(
        &cleanroom(d, &["config"]),
        125,
        &["cleanroom.toml:1", "from 1ms"],
    );
}

#[test]
fn test_files_are_checked_alike() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let long = "h".repeat(1000);
    let cases = [
        (
            "hostname",
            format!("[sandbox]\nhostname = \"{long}\"\n"),
            "1 to 64",
        ),
        (
            "tmpfs",
            "[sandbox]\ntmpfs = [\"/\"]\n".to_string(),
            "cannot be `/`",
        ),
        (
            "workdir",
            "[sandbox]\nworkdir = \"/\"\n".to_string(),
            "cannot be `/`",
        ),
        (
            "mounts",
            "[sandbox]\nmounts = [\"/tmp:/\"]\n".to_string(),
            "cannot be `/`",
        ),
        (
            "cpus",
            "[sandbox]\ncpus = 1e308\n".to_string(),
            "from 0.01 to 1024",
        ),
        (
            "pids",
            "[sandbox]\npids = 9223372036854775807\n".to_string(),
            "from 1 to 4194304",
        ),
        ("memory", "[sandbox]\nmemory = 1\n".to_string(), "from 6MiB"),
        (
            "timeout",
            "[sandbox]\ntimeout = 0\n".to_string(),
            "from 1ms",
        ),
        ("exit", String::new(), "from 0 to 255, not -1"),
    ];
    for (name, sandbox, needle) in cases {
        let step_extra = if name == "exit" {
            "expected_exit_code = -1\n"
        } else {
            ""
        };
        let body = format!(
            "[test.metadata]\nname = \"{name}\"\n\n{sandbox}\n[[steps]]\nname = \"s\"\ncommand = [\"true\"]\n{step_extra}"
        );
        let file = d.join(format!("{name}.clnrm.toml"));
        std::fs::write(&file, body).unwrap();
        let out = cleanroom(d, &["validate", file.to_str().unwrap()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.contains(&format!("{name}.clnrm.toml:")),
            "{name}: {err}"
        );
        assert!(
            first.contains(needle),
            "{name}: `{needle}` missing from {err}"
        );
        assert!(first.len() < 300, "{name}: one short line: {first}");
    }
}

#[test]
fn usage_errors_are_one_line_and_exit_125_but_help_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // `run` without a command runs an image's own entrypoint; with no
    // image there is nothing to run.
    one_line_error(
        &cleanroom(d, &["run"]),
        125,
        &["empty command", "-- echo hello"],
    );
    one_line_error(
        &cleanroom(d, &["import"]),
        125,
        &["<SOURCE>", "cleanroom import --help"],
    );
    one_line_error(
        &cleanroom(d, &["run", "--no-such-flag", "--", "true"]),
        125,
        &["--no-such-flag"],
    );
    one_line_error(&cleanroom(d, &["nonsense"]), 125, &["nonsense"]);
    one_line_error(&cleanroom(d, &[]), 125, &["a command is required"]);
    for args in [&["--help"][..], &["run", "--help"], &["--version"]] {
        let out = cleanroom(d, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty() && out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn junit_directories_made_on_the_way_are_announced() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("ok.clnrm.toml"),
        "[test.metadata]\nname = \"ok\"\n\n[[steps]]\nname = \"s\"\ncommand = [\"true\"]\n",
    )
    .unwrap();
    let report = d.join("new/dir/x.xml");
    let out = cleanroom(
        d,
        &[
            "test",
            "--backend",
            "local",
            "--junit",
            report.to_str().unwrap(),
            "ok.clnrm.toml",
        ],
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(report.is_file());
    assert!(
        err.contains(&format!(
            "created directory {}",
            d.join("new/dir").display()
        )),
        "{err}"
    );
}

/// Starts `cleanroom test` on a step that waits, and returns once it runs.
fn start_waiting_test(d: &Path) -> Child {
    let marker = d.join("started");
    std::fs::write(
        d.join("wait.clnrm.toml"),
        format!(
            "[test.metadata]\nname = \"wait\"\n\n[[steps]]\nname = \"s\"\ncommand = [\"sh\", \"-c\", \"touch {}; sleep 60\"]\n",
            marker.display()
        ),
    )
    .unwrap();
    let child = cmd(d, &["test", "--backend", "local", "wait.clnrm.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the test step never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn test_exits_143_on_sigterm_and_130_on_sigint() {
    use rustix::process::{kill_process, Pid, Signal};
    for (signal, code) in [(Signal::TERM, 143), (Signal::INT, 130)] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = start_waiting_test(dir.path());
        let pid = Pid::from_raw(child.id() as i32).unwrap();
        kill_process(pid, signal).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{signal:?}");
    }
}
