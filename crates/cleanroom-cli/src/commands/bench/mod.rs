//! `cleanroom bench`: start-up cost of a backend beside its anchor, in one run.
//!
//! Every number is a median over repeated runs measured here and now, next
//! to the anchor measured the same way in the same run (bubblewrap for
//! native and local, `docker run --rm` / `podman run --rm` for the engines),
//! so the ratio means something on any machine. Nothing here is a pass/fail
//! test: targets are for people to read.

mod anchors;
mod measure;
mod memory;
mod named;

use std::process::{Command, ExitCode};
use std::sync::Arc;

use cleanroom::bridge::wait;
use cleanroom::{backend_for, Backend, BackendChoice, Error, Result, RootFs, SandboxSpec};
use serde::Serialize;

use crate::cli::BenchArgs;
use crate::output;

use anchors::{busybox_rootfs, bwrap_command, bwrap_version, cli_command, engine_command, which};
use measure::{
    bench_error, one_shots, rounds, throughput, warm_execs, warm_pool_rounds, Contender,
};
use memory::idle_memory;

/// How a row's numbers were taken.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    /// A `Backend` call in this process; its anchor is a process this one
    /// spawns, timed from spawn to exit.
    Library,
    /// A whole process (`cleanroom ...`) timed from spawn to exit, its
    /// anchor the same way, by the same code.
    Process,
    /// No anchor: a number of ours alone.
    Ours,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Library => "library",
            Kind::Process => "process",
            Kind::Ours => "-",
        }
    }
}

/// One line of the report.
#[derive(Debug, Serialize)]
struct Row {
    what: String,
    kind: Kind,
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
        "benchmarking the {choice} backend: {runs} runs each, medians (rootfs {}; this binary {})",
        spec.rootfs,
        linkage()
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
    let engine_cli = engine.then(|| choice.as_str());
    let mut medians = wait(rounds(&backend, engine_cli, &library, runs))?.into_iter();
    let mut next = || medians.next().unwrap_or_else(|| Err("not measured".into()));
    let (burst, ours_unlimited, anchor, ours) = (next(), next(), next(), next());
    let (ours, ours_unlimited, burst) = (
        ours.map_err(bench_error)?,
        ours_unlimited.map_err(bench_error)?,
        burst.map_err(bench_error)?,
    );
    let anchor = anchor.map(|m| (anchor_name.clone(), m));
    rows.push(with_anchor(
        "one-shot `true`, no memory limit",
        Kind::Library,
        ours_unlimited,
        anchor.as_ref().ok(),
        Some("ratio <= 1.0"),
    ));
    rows.push(with_anchor(
        "one-shot `true`, 256 MiB limit, alone",
        Kind::Library,
        ours,
        anchor.as_ref().ok(),
        Some("ratio <= 1.0"),
    ));
    rows.push(with_anchor(
        "one-shot `true`, 256 MiB limit, right after another",
        Kind::Library,
        burst,
        anchor.as_ref().ok(),
        Some("ratio <= 1.0"),
    ));
    if engine {
        let image = args.image.clone();
        let pooled = match choice {
            BackendChoice::Docker => cleanroom::DockerBackend::new(image),
            _ => cleanroom::PodmanBackend::new(image),
        }
        .with_warm_pool(2);
        // Beside its own anchor, taking turns, each run with the pool full
        // (the case a pool is for); back to back, runs outpace the refill.
        let warm = wait(warm_pool_rounds(
            &pooled,
            &spec,
            choice.as_str(),
            &anchor_cmd,
            runs,
        ));
        let (warm_pool, warm_anchor) = warm?;
        let warm_anchor = warm_anchor.map(|m| (anchor_name.clone(), m));
        rows.push(with_anchor(
            "one-shot `true` with a warm pool of 2, pool full",
            Kind::Library,
            warm_pool,
            warm_anchor.as_ref().ok(),
            Some("ratio <= 0.25"),
        ));
        let pooled: Arc<dyn Backend> = Arc::new(pooled);
        let back_to_back = wait(one_shots(&pooled, &spec, runs))?;
        rows.push(with_anchor(
            "one-shot `true` with a warm pool of 2, back to back",
            Kind::Library,
            back_to_back,
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
    let mut processes = vec![
        Contender::Process(Box::new(|| Ok(cli_command(&exe, choice, &spec)))),
        Contender::Process(Box::new(|| Ok(cli_command(&exe, choice, &unlimited)))),
        Contender::Process(Box::new(anchor_cmd)),
    ];
    // Start-up alone: `cleanroom --version` beside `bwrap --version`.
    if rootfs_dir.is_some() {
        processes.push(Contender::Process(Box::new(|| {
            let mut c = Command::new(&exe);
            c.arg("--version");
            Ok(c)
        })));
        processes.push(Contender::Process(Box::new(|| {
            bwrap_version(bwrap.as_deref())
        })));
    }
    // A process contender may exit while part of it still runs: a
    // `cleanroom run`'s first child unmapping its copy of the process,
    // bubblewrap's init of its pid namespace. Orphans are re-parented to
    // the nearest subreaper: as theirs, this process sees them among its
    // descendants, reaps them, and starts the next contender only once they
    // are gone, whichever side left them. Only for these rows: a named
    // sandbox's supervisor, adopted, would stay a descendant for its life.
    let me = rustix::process::getpid();
    let adopting = rustix::process::set_child_subreaper(Some(me)).is_ok();
    let medians = wait(rounds(&backend, engine_cli, &processes, runs));
    if adopting {
        let _ = rustix::process::set_child_subreaper(None);
    }
    let mut medians = medians?.into_iter();
    let mut next = || medians.next().unwrap_or_else(|| Err("not measured".into()));
    let (cli, cli_unlimited, cli_anchor) = (next(), next(), next());
    let (version, version_anchor) = (next(), next());
    let cli = cli.map_err(|e| Error::backend(choice.as_str(), e))?;
    let cli_unlimited = cli_unlimited.map_err(|e| Error::backend(choice.as_str(), e))?;
    let cli_anchor = cli_anchor.map(|m| (anchor_name.clone(), m));
    rows.push(with_anchor(
        "one-shot `true`, 256 MiB limit (`cleanroom run`)",
        Kind::Process,
        cli,
        cli_anchor.as_ref().ok(),
        Some("ratio <= 1.1"),
    ));
    rows.push(with_anchor(
        "one-shot `true`, no memory limit (`cleanroom run`)",
        Kind::Process,
        cli_unlimited,
        cli_anchor.as_ref().ok(),
        Some("ratio <= 1.0"),
    ));
    if let (Ok(ours), Ok(anchor)) = (version, version_anchor) {
        rows.push(with_anchor(
            "`cleanroom --version`",
            Kind::Process,
            ours,
            Some(&("bwrap --version".to_string(), anchor)),
            Some("ratio <= 1.0"),
        ));
    }
    if let Err(why) = &anchor {
        eprintln!("anchor not measured: {why}");
        if engine {
            // Our backend talks to the engine's API with its own settings;
            // the anchor is the engine's CLI as configured on this machine.
            eprintln!(
                "hint: the anchor is `{} run --rm {} true` with the CLI's own configuration; make that \
                 command work first (on machines without CAP_SYS_RESOURCE or with hybrid cgroups, \
                 podman needs CONTAINERS_CONF pointing at settings like scripts/podman/containers.conf)",
                choice.as_str(),
                args.image
            );
        }
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

    // 5. Exec into a named sandbox as a process, beside a one-shot anchor
    // and `docker exec`.
    let named_rows = wait(named::rows(
        choice,
        &backend,
        &spec,
        &args.image,
        &exe,
        rootfs_dir.as_ref().map(|d| d.path()),
        runs,
    ));

    // The targets without an anchor (exec, idle memory) are the native
    // backend's; every backend's one-shots are held to their anchor.
    if choice != BackendChoice::Native {
        for r in rows.iter_mut().filter(|r| r.anchor.is_none()) {
            r.target = None;
        }
    }
    match named_rows {
        Ok(named) => rows.extend(named),
        Err(e) => eprintln!("exec into a named sandbox not measured: {e}"),
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
    kind: Kind,
    ours: f64,
    anchor: Option<&(String, f64)>,
    target: Option<&'static str>,
) -> Row {
    Row {
        what: what.into(),
        kind,
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
        kind: Kind::Ours,
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
                r.kind.as_str().to_string(),
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
            "TIMED AS",
            "OURS (median)",
            "ANCHOR (median)",
            "RATIO",
            "TARGET",
        ],
        &table,
    );
    eprintln!(
        "library: a call in this process, its anchor a process this one spawns; \
         process: a whole process timed from spawn to exit, its anchor the same way"
    );
}

/// How this binary was linked, for the header: the process rows time it
/// (`scripts/build-release` links it statically; `cargo build` does not).
fn linkage() -> &'static str {
    if cfg!(target_feature = "crt-static") {
        "linked statically, as scripts/build-release builds it"
    } else {
        "linked dynamically; scripts/build-release builds the static one we ship"
    }
}
