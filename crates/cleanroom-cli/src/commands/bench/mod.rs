//! `cleanroom bench`: start-up cost of a backend beside its anchor, in one run.
//!
//! Every number is a median over repeated runs measured here and now, next
//! to the anchor measured the same way in the same run (bubblewrap for
//! native and local, `docker run --rm` / `podman run --rm` for the engines),
//! so the ratio means something on any machine. Nothing here is a pass/fail
//! test: targets are for people to read.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cleanroom::bridge::wait;
use cleanroom::{backend_for, Backend, BackendChoice, Cmd, Error, Result, RootFs, SandboxSpec};
use serde::Serialize;

use crate::cli::BenchArgs;
use crate::output;

/// One line of the report.
#[derive(Debug, Serialize)]
struct Row {
    what: String,
    /// Median in milliseconds (or the unit in `unit`).
    median: f64,
    unit: &'static str,
    /// The anchor's median beside it, when there is one.
    anchor: Option<String>,
    anchor_median: Option<f64>,
    /// ours / anchor: below 1.0 is faster than the anchor.
    ratio: Option<f64>,
    target: Option<&'static str>,
}

pub fn main(args: BenchArgs) -> Result<ExitCode> {
    let choice = BackendChoice::parse(&args.backend, "--backend")?;
    if choice == BackendChoice::Auto {
        return Err(Error::Config {
            origin: "flag --backend".into(),
            message: "name one backend to measure (native, podman, docker, local)".into(),
        });
    }
    let backend = backend_for(choice, Some(&args.image))?;
    let available = wait(backend.availability());
    if !available.available {
        return Err(Error::Unavailable {
            backend: choice.to_string(),
            reason: available.reason,
            hint: available.hint,
        });
    }
    let engine = matches!(choice, BackendChoice::Docker | BackendChoice::Podman);
    let rootfs_dir = if engine {
        None
    } else {
        Some(busybox_rootfs()?)
    };
    let spec = SandboxSpec {
        rootfs: match &rootfs_dir {
            Some(d) => RootFs::Dir(d.path().to_path_buf()),
            None => RootFs::Image(args.image.clone()),
        },
        memory: Some(256 << 20),
        ..SandboxSpec::default()
    };
    let runs = args.runs.max(3);
    eprintln!(
        "benchmarking the {choice} backend: {runs} runs each, medians (rootfs {})",
        spec.rootfs
    );
    let mut rows = Vec::new();

    // 1. One-shot `true` in a fresh sandbox, beside the anchor, taking
    // turns: drift on the machine then hits every contender alike.
    // Like for like: bubblewrap sets no cgroup limit, so ours also runs
    // without one.
    let unlimited = SandboxSpec {
        memory: None,
        ..spec.clone()
    };
    let bwrap = which("bwrap");
    let anchor_name = match &rootfs_dir {
        Some(_) => "bwrap --unshare-all".to_string(),
        None => format!("{} run --rm", choice.as_str()),
    };
    let anchor_cmd = || -> std::result::Result<Command, String> {
        match &rootfs_dir {
            Some(d) => bwrap_command(bwrap.as_deref(), d.path()),
            None => engine_command(choice, &args.image),
        }
    };
    // With a cgroup v1 limit the kernel makes each sandbox's move into its
    // cgroup wait for an RCU grace period, unless another move happened
    // just before (cgroup v2 needs no move: the init is created in its
    // cgroup). So the limited run is measured twice: alone (it follows the
    // unlimited run and the anchor) and right after another limited run,
    // as sandboxes started in quick succession are.
    let library = [
        Contender::Burst(&spec),
        Contender::Library(&unlimited),
        Contender::Process(Box::new(anchor_cmd)),
        Contender::Library(&spec),
    ];
    let mut medians = wait(rounds(&backend, &library, runs))?.into_iter();
    let mut next = || medians.next().unwrap_or_else(|| Err("not measured".into()));
    let (burst, ours_unlimited, anchor, ours) = (next(), next(), next(), next());
    let (ours, ours_unlimited, burst) = (
        ours.map_err(bench_error)?,
        ours_unlimited.map_err(bench_error)?,
        burst.map_err(bench_error)?,
    );
    let anchor = anchor.map(|m| (anchor_name.clone(), m));
    rows.push(with_anchor(
        "one-shot `true`, no memory limit (library call)",
        ours_unlimited,
        anchor.as_ref().ok(),
        Some("ratio <= 1.0"),
    ));
    rows.push(with_anchor(
        "one-shot `true`, 256 MiB limit, alone (library call)",
        ours,
        anchor.as_ref().ok(),
        Some("ratio <= 1.0"),
    ));
    rows.push(with_anchor(
        "one-shot `true`, 256 MiB limit, right after another",
        burst,
        anchor.as_ref().ok(),
        Some("ratio <= 1.0"),
    ));
    if engine {
        let image = args.image.clone();
        let pooled: Arc<dyn Backend> = match choice {
            BackendChoice::Docker => {
                Arc::new(cleanroom::DockerBackend::new(image).with_warm_pool(2))
            }
            _ => Arc::new(cleanroom::PodmanBackend::new(image).with_warm_pool(2)),
        };
        let warm_pool = wait(one_shots(&pooled, &spec, runs))?;
        rows.push(with_anchor(
            "one-shot `true` with a warm pool of 2",
            warm_pool,
            anchor.as_ref().ok(),
            None,
        ));
        // Dropping the pool inside the runtime lets it remove its spare containers.
        wait(async move {
            let _ = pooled.remove_session().await;
            drop(pooled);
        });
    }
    // The same through the `cleanroom` binary, a process per run.
    let exe = std::env::current_exe().map_err(|e| Error::io("finding the cleanroom binary", e))?;
    let processes = [
        Contender::Process(Box::new(|| Ok(cli_command(&exe, choice, &spec)))),
        Contender::Process(Box::new(|| Ok(cli_command(&exe, choice, &unlimited)))),
        Contender::Process(Box::new(anchor_cmd)),
    ];
    let mut medians = wait(rounds(&backend, &processes, runs))?.into_iter();
    let mut next = || medians.next().unwrap_or_else(|| Err("not measured".into()));
    let (cli, cli_unlimited, cli_anchor) = (next(), next(), next());
    let cli = cli.map_err(|e| Error::backend(choice.as_str(), e))?;
    let cli_unlimited = cli_unlimited.map_err(|e| Error::backend(choice.as_str(), e))?;
    let cli_anchor = cli_anchor.map(|m| (anchor_name.clone(), m));
    rows.push(with_anchor(
        "one-shot `true` (`cleanroom run` process)",
        cli,
        cli_anchor.as_ref().ok(),
        None,
    ));
    rows.push(with_anchor(
        "one-shot `true`, no memory limit (`cleanroom run` process)",
        cli_unlimited,
        cli_anchor.as_ref().ok(),
        None,
    ));
    if let Err(why) = &anchor {
        eprintln!("anchor not measured: {why}");
    }

    // 2. Exec into a warm sandbox.
    let warm = wait(warm_execs(&backend, &spec, runs))?;
    rows.push(plain(
        "exec `true` into a warm sandbox",
        warm,
        "ms",
        Some("< 1 ms"),
    ));

    // 3. Throughput with two at a time (this machine has two cores).
    let per_sec = wait(throughput(backend.clone(), &spec, runs * 2, 2))?;
    rows.push(plain(
        "sandboxes per second (2 at a time)",
        per_sec,
        "1/s",
        None,
    ));

    // 4. Idle memory of long-lived sandboxes, where their processes are ours to see.
    if !engine {
        match wait(idle_memory(&backend, &spec, 8))? {
            Some(kib) => rows.push(plain(
                "idle memory per long-lived sandbox (PSS)",
                kib / 1024.0,
                "MiB",
                Some("< 2 MiB"),
            )),
            None => eprintln!(
                "idle memory not measured: the sandbox's processes are not dumpable, so only root may read their memory maps"
            ),
        }
    }

    // The targets are the native backend's (issue: faster than bubblewrap).
    if choice != BackendChoice::Native {
        for r in &mut rows {
            r.target = None;
        }
    }
    if args.json {
        output::json(&rows)?;
    } else {
        print_rows(&rows);
    }
    Ok(ExitCode::SUCCESS)
}

fn with_anchor(
    what: &str,
    ours: f64,
    anchor: Option<&(String, f64)>,
    target: Option<&'static str>,
) -> Row {
    Row {
        what: what.into(),
        median: ours,
        unit: "ms",
        anchor: anchor.map(|a| a.0.clone()),
        anchor_median: anchor.map(|a| a.1),
        ratio: anchor.map(|a| ours / a.1),
        target,
    }
}

fn plain(what: &str, median: f64, unit: &'static str, target: Option<&'static str>) -> Row {
    Row {
        what: what.into(),
        median,
        unit,
        anchor: None,
        anchor_median: None,
        ratio: None,
        target,
    }
}

fn print_rows(rows: &[Row]) {
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.what.clone(),
                format!("{:.2} {}", r.median, r.unit),
                match (&r.anchor, r.anchor_median) {
                    (Some(a), Some(m)) => format!("{a}: {m:.2} ms"),
                    _ => "-".into(),
                },
                r.ratio.map(|x| format!("{x:.2}")).unwrap_or("-".into()),
                r.target.unwrap_or("").to_string(),
            ]
        })
        .collect();
    output::table(
        &[
            "MEASURE",
            "OURS (median)",
            "ANCHOR (median)",
            "RATIO",
            "TARGET",
        ],
        &table,
    );
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn check(r: &cleanroom::RunResult, what: &str) -> Result<()> {
    if r.success() {
        Ok(())
    } else {
        Err(Error::backend(
            r.backend.clone(),
            format!(
                "{what} failed during the benchmark: {}; stderr: {}",
                r.status_line(),
                r.stderr_lossy().trim()
            ),
        ))
    }
}

/// One checked one-shot `true` through `backend`; its time in ms.
async fn time_true(backend: &Arc<dyn Backend>, spec: &SandboxSpec) -> Result<f64> {
    let start = Instant::now();
    let r = backend.run(spec, Cmd::new("true")).await?;
    let took = ms(start.elapsed());
    check(&r, "`true`")?;
    Ok(took)
}

async fn one_shots(backend: &Arc<dyn Backend>, spec: &SandboxSpec, runs: usize) -> Result<f64> {
    // One unmeasured run warms caches (a tarball unpack, an image lookup).
    time_true(backend, spec).await?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        times.push(time_true(backend, spec).await?);
    }
    Ok(median(times))
}

async fn warm_execs(backend: &Arc<dyn Backend>, spec: &SandboxSpec, runs: usize) -> Result<f64> {
    let sandbox = backend.create(spec, None).await?;
    check(&sandbox.exec(Cmd::new("true")).await?, "exec `true`")?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let r = sandbox.exec(Cmd::new("true")).await?;
        times.push(ms(t.elapsed()));
        check(&r, "exec `true`")?;
    }
    sandbox.remove().await?;
    Ok(median(times))
}

async fn throughput(
    backend: Arc<dyn Backend>,
    spec: &SandboxSpec,
    total: usize,
    parallel: usize,
) -> Result<f64> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..parallel {
        let backend = backend.clone();
        let spec = spec.clone();
        let share = total / parallel + usize::from(worker < total % parallel);
        tasks.push(tokio::spawn(async move {
            for _ in 0..share {
                check(&backend.run(&spec, Cmd::new("true")).await?, "`true`")?;
            }
            Ok::<(), Error>(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| Error::backend("bench", format!("a worker panicked: {e}")))??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Proportional set size, in KiB, of every process below this one that was
/// not there before the sandboxes were created.
async fn idle_memory(
    backend: &Arc<dyn Backend>,
    spec: &SandboxSpec,
    count: usize,
) -> Result<Option<f64>> {
    let before = descendants(std::process::id());
    let mut sandboxes = Vec::new();
    for _ in 0..count {
        sandboxes.push(backend.create(spec, None).await?);
    }
    // Let every sandbox settle into its idle state.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A sandbox's first child and its init share one address space
    // (clone with CLONE_VM): count each address space once.
    let mut counted: Vec<u32> = Vec::new();
    let mut total: u64 = 0;
    let mut unreadable = false;
    for pid in descendants(std::process::id()) {
        if before.contains(&pid) {
            continue;
        }
        if counted
            .iter()
            .any(|&c| cleanroom::native::clone::shares_memory(c, pid) == Some(true))
        {
            continue;
        }
        counted.push(pid);
        match pss_kib(pid) {
            Some(kib) => total += kib,
            None => unreadable = true,
        }
    }
    for s in sandboxes {
        s.remove().await?;
    }
    Ok((!unreadable).then(|| total as f64 / count as f64))
}

fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ppid) = ppid(pid) {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: parse after the last `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `None` when the maps are not ours to read (a non-dumpable process, as
/// a sandbox's init is, seen by an unprivileged user).
fn pss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
}

/// One way to run a one-shot `true`, timed once per round.
enum Contender<'a> {
    /// A `Backend::run` call in this process.
    Library(&'a SandboxSpec),
    /// Two `Backend::run` calls back to back; the second is timed.
    Burst(&'a SandboxSpec),
    /// A process run to completion (the anchor, or the `cleanroom` CLI).
    Process(Box<dyn Fn() -> std::result::Result<Command, String> + Send + Sync + 'a>),
}

/// Runs every contender once per round for `runs` rounds, after one
/// unmeasured round that warms caches (a tarball unpack, an image lookup,
/// the page cache). A process contender that fails drops out with its
/// error; a library one ends the benchmark. Medians in milliseconds.
async fn rounds(
    backend: &Arc<dyn Backend>,
    contenders: &[Contender<'_>],
    runs: usize,
) -> Result<Vec<std::result::Result<f64, String>>> {
    let mut times: Vec<std::result::Result<Vec<f64>, String>> = contenders
        .iter()
        .map(|_| Ok(Vec::with_capacity(runs)))
        .collect();
    for round in 0..=runs {
        for (contender, slot) in contenders.iter().zip(times.iter_mut()) {
            if slot.is_err() {
                continue;
            }
            let took = match contender {
                Contender::Burst(spec) => {
                    time_true(backend, spec).await?;
                    time_true(backend, spec).await?
                }
                Contender::Library(spec) => time_true(backend, spec).await?,
                Contender::Process(make) => match make().and_then(|mut c| time_once(&mut c)) {
                    Ok(took) => took,
                    Err(e) => {
                        *slot = Err(e);
                        continue;
                    }
                },
            };
            if let (Ok(list), true) = (slot.as_mut(), round > 0) {
                list.push(took);
            }
        }
    }
    Ok(times.into_iter().map(|t| t.map(median)).collect())
}

fn bench_error(e: String) -> Error {
    Error::backend("bench", e)
}

/// Runs `c` once to completion with no input or output; its wall time in ms.
fn time_once(c: &mut Command) -> std::result::Result<f64, String> {
    let start = Instant::now();
    let out = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{:?}: {e}", c.get_program()))?;
    let took = ms(start.elapsed());
    if out.status.success() {
        Ok(took)
    } else {
        Err(format!(
            "{:?} failed: {}",
            c.get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The anchor: `bwrap --unshare-all --ro-bind ROOTFS / --proc /proc
/// --dev /dev /bin/true`.
fn bwrap_command(bwrap: Option<&Path>, rootfs: &Path) -> std::result::Result<Command, String> {
    let bwrap = bwrap.ok_or("bwrap is not installed (apt-get install bubblewrap)")?;
    let mut c = Command::new(bwrap);
    c.args(["--unshare-all", "--ro-bind"]).arg(rootfs).args([
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "/bin/true",
    ]);
    Ok(c)
}

/// `docker run --rm --network none IMAGE true` (or podman's).
fn engine_command(choice: BackendChoice, image: &str) -> std::result::Result<Command, String> {
    let cli = choice.as_str();
    let bin = which(cli).ok_or(format!("the {cli} CLI is not installed"))?;
    let mut c = Command::new(bin);
    c.args(["run", "--rm", "--network", "none", image, "true"]);
    Ok(c)
}

/// The same one-shot through the `cleanroom` binary, as a user runs it.
fn cli_command(exe: &Path, choice: BackendChoice, spec: &SandboxSpec) -> Command {
    let mut c = Command::new(exe);
    c.args(["run", "-q", "--backend", choice.as_str()]);
    if let Some(bytes) = spec.memory {
        c.arg("--memory").arg(format!("{}M", bytes >> 20));
    }
    c.arg("--image")
        .arg(spec.rootfs.to_string())
        .args(["--", "true"]);
    c
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// A minimal rootfs of busybox and its applet links, in a temporary directory.
fn busybox_rootfs() -> Result<tempfile::TempDir> {
    let busybox = which("busybox").ok_or_else(|| Error::Config {
        origin: "cleanroom bench".into(),
        message: "busybox is not installed; install busybox-static (scripts/bench does)".into(),
    })?;
    let dir = tempfile::Builder::new()
        .prefix("cleanroom-bench-rootfs-")
        .tempdir()
        .map_err(|e| Error::io("creating the benchmark rootfs", e))?;
    let io = |what: &str, e| Error::io(format!("building the benchmark rootfs: {what}"), e);
    for d in ["bin", "etc", "tmp", "proc", "dev", "workdir"] {
        std::fs::create_dir_all(dir.path().join(d)).map_err(|e| io(d, e))?;
    }
    std::fs::copy(&busybox, dir.path().join("bin/busybox")).map_err(|e| io("busybox", e))?;
    let list = Command::new(&busybox)
        .arg("--list")
        .output()
        .map_err(|e| io("busybox --list", e))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = dir.path().join("bin").join(applet.trim());
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link).map_err(|e| io(applet, e))?;
        }
    }
    std::fs::write(
        dir.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/workdir:/bin/sh\n",
    )
    .map_err(|e| io("etc/passwd", e))?;
    std::fs::write(dir.path().join("etc/group"), "root:x:0:\nuser:x:1000:\n")
        .map_err(|e| io("etc/group", e))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn descendants_include_grandchildren() {
        let mut child = Command::new("sh")
            .args(["-c", "sleep 5 & wait"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let d = descendants(std::process::id());
        assert!(d.contains(&child.id()), "{d:?}");
        assert!(d.len() >= 2, "the sleep below sh is missing: {d:?}");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
