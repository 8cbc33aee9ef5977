//! Fault injection (issue 12): SIGKILL the `cleanroom` binary at random
//! points of `run` (native with limits, docker, podman) and of `test` with
//! a service (native with limits, docker, podman), 20 times each; afterwards nothing of ours
//! remains — no process, cgroup, container, mount or temporary directory —
//! without anyone running `gc`.
//!
//! Dead callers' leftovers are cleaned up by the engines (a container's
//! keep-alive ends with its owner and auto-removal follows) and by the next
//! caller's start (empty cgroup directories, containers of callers killed
//! between the engine's create and start). So each section waits a bounded
//! time for the engines, checks that nothing runs, then starts one more
//! caller normally and checks that nothing at all is left.
//!
//! Only what the killed processes made is judged (by their pids and a
//! marker in their commands), so other tests may run meanwhile. Set
//! `CLEANROOM_FAULT_SEED` to replay a run's random delays.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const KILLS: usize = 20;
const IMAGE: &str = "cleanroom-busybox:latest";
/// How long the engines get to remove a dead caller's containers.
const ENGINE_GRACE: Duration = Duration::from_secs(30);

/// A small xorshift generator: the delays need no more, and the seed is
/// printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("CLEANROOM_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
                    | 1
            });
        eprintln!("fault injection: CLEANROOM_FAULT_SEED={seed}");
        Rng(seed)
    }

    /// Uniform in `[0, max)`.
    fn below(&mut self, max: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let nanos = max.as_nanos().max(1) as u64;
        Duration::from_nanos(self.0 % nanos)
    }
}

/// One way of calling the binary, and what it may leave behind. To add one
/// (an `import`, a run from a `tar://` rootfs), add it to [`SECTIONS`] and
/// its arguments to [`Env::new`]; the checks of the store (`tmp/` empty, no
/// `.unpacking-*` left) and of TMPDIR already run for every section.
struct Section {
    name: &'static str,
    /// `run` or `test`.
    verb: &'static str,
    backend: &'static str,
    extra: &'static [&'static str],
    /// The engine whose containers it makes, if any.
    engine: Option<&'static str>,
    /// Whether it makes cgroups (native with limits).
    cgroups: bool,
}

const LIMITS: &[&str] = &["--memory", "64m", "--pids", "64"];
const ENGINE_IMAGE: &[&str] = &["--image", IMAGE];

const SECTIONS: [Section; 6] = [
    Section {
        name: "run-native",
        verb: "run",
        backend: "native",
        extra: LIMITS,
        engine: None,
        cgroups: true,
    },
    Section {
        name: "run-docker",
        verb: "run",
        backend: "docker",
        extra: ENGINE_IMAGE,
        engine: Some("docker"),
        cgroups: false,
    },
    Section {
        name: "run-podman",
        verb: "run",
        backend: "podman",
        extra: ENGINE_IMAGE,
        engine: Some("podman"),
        cgroups: false,
    },
    Section {
        name: "test-service-native",
        verb: "test",
        backend: "native",
        extra: LIMITS,
        engine: None,
        cgroups: true,
    },
    Section {
        name: "test-service-docker",
        verb: "test",
        backend: "docker",
        extra: ENGINE_IMAGE,
        engine: Some("docker"),
        cgroups: false,
    },
    Section {
        name: "test-service-podman",
        verb: "test",
        backend: "podman",
        extra: ENGINE_IMAGE,
        engine: Some("podman"),
        cgroups: false,
    },
];

/// What every call of one section shares.
struct Env {
    root: PathBuf,
    home: PathBuf,
    tmp: PathBuf,
    /// Digits unique to this section, found in its sandboxes' command lines.
    marker: String,
    args: Vec<String>,
}

impl Env {
    fn new(index: usize, section: &Section) -> Env {
        let root = std::env::temp_dir().join(format!(
            "cleanroom-fault-{}-{}",
            std::process::id(),
            section.name
        ));
        let _ = std::fs::remove_dir_all(&root);
        let (home, tmp) = (root.join("home"), root.join("tmp"));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&tmp).unwrap();
        let marker = format!("{}{index}", 1000 + std::process::id() % 8999);
        let mut args: Vec<String> = [section.verb, "--backend", section.backend]
            .iter()
            .chain(section.extra)
            .map(|s| s.to_string())
            .collect();
        match section.verb {
            "run" => {
                args.extend(["-q", "--", "sh", "-c"].map(String::from));
                args.push(format!("sleep 0.{marker}"));
            }
            _ => args.push(test_file(&root, &marker).display().to_string()),
        }
        Env {
            root,
            home,
            tmp,
            marker,
            args,
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cleanroom"));
        c.args(&self.args)
            .env("CLEANROOM_HOME", &self.home)
            .env("TMPDIR", &self.tmp)
            .env("CONTAINERS_CONF", podman_conf())
            .env_remove("CLEANROOM_BACKEND")
            .env_remove("CLEANROOM_IMAGE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }
}

fn podman_conf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/podman/containers.conf")
}

/// A test file with a service; the service and the step run a marked
/// `sleep` so that their processes can be found.
fn test_file(dir: &Path, marker: &str) -> PathBuf {
    let file = dir.join("fault.clnrm.toml");
    std::fs::write(
        &file,
        format!(
            r#"[test.metadata]
name = "fault injection"

[services.svc]
type = "generic_container"
command = ["sh", "-c", "echo svc is up; exec sleep 3{marker}"]
wait_for = {{ log = "is up", timeout = "30s" }}

[[steps]]
name = "a step that takes a moment"
command = ["sh", "-c", "sleep 0.{marker}"]
"#
        ),
    )
    .unwrap();
    file
}

/// Runs `cmd` to its end and fails with its stderr if it does not succeed.
fn run_ok(mut cmd: Command, what: &str) -> Duration {
    let started = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// Processes running a command of the test's (`sleep 0.MARKER` or
/// `sleep 3MARKER`), as `pid cmdline`: the marker as it stands in the
/// commands, not any number that contains it (engines name containers and
/// cgroups with long hex and decimal ids).
fn marked_processes(marker: &str) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-a", "-f", &format!("sleep (0\\.|3){marker}")])
        .output()
        .unwrap_or_else(|e| panic!("running pgrep: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Cgroup directories below /sys/fs/cgroup named for one of `pids`.
fn cgroups_of(pids: &[u32]) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, prefixes: &[String], out: &mut Vec<PathBuf>) {
        if depth > 12 {
            return;
        }
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if prefixes.iter().any(|p| name.starts_with(p.as_str())) {
                out.push(e.path());
            } else {
                walk(&e.path(), depth + 1, prefixes, out);
            }
        }
    }
    let prefixes: Vec<String> = pids.iter().map(|p| format!("cleanroom-{p}-")).collect();
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), 0, &prefixes, &mut out);
    out
}

/// Containers labelled with one of `pids`, as `id status labels`;
/// `running_only` leaves out those that never started.
fn containers_of(engine: &str, pids: &[u32], running_only: bool) -> Vec<String> {
    let out = Command::new(engine)
        .args([
            "ps",
            "-a",
            "--filter",
            "label=cleanroom.created-by=cleanroom",
            "--format",
            "{{.ID}} {{.Status}} {{.Labels}}",
        ])
        .env("CONTAINERS_CONF", podman_conf())
        .output()
        .unwrap_or_else(|e| panic!("running `{engine} ps`: {e}"));
    assert!(
        out.status.success(),
        "`{engine} ps` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| owner_pid(l).is_some_and(|p| pids.contains(&p)))
        // Podman says `Initialized` for a container whose start was cut short.
        .filter(|l| !running_only || !(l.contains(" Created") || l.contains(" Initialized")))
        .map(str::to_string)
        .collect()
}

/// The `cleanroom.pid` label in a `ps` line: Docker prints labels as
/// `k=v,k=v`, Podman as `map[k:v k:v]`.
fn owner_pid(line: &str) -> Option<u32> {
    let (_, rest) = line.split_once("cleanroom.pid")?;
    let digits: String = rest
        .chars()
        .skip(1)
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Mounts that mention `needle`.
fn mounts_with(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// The entries of `dir`.
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().display().to_string())
        .collect()
}

/// `.unpacking-*` entries anywhere below `dir`.
fn unpacking_below(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if e.file_name().to_string_lossy().starts_with(".unpacking-") {
            found.push(path.display().to_string());
        } else if e.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(unpacking_below(&path));
        }
    }
    found
}

/// Polls `check` until it is empty or `within` has passed; returns the last.
fn settle(within: Duration, mut check: impl FnMut() -> Vec<String>) -> Vec<String> {
    let started = Instant::now();
    loop {
        let left = check();
        if left.is_empty() || started.elapsed() > within {
            return left;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn kill_at_random_points(index: usize, section: &Section, rng: &mut Rng) -> Vec<String> {
    let env = Env::new(index, section);
    // One whole run first: it must work, and it measures the life to cover.
    let life = run_ok(
        env.command(),
        &format!("{}: a run to measure", section.name),
    );
    let mut pids = Vec::new();
    let mut killed_at = Vec::new();
    for _ in 0..KILLS {
        // Every other kill lands in the first 150 ms, where the sandbox is
        // being made (cgroups, engine create and start), the rest anywhere.
        let span = if pids.len() % 2 == 0 {
            life.mul_f64(1.2)
        } else {
            life.min(Duration::from_millis(150))
        };
        let delay = rng.below(span);
        let mut child: Child = env.command().spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL; it may have finished already
        let _ = child.wait();
        pids.push(child.id());
        killed_at.push(delay.as_millis());
    }
    eprintln!(
        "{}: life {} ms, killed at {killed_at:?} ms",
        section.name,
        life.as_millis()
    );

    let mut problems = Vec::new();
    let mut report = |what: &str, left: Vec<String>| {
        if !left.is_empty() {
            problems.push(format!("{}: {what}: {left:#?}", section.name));
        }
    };
    // Before any further start: the engines and the kernel clean up alone.
    report(
        "processes still running",
        settle(Duration::from_secs(10), || marked_processes(&env.marker)),
    );
    if let Some(engine) = section.engine {
        report(
            "containers that ran still there",
            settle(ENGINE_GRACE, || containers_of(engine, &pids, true)),
        );
    }
    eprintln!(
        "{}: before the next start: {} cgroup dir(s), {} unstarted container(s) of the killed callers",
        section.name,
        cgroups_of(&pids).len(),
        section
            .engine
            .map_or(0, |e| containers_of(e, &pids, false).len())
    );
    // The next start cleans up what only a caller can.
    run_ok(env.command(), &format!("{}: the next start", section.name));
    if let Some(engine) = section.engine {
        report(
            "containers left",
            settle(ENGINE_GRACE, || containers_of(engine, &pids, false)),
        );
    }
    if section.cgroups {
        report(
            "cgroups left",
            settle(Duration::from_secs(5), || {
                cgroups_of(&pids)
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect()
            }),
        );
    }
    report("processes left", marked_processes(&env.marker));
    report(
        "mounts left",
        mounts_with(&env.home.display().to_string())
            .into_iter()
            .chain(mounts_with(&env.tmp.display().to_string()))
            .collect(),
    );
    report("temporary files left in TMPDIR", entries(&env.tmp));
    report(
        "temporary files left in $CLEANROOM_HOME/tmp",
        entries(&env.home.join("tmp")),
    );
    report("half-done unpacks left", unpacking_below(&env.home));
    if problems.is_empty() {
        let _ = std::fs::remove_dir_all(&env.root);
    }
    problems
}

#[test]
fn sigkill_at_random_points_leaves_nothing_behind() {
    let mut rng = Rng::new();
    // `CLEANROOM_FAULT_SECTIONS=run-docker,test-service-native` runs some.
    let only = std::env::var("CLEANROOM_FAULT_SECTIONS").ok();
    let mut problems = Vec::new();
    for (index, section) in SECTIONS.iter().enumerate() {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|w| w.trim() == section.name))
        {
            continue;
        }
        let started = Instant::now();
        problems.extend(kill_at_random_points(index, section, &mut rng));
        eprintln!(
            "{}: {KILLS} kills checked in {:.1} s",
            section.name,
            started.elapsed().as_secs_f64()
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
