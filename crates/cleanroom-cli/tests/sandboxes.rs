//! Named sandboxes end to end, as whole `cleanroom` processes (issue #13's
//! acceptance): create, exec from new processes, ps, stop, ps -a, rm leaving
//! nothing; 16 parallel execs; 8 parallel creates of one name; bad input;
//! `exec -it` in a real terminal (tmux). Each runs on docker, podman and
//! native. The engines come from scripts/setup.d/40-engines.sh and tmux
//! from scripts/setup.d/45-tmux.sh; without them these tests fail.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{cleanroom, text};

const IMAGE: &str = "cleanroom-busybox:latest";

/// `create` flags that pick `backend` (and its image, for an engine).
fn backend_flags(backend: &str) -> Vec<&str> {
    match backend {
        "native" => vec!["--backend", "native"],
        engine => vec!["--backend", engine, "--image", IMAGE],
    }
}

fn run(args: &[&str]) -> Output {
    cleanroom(Path::new("/"), args)
}

/// Runs `args` and fails the test, showing its output, unless it exits 0.
fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "`cleanroom {}` exited {:?}: {}{}",
        args.join(" "),
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `args`, expecting Cleanroom's own failure: exit 125 and one line
/// on stderr containing `needle`.
fn refused(args: &[&str], needle: &str) {
    let out = run(args);
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(125),
        "`cleanroom {}` should fail: {}{err}",
        args.join(" "),
        text(&out.stdout)
    );
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.contains(needle), "`{needle}` not in: {err}");
}

fn create(backend: &str, name: &str) {
    let mut args = vec!["create", "--name", name, "--label", "suite=cli"];
    args.extend(backend_flags(backend));
    assert_eq!(ok(&args).trim(), name);
}

/// `ps --json` (with `-a` if `all`): the entry named `name`.
fn ps_entry(all: bool, name: &str) -> Option<serde_json::Value> {
    let args: &[&str] = if all {
        &["ps", "-a", "--json"]
    } else {
        &["ps", "--json"]
    };
    let v: serde_json::Value = serde_json::from_str(&ok(args)).expect("ps --json is JSON");
    v.as_array()
        .expect("ps --json is an array")
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
}

/// Removes `name` when the test ends, however it ends.
struct Remove(String);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = run(&["rm", "-f", &self.0]);
    }
}

fn unique(backend: &str, what: &str) -> String {
    format!("{what}-{backend}-{}", std::process::id())
}

/// What the backend can see of `name` after `rm`: nothing.
fn assert_no_trace(backend: &str, name: &str, id: &str) {
    assert!(ps_entry(true, name).is_none(), "ps -a still lists {name}");
    refused(&["exec", name, "--", "true"], "no such sandbox");
    match backend {
        "native" => {
            let state = cleanroom::detached::state_dir().expect("the state directory");
            let left: Vec<_> = walk(&state)
                .into_iter()
                .filter(|p| p.to_string_lossy().contains(name))
                .collect();
            assert!(left.is_empty(), "state left for {name}: {left:?}");
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            assert!(
                !mounts.contains(name) && (id.is_empty() || !mounts.contains(id)),
                "a mount of {name} is left"
            );
        }
        engine => {
            let out = std::process::Command::new(engine)
                .args(["ps", "-a", "-q", "--no-trunc", "--filter"])
                .arg(format!("label=io.cleanroom.name={name}"))
                .output()
                .unwrap_or_else(|e| panic!("running `{engine} ps`: {e}"));
            assert!(
                text(&out.stdout).trim().is_empty(),
                "{engine} still has a container for {name}: {}",
                text(&out.stdout)
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

fn acceptance(backend: &str) {
    let name = unique(backend, "acc");
    let _remove = Remove(name.clone());
    create(backend, &name);

    // From new processes, and found without --backend.
    ok(&["exec", &name, "--", "sh", "-c", "echo 1 > /tmp/f"]);
    assert_eq!(ok(&["exec", &name, "--", "cat", "/tmp/f"]), "1\n");
    let out = run(&[
        "exec",
        &name,
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(
        (text(&out.stdout), text(&out.stderr)),
        ("out\n".into(), "err\n".into())
    );
    let out = run(&["exec", "-i", &name, "--", "cat"]);
    assert!(out.status.success(), "exec -i: {}", text(&out.stderr));

    let table = ok(&["ps"]);
    let row = table
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("ps does not list {name}:\n{table}"));
    assert!(row.contains("running") && row.contains(backend), "{row}");
    let entry = ps_entry(false, &name).expect("ps --json lists it");
    assert_eq!(entry["state"], "running");
    assert_eq!(entry["backend"], backend);
    assert_eq!(entry["labels"]["suite"], "cli");
    let id = entry["id"].as_str().unwrap_or_default().to_string();

    // cp both ways, and a path outside the root refused.
    let host = tempfile::tempdir().unwrap();
    let src = host.path().join("in.txt");
    std::fs::write(&src, "copied\n").unwrap();
    ok(&["cp", src.to_str().unwrap(), &format!("{name}:/tmp/")]);
    assert_eq!(ok(&["exec", &name, "--", "cat", "/tmp/in.txt"]), "copied\n");
    let back = host.path().join("back.txt");
    ok(&["cp", &format!("{name}:/tmp/in.txt"), back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "copied\n");
    // A directory, modes kept both ways.
    let dir = host.path().join("d");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/f"), "deep\n").unwrap();
    let mode = |p: &Path, m: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    };
    mode(&dir.join("sub/f"), 0o600);
    ok(&["cp", dir.to_str().unwrap(), &format!("{name}:/tmp/d")]);
    assert_eq!(
        ok(&[
            "exec",
            &name,
            "--",
            "sh",
            "-c",
            "cat /tmp/d/sub/f; stat -c %a /tmp/d/sub/f"
        ]),
        "deep\n600\n"
    );
    let dir_back = host.path().join("d-back");
    ok(&["cp", &format!("{name}:/tmp/d"), dir_back.to_str().unwrap()]);
    let meta = std::fs::metadata(dir_back.join("sub/f")).expect("the directory came back");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    refused(
        &["cp", src.to_str().unwrap(), &format!("{name}:../../etc/x")],
        "outside the sandbox's root",
    );

    // stats from the sandbox's cgroup, or the reason there are none.
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&["stats", "--no-stream", "--json", &name])).unwrap();
    let reading = &stats[0];
    assert_eq!(reading["name"], name.as_str());
    assert!(
        reading["pids"].as_u64().is_some_and(|p| p >= 1) || reading["unavailable"].is_string(),
        "stats: {reading}"
    );

    refused(&["rm", &name], "is running");
    assert_eq!(ok(&["stop", "-t", "5", &name]).trim(), name);
    assert!(
        ps_entry(false, &name).is_none(),
        "ps lists {name} after stop"
    );
    let entry = ps_entry(true, &name).expect("ps -a lists it after stop");
    assert_eq!(entry["state"], "exited", "{entry}");
    let table = ok(&["ps", "-a"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&format!("{name} ")) && l.contains("exited (")),
        "{table}"
    );
    refused(&["exec", &name, "--", "true"], "not running");

    assert_eq!(ok(&["rm", &name]).trim(), name);
    assert_no_trace(backend, &name, &id);
}

/// `run -d`: the command is the main process; `logs -f` follows it to its
/// end, and `ps -a` then shows its exit code.
fn run_detached(backend: &str) {
    let name = unique(backend, "main");
    let _remove = Remove(name.clone());
    let mut args = vec!["run", "-d", "--name", &name];
    args.extend(backend_flags(backend));
    args.extend(["--", "sh", "-c", "echo one; sleep 1; echo two >&2; exit 3"]);
    assert_eq!(ok(&args).trim(), name);
    let out = run(&["logs", "-f", &name]);
    assert!(out.status.success(), "logs -f: {}", text(&out.stderr));
    assert_eq!(
        (text(&out.stdout), text(&out.stderr)),
        ("one\n".into(), "two\n".into())
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let entry = ps_entry(true, &name).expect("ps -a lists it");
        if entry["state"] == "exited" {
            assert_eq!(entry["code"], 3, "{entry}");
            break;
        }
        assert!(Instant::now() < deadline, "still {entry}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ok(&["logs", "--tail", "1", &name]), "");
    ok(&["rm", &name]);
}

fn parallel_execs(backend: &str) {
    let name = unique(backend, "par");
    let _remove = Remove(name.clone());
    create(backend, &name);
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let name = name.clone();
            std::thread::spawn(move || {
                let script = format!("echo out-{i}; exit {i}");
                (i, run(&["exec", &name, "--", "sh", "-c", &script]))
            })
        })
        .collect();
    for t in threads {
        let (i, out) = t.join().unwrap();
        assert_eq!(
            out.status.code(),
            Some(i),
            "exec {i}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), format!("out-{i}\n"), "exec {i}");
    }
}

fn parallel_creates(backend: &str) {
    let name = unique(backend, "race");
    let _remove = Remove(name.clone());
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let name = name.clone();
            let backend = backend.to_string();
            std::thread::spawn(move || {
                let mut args = vec!["create", "--name", &name];
                args.extend(backend_flags(&backend));
                run(&args)
            })
        })
        .collect();
    let outs: Vec<Output> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let made = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(made, 1, "{made} of 8 creates succeeded");
    for o in outs.iter().filter(|o| !o.status.success()) {
        let err = text(&o.stderr);
        assert!(err.contains("already in use"), "{err}");
    }
    let listed = serde_json::from_str::<serde_json::Value>(&ok(&["ps", "-a", "--json"]))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == name.as_str())
        .count();
    assert_eq!(listed, 1);
}

fn bad_input(backend: &str) {
    let mut args = vec!["create", "--name", "a/b"];
    args.extend(backend_flags(backend));
    refused(&args, "is not valid");
    let mut args = vec!["create", "--name", "a b"];
    args.extend(backend_flags(backend));
    refused(&args, "is not valid");
    let missing = unique(backend, "missing");
    for verb in [
        vec!["exec", &missing, "--", "true"],
        vec!["logs", &missing],
        vec!["stop", &missing],
        vec!["rm", &missing],
        vec!["stats", "--no-stream", &missing],
    ] {
        refused(&verb, "no such sandbox");
    }
    refused(
        &["cp", "/etc/hostname", &format!("{missing}:/tmp/x")],
        "no such sandbox",
    );
    // Several names: nothing changes unless all are there.
    let name = unique(backend, "keep");
    let _remove = Remove(name.clone());
    create(backend, &name);
    refused(&["stop", &name, &missing], "no such sandbox");
    assert_eq!(
        ps_entry(false, &name).expect("still running")["state"],
        "running"
    );
}

/// `exec -it NAME -- sh` in a real terminal: a tmux pane of 80x24.
fn tty_shell(backend: &str) {
    let name = unique(backend, "tty");
    let _remove = Remove(name.clone());
    create(backend, &name);
    let session = unique(backend, "cleanroom-tty");
    let status = tempfile::NamedTempFile::new().unwrap();
    let shell = format!(
        "{} exec -it {name} -- sh; echo $? > {}",
        env!("CARGO_BIN_EXE_cleanroom"),
        status.path().display()
    );
    let tmux = |args: &[&str]| {
        let out = std::process::Command::new("tmux")
            .args(args)
            .output()
            .expect("running tmux (scripts/setup.d/45-tmux.sh installs it)");
        assert!(out.status.success(), "tmux {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "80",
        "-y",
        "24",
        &shell,
    ]);
    let pane = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let shown = tmux(&["capture-pane", "-p", "-t", &session]);
            if shown.contains(want) {
                return shown;
            }
            assert!(Instant::now() < deadline, "`{want}` never shown:\n{shown}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    pane("$");
    tmux(&[
        "send-keys",
        "-t",
        &session,
        "echo $((6*7)); stty size; tty",
        "Enter",
    ]);
    // The answer, the pane's size seen inside, and a terminal device.
    pane("42");
    pane("24 80");
    pane("/dev/pts/");
    // A resized terminal resizes the one inside (SIGWINCH).
    // (The resize reaches the engine a moment after the keys may.)
    tmux(&["resize-window", "-t", &session, "-x", "100", "-y", "30"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        tmux(&["send-keys", "-t", &session, "clear; stty size", "Enter"]);
        std::thread::sleep(Duration::from_millis(300));
        let shown = tmux(&["capture-pane", "-p", "-t", &session]);
        if shown.contains("30 100") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the resize never arrived:\n{shown}"
        );
    }
    tmux(&["send-keys", "-t", &session, "exit 3", "Enter"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(status.path())
        .unwrap_or_default()
        .trim()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the shell did not end");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::process::Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .output();
    assert_eq!(std::fs::read_to_string(status.path()).unwrap().trim(), "3");
}

/// Makes, by hand, a created (never started) container for `name` with a
/// sandbox's labels whose record `edit` changes: what a creator that died
/// between the engine's create and start, or another Cleanroom, leaves.
fn forge(engine: &str, name: &str, edit: impl Fn(&mut serde_json::Value)) {
    create(engine, name);
    let container = format!("cleanroom-{name}");
    let engine_cli = |args: &[&str]| {
        let out = std::process::Command::new(engine)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running `{engine}`: {e}"));
        assert!(
            out.status.success(),
            "{engine} {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    let labels = engine_cli(&["inspect", "--format", "{{json .Config.Labels}}", &container]);
    let mut labels: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(labels.trim()).expect("labels as JSON");
    ok(&["rm", "-f", name]);
    let mut record: serde_json::Value =
        serde_json::from_str(labels["io.cleanroom.record"].as_str().unwrap()).unwrap();
    edit(&mut record);
    labels.insert("io.cleanroom.record".into(), record.to_string().into());
    let mut args = vec!["create".to_string(), "--name".into(), container];
    for (k, v) in &labels {
        args.push("--label".into());
        args.push(format!("{k}={}", v.as_str().unwrap()));
    }
    args.extend([IMAGE.to_string(), "true".into()]);
    engine_cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// A sandbox whose creator died between the engine's create and its start
/// shows as `dead` in `ps -a`, and `gc` removes it, saying so.
fn gc_removes_dead(engine: &str) {
    let name = unique(engine, "dead");
    let _remove = Remove(name.clone());
    forge(engine, &name, |record| record["created"] = 0.into());
    let entry = ps_entry(true, &name).expect("ps -a lists the unstarted sandbox");
    assert_eq!(entry["state"], "dead", "{entry}");
    let said = ok(&["gc"]);
    assert!(
        said.contains(&format!("removed dead {engine} sandbox `{name}`")),
        "gc did not say it removed {name}:\n{said}"
    );
    assert!(
        ps_entry(true, &name).is_none(),
        "ps -a still lists {name} after gc"
    );
}

/// A sandbox another version of Cleanroom made is refused by name, with
/// that version and how to remove it.
fn other_version_is_named(engine: &str) {
    /// Removes the container through the engine (Cleanroom refuses it).
    struct EngineRemove<'a>(&'a str, String);
    impl Drop for EngineRemove<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new(self.0)
                .args(["rm", "-f", &self.1])
                .output();
        }
    }
    let name = unique(engine, "other");
    let _remove = EngineRemove(engine, format!("cleanroom-{name}"));
    forge(engine, &name, |record| {
        record["version"] = 99.into();
        record["made_by"] = "9.9.9".into();
    });
    refused(
        &["exec", &name, "--", "true"],
        "was created by cleanroom 9.9.9",
    );
}

macro_rules! per_backend {
    ($($backend:ident),*) => {
        $(
            mod $backend {
                #[test]
                fn acceptance() {
                    super::acceptance(stringify!($backend));
                }
                #[test]
                fn run_detached_keeps_logs_and_exit_code() {
                    super::run_detached(stringify!($backend));
                }
                #[test]
                fn sixteen_parallel_execs() {
                    super::parallel_execs(stringify!($backend));
                }
                #[test]
                fn eight_parallel_creates_make_one() {
                    super::parallel_creates(stringify!($backend));
                }
                #[test]
                fn bad_input_is_one_line_and_changes_nothing() {
                    super::bad_input(stringify!($backend));
                }
                #[test]
                fn exec_tty_runs_an_interactive_shell() {
                    super::tty_shell(stringify!($backend));
                }
            }
        )*
    };
}

per_backend!(docker, podman, native);

#[test]
fn docker_gc_removes_dead_sandboxes() {
    gc_removes_dead("docker");
}

#[test]
fn podman_gc_removes_dead_sandboxes() {
    gc_removes_dead("podman");
}

#[test]
fn docker_sandbox_of_another_version_is_named() {
    other_version_is_named("docker");
}

#[test]
fn podman_sandbox_of_another_version_is_named() {
    other_version_is_named("podman");
}

#[test]
fn local_refuses_in_one_line_naming_the_backends_that_can() {
    refused(
        &["create", "--backend", "local", "--name", "never"],
        "use --backend native, podman or docker",
    );
    refused(
        &["run", "-d", "--backend", "local", "--", "true"],
        "local backend does not support",
    );
}
