//! Hostile input against the real binary: a generated corpus of files no
//! one should write (FIFO, devices, symlink loops, 10 and 20 MB files, deep
//! nesting, invalid UTF-8, NUL bytes, huge numbers) as test files and as
//! `cleanroom.toml`, through `cleanroom validate` and `cleanroom test`.
//! Each case is bounded (killed after [`BOUND`] = failure) and must end
//! with a documented exit code, no panic, and its error on one line that
//! names the file.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{command, text};

/// Any case still running after this is a hang.
const BOUND: Duration = Duration::from_secs(20);

/// How one bounded run ended.
struct Ended {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn cleanroom(dir: &Path, args: &[&str]) -> Child {
    command(dir, args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the cleanroom binary")
}

/// Waits for `child` at most [`BOUND`]; a child still running is killed and
/// the case fails as a hang.
fn bounded(mut child: Child, what: &str) -> Ended {
    // Drain the pipes on threads so a chatty child never blocks on them.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        text(&s)
    });
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        text(&s)
    });
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for cleanroom") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {BOUND:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ended {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// No panic, an exit code from `allowed`, and a one-line mention of
/// `fragment` that also names `name`.
fn check(ended: &Ended, what: &str, allowed: &[i32], name: &str, fragment: &str) {
    let all = format!("{}{}", ended.stdout, ended.stderr);
    assert!(
        !all.contains("panicked") && ended.code != Some(101),
        "{what}: panicked\n{all}"
    );
    assert!(
        ended.code.is_some_and(|c| allowed.contains(&c)),
        "{what}: exit {:?}, expected one of {allowed:?}\n{all}",
        ended.code
    );
    assert!(
        all.lines()
            .any(|l| l.contains(name) && l.contains(fragment)),
        "{what}: no line names `{name}` with `{fragment}`\n{all}"
    );
}

/// Every stderr line of `validate` is one problem or warning at
/// FILE:LINE:COLUMN, the count line, or Cleanroom's own one-line error.
fn validate_stderr_is_one_line_per_problem(ended: &Ended, what: &str) {
    for line in ended.stderr.lines() {
        let located = line
            .split(": ")
            .nth(1)
            .is_some_and(|kind| kind == "error" || kind == "warning")
            && line
                .split(':')
                .nth(2)
                .is_some_and(|c| c.parse::<u32>().is_ok());
        let summary = line.ends_with("invalid") && line.contains(" of ");
        let own = line.starts_with("cleanroom: ");
        assert!(
            located || summary || own,
            "{what}: a stderr line that is not one problem: {line:?}\n{}",
            ended.stderr
        );
    }
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

const STEP: &str = "[[steps]]\nname = \"s\"\ncommand = [\"true\"]\n";

/// One test file per hostile case, with what `validate` must say about it.
fn corpus(dir: &Path) -> Vec<(&'static str, &'static str)> {
    mkfifo(&dir.join("fifo.clnrm.toml"));
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.clnrm.toml")).unwrap();
    std::os::unix::fs::symlink("/dev/null", dir.join("null.clnrm.toml")).unwrap();
    std::os::unix::fs::symlink("loop.clnrm.toml", dir.join("loop.clnrm.toml")).unwrap();
    // 10 MB: a comment bigger than any real file, then one step.
    let mut big = String::with_capacity(10 << 20);
    while big.len() < 10_000_000 {
        big.push_str("# padding padding padding padding padding padding padding padding padding\n");
    }
    big.push_str(STEP);
    write(dir, "big10mb.clnrm.toml", &big);
    // 20 MB: over the cap, refused before it is read.
    let huge = std::fs::File::create(dir.join("huge20mb.clnrm.toml")).unwrap();
    huge.set_len(20 << 20).unwrap();
    let depth = 100_000;
    write(
        dir,
        "deep_array.clnrm.toml",
        format!("{STEP}x = {}{}\n", "[".repeat(depth), "]".repeat(depth)),
    );
    write(
        dir,
        "deep_inline.clnrm.toml",
        format!(
            "{STEP}x = {}1{}\n",
            "{a = ".repeat(depth),
            "}".repeat(depth)
        ),
    );
    write(
        dir,
        "deep_tables.clnrm.toml",
        format!("{STEP}[{}]\nx = 1\n", vec!["a"; depth].join(".")),
    );
    write(
        dir,
        "latin1.clnrm.toml",
        b"[[steps]]\nname = \"caf\xe9\"\ncommand = [\"true\"]\n",
    );
    write(
        dir,
        "nul.clnrm.toml",
        b"[[steps]]\nname = \"a\0b\"\ncommand = [\"true\"]\n",
    );
    write(
        dir,
        "huge_int.clnrm.toml",
        format!("{STEP}expected_exit_code = 99999999999999999999999\n"),
    );
    write(
        dir,
        "huge_values.clnrm.toml",
        format!("[sandbox]\npids = 9223372036854775807\ncpus = 1e308\n{STEP}expected_exit_code = 2147483648\n"),
    );
    write(dir, "empty.clnrm.toml", "");
    write(
        dir,
        "long_line.clnrm.toml",
        format!("{STEP}stdin = \"{}\"\n", "x".repeat(5 << 20)),
    );
    write(dir, "bom.clnrm.toml", format!("\u{feff}{STEP}"));
    std::fs::create_dir(dir.join("dir.clnrm.toml")).unwrap();
    vec![
        ("fifo.clnrm.toml", "FIFO"),
        ("zero.clnrm.toml", "character device"),
        ("null.clnrm.toml", "character device"),
        ("big10mb.clnrm.toml", "ok"),
        ("huge20mb.clnrm.toml", "over the 16 MiB limit"),
        ("deep_array.clnrm.toml", "invalid TOML"),
        ("deep_inline.clnrm.toml", "invalid TOML"),
        ("deep_tables.clnrm.toml", "invalid TOML"),
        ("latin1.clnrm.toml", "not UTF-8"),
        ("nul.clnrm.toml", "invalid TOML"),
        ("huge_int.clnrm.toml", "invalid TOML"),
        ("huge_values.clnrm.toml", "must be from"),
        ("empty.clnrm.toml", "no [[steps]]"),
        ("long_line.clnrm.toml", "ok"),
        ("bom.clnrm.toml", "ok"),
    ]
}

#[test]
fn hostile_test_files_never_hang_panic_or_ramble() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases = corpus(d);
    for (name, fragment) in &cases {
        let what = format!("validate {name}");
        let ended = bounded(cleanroom(d, &["validate", name]), &what);
        let code = if *fragment == "ok" { 0 } else { 1 };
        check(&ended, &what, &[code], name, fragment);
        validate_stderr_is_one_line_per_problem(&ended, &what);

        let what = format!("test {name}");
        let ended = bounded(cleanroom(d, &["test", "--backend", "local", name]), &what);
        let code = if *fragment == "ok" { 0 } else { 1 };
        check(
            &ended,
            &what,
            &[code],
            name,
            fragment.trim_start_matches("ok"),
        );
    }

    // A symlink loop given by name is a bad path (125); found in a
    // directory it is a test file that cannot be read (1).
    let ended = bounded(
        cleanroom(d, &["validate", "loop.clnrm.toml"]),
        "validate loop",
    );
    check(
        &ended,
        "validate loop",
        &[125],
        "loop.clnrm.toml",
        "symbolic links",
    );

    // The whole directory: every case found, reported, none hangs.
    let ended = bounded(cleanroom(d, &["validate", "."]), "validate .");
    check(
        &ended,
        "validate .",
        &[1],
        "loop.clnrm.toml",
        "symlink loop",
    );
    validate_stderr_is_one_line_per_problem(&ended, "validate .");
    let ended = bounded(cleanroom(d, &["test", "--backend", "local", "."]), "test .");
    check(&ended, "test .", &[1], "fifo.clnrm.toml", "FIFO");
}

#[test]
fn hostile_config_files_are_refused_in_one_line() {
    type Make = fn(&Path);
    let cases: [(&str, Make, &str); 5] = [
        ("fifo", |p| mkfifo(p), "FIFO"),
        (
            "dev-zero",
            |p| std::os::unix::fs::symlink("/dev/zero", p).unwrap(),
            "character device",
        ),
        (
            "directory",
            |p| std::fs::create_dir(p).unwrap(),
            "directory",
        ),
        (
            "loop",
            |p| std::os::unix::fs::symlink(p, p).unwrap(),
            "symlink loop",
        ),
        (
            "deep",
            |p| {
                std::fs::write(
                    p,
                    format!("x = {}{}\n", "[".repeat(100_000), "]".repeat(100_000)),
                )
                .unwrap()
            },
            "invalid TOML",
        ),
    ];
    for (what, make, fragment) in cases {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        make(&d.join("cleanroom.toml"));
        write(d, "t.clnrm.toml", STEP);
        for args in [&["test", "--backend", "local"][..], &["config"][..]] {
            let label = format!("{what} cleanroom.toml, {}", args[0]);
            let ended = bounded(cleanroom(d, args), &label);
            check(&ended, &label, &[125], "cleanroom.toml", fragment);
            assert_eq!(
                ended.stderr.lines().count(),
                1,
                "{label}: one line\n{}",
                ended.stderr
            );
        }
    }
}

#[test]
fn the_runner_answers_sigterm_while_a_test_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "slow.clnrm.toml",
        "[[steps]]\nname = \"sleeps\"\ncommand = [\"sleep\", \"60\"]\n",
    );
    mkfifo(&d.join("fifo.clnrm.toml"));
    let child = cleanroom(d, &["test", "--backend", "local", "-j", "2", "."]);
    // Let it start the slow test (and meet the FIFO) before asking it to stop.
    std::thread::sleep(Duration::from_secs(2));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let ended = bounded(child, "test . then SIGTERM");
    assert!(
        matches!(ended.code, Some(130) | Some(143)),
        "exit {:?}\n{}{}",
        ended.code,
        ended.stdout,
        ended.stderr
    );
    assert!(!ended.stderr.contains("panicked"), "{}", ended.stderr);
}
