//! Every command that prints, with its stdout on `/dev/full` (one line on
//! stderr, exit 125, no panic) and on a pipe whose reader is gone (quiet,
//! the exit code it would have had anyway).

mod common;

use std::fs::File;
use std::path::Path;
use std::process::{Output, Stdio};

use common::text;

/// A command line and the exit code it has when its output is read.
struct Case {
    args: Vec<String>,
    code: i32,
}

/// Every printing command, against a fresh home with one image and a
/// passing test file; engines are pointed at sockets that do not exist, so
/// `gc` and `doctor` touch no one's containers.
fn cases(home: &Path) -> Vec<Case> {
    let dir = home.join("work");
    std::fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
    std::fs::write(dir.join("rootfs/etc/os-release"), "NAME=t\n").unwrap();
    std::fs::write(
        dir.join("ok.clnrm.toml"),
        "[test.metadata]\nname = \"ok\"\n\n[[steps]]\nname = \"s\"\ncommand = [\"echo\", \"hi\"]\n",
    )
    .unwrap();
    let out = cleanroom(
        home,
        &[
            "import",
            &format!("file://{}/rootfs", dir.display()),
            "--tag",
            "t:1",
        ],
        Stdio::null(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let test_file = dir.join("ok.clnrm.toml").display().to_string();
    let list: &[(&[&str], i32)] = &[
        (&["--help"], 0),
        (&["--version"], 0),
        (&["run", "--help"], 0),
        (&["completions", "bash"], 0),
        (&["config"], 0),
        (&["config", "--json"], 0),
        (&["doctor"], 0),
        (&["doctor", "--json"], 0),
        (&["validate", &test_file], 0),
        (&["test", "--backend", "local", &test_file], 0),
        (
            &["test", "--backend", "local", "--format", "json", &test_file],
            0,
        ),
        (
            &[
                "run",
                "--backend",
                "local",
                "-q",
                "--",
                "sh",
                "-c",
                "echo out; exit 3",
            ],
            3,
        ),
        (
            &["run", "--backend", "local", "-q", "--json", "--", "true"],
            0,
        ),
        (&["images"], 0),
        (&["images", "--json"], 0),
        (&["images", "verify"], 0),
        (&["images", "verify", "--json"], 0),
        (&["gc"], 0),
        (&["self-test", "--backend", "local", "--filter", "exit"], 0),
        (&["bench", "--backend", "local", "--runs", "1"], 0),
    ];
    let mut out: Vec<Case> = list
        .iter()
        .map(|(args, code)| Case {
            args: args.iter().map(|a| a.to_string()).collect(),
            code: *code,
        })
        .collect();
    // Commands that change something get their own target each time.
    out.push(Case {
        args: vec!["init".into(), home.join("init-DEV").display().to_string()],
        code: 0,
    });
    out.push(Case {
        args: vec![
            "import".into(),
            format!("file://{}/rootfs", dir.display()),
            "--tag".into(),
            "copy-DEV:1".into(),
        ],
        code: 0,
    });
    out.push(Case {
        args: vec!["rmi".into(), "copy-DEV:1".into()],
        code: 0,
    });
    out
}

fn cleanroom(home: &Path, args: &[&str], stdout: impl Into<Stdio>) -> Output {
    common::command(home, args)
        .env("CLEANROOM_HOME", home)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("CONTAINER_HOST", "unix:///nonexistent/podman.sock")
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("running the cleanroom binary")
}

/// `args` with `DEV` replaced, so each run of a changing command is new.
fn args_for(case: &Case, dev: &str) -> Vec<String> {
    case.args.iter().map(|a| a.replace("DEV", dev)).collect()
}

#[test]
fn a_full_stdout_is_one_line_on_stderr_and_exit_125() {
    let home = tempfile::tempdir().unwrap();
    for case in cases(home.path()) {
        let args = args_for(&case, "full");
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let full = File::options().write(true).open("/dev/full").unwrap();
        let out = cleanroom(home.path(), &argv, full);
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(
            errors,
            ["cleanroom: error: writing to stdout: No space left on device"],
            "{args:?}: {err}"
        );
    }
}

#[test]
fn a_closed_pipe_ends_quietly_with_the_usual_exit_code() {
    let home = tempfile::tempdir().unwrap();
    for case in cases(home.path()) {
        let args = args_for(&case, "pipe");
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        // The reader is gone before the command writes anything: EPIPE at once.
        let (reader, writer) = rustix::pipe::pipe().unwrap();
        drop(reader);
        let out = cleanroom(home.path(), &argv, writer);
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("writing to stdout"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(case.code), "{args:?}: {err}");
    }
}

#[test]
fn output_still_arrives_whole_when_stdout_works() {
    let home = tempfile::tempdir().unwrap();
    let out = cleanroom(home.path(), &["completions", "bash"], Stdio::piped());
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("complete -F"),
        "{}",
        text(&out.stdout)
    );
    let out = cleanroom(home.path(), &["--version"], Stdio::piped());
    assert!(text(&out.stdout).starts_with("cleanroom "));
}
