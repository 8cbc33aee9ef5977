//! Timing one-shot runs, execs and throughput: medians over repeated
//! runs, contenders taking turns round by round.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cleanroom::{Backend, Cmd, Error, Result, SandboxSpec};

pub(super) fn median(mut xs: Vec<f64>) -> f64 {
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

pub(super) fn ms(d: Duration) -> f64 {
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
pub(super) async fn time_true(backend: &Arc<dyn Backend>, spec: &SandboxSpec) -> Result<f64> {
    let start = Instant::now();
    let r = backend.run(spec, Cmd::new("true")).await?;
    let took = ms(start.elapsed());
    check(&r, "`true`")?;
    Ok(took)
}

pub(super) async fn one_shots(
    backend: &Arc<dyn Backend>,
    spec: &SandboxSpec,
    runs: usize,
) -> Result<f64> {
    // One unmeasured run warms caches (a tarball unpack, an image lookup).
    time_true(backend, spec).await?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        times.push(time_true(backend, spec).await?);
    }
    Ok(median(times))
}

pub(super) async fn warm_execs(
    backend: &Arc<dyn Backend>,
    spec: &SandboxSpec,
    runs: usize,
) -> Result<f64> {
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

pub(super) async fn throughput(
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

/// One way to run a one-shot `true`, timed once per round.
pub(super) enum Contender<'a> {
    /// A `Backend::run` call in this process.
    Library(&'a SandboxSpec),
    /// Two `Backend::run` calls back to back; the second is timed.
    Burst(&'a SandboxSpec),
    /// A process run to completion (the anchor, or the `cleanroom` CLI).
    Process(Box<dyn Fn() -> std::result::Result<Command, String> + Send + Sync + 'a>),
}

/// Lets the previous contender's background work end before the next one
/// is timed, without idling longer: a native sandbox's first child exits
/// (unmapping its copy of this process) and its cgroup is removed after
/// the run returns, and on two cores that slowed whatever came next. The
/// bwrap anchor measured 5.7 ms right after a library run but 3.5 ms after
/// a `cleanroom run` process, which waits for its own clean-ups before it
/// exits. Waits for the clean-ups, for every child process to be gone,
/// (but the native fork server, which lives as long as this process),
/// and, on an engine (`engine_cli`), for the containers of this process
/// and of `last_child` (labelled with their pid) to be removed: a one-shot
/// leaves its removal to the engine, as `docker run --rm` does not.
async fn settle(engine_cli: Option<&str>, last_child: Option<u32>) {
    let engine_cli = engine_cli.map(str::to_string);
    let _ = tokio::task::spawn_blocking(move || {
        cleanroom::bridge::drain(Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(5);
        let busy = || {
            super::memory::reap_zombie_children();
            // The fork server lives as long as this process.
            let server = cleanroom::native::fork_server::server_pid();
            super::memory::descendants(std::process::id())
                .into_iter()
                .any(|pid| Some(pid) != server)
                || engine_cli.as_deref().is_some_and(|cli| {
                    [Some(std::process::id()), last_child]
                        .into_iter()
                        .flatten()
                        .any(|pid| containers_labelled(cli, pid))
                })
        };
        while busy() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
    })
    .await;
}

/// Whether the engine still has a container labelled as made by `pid`
/// (an engine that cannot be asked has none to wait for).
fn containers_labelled(cli: &str, pid: u32) -> bool {
    !matches!(count_labelled(cli, pid), 0 | usize::MAX)
}

/// Runs every contender once per round, in an order rotated by one each
/// round, for `runs` rounds, after one
/// unmeasured round that warms caches (a tarball unpack, an image lookup,
/// the page cache). A process contender that fails drops out with its
/// error; a library one ends the benchmark. Each contender starts on a
/// settled machine ([`settle`]). Medians in milliseconds.
pub(super) async fn rounds(
    backend: &Arc<dyn Backend>,
    engine_cli: Option<&str>,
    contenders: &[Contender<'_>],
    runs: usize,
) -> Result<Vec<std::result::Result<f64, String>>> {
    let mut last_child = None;
    let mut times: Vec<std::result::Result<Vec<f64>, String>> = contenders
        .iter()
        .map(|_| Ok(Vec::with_capacity(runs)))
        .collect();
    let n = contenders.len();
    for round in 0..=runs {
        // Each round starts one contender further on, so every contender
        // follows every other equally often: whatever the kernel still
        // does after one (a network namespace torn down in a kworker, which
        // no wait here can see) falls on all of them alike, not always on
        // the one that happens to come next in the list.
        for k in 0..n {
            let i = (round + k) % n;
            let (contender, slot) = (&contenders[i], &mut times[i]);
            if slot.is_err() {
                continue;
            }
            settle(engine_cli, last_child.take()).await;
            let took = match contender {
                Contender::Burst(spec) => {
                    time_true(backend, spec).await?;
                    time_true(backend, spec).await?
                }
                Contender::Library(spec) => time_true(backend, spec).await?,
                Contender::Process(make) => match make().and_then(|mut c| time_once(&mut c)) {
                    Ok((took, pid)) => {
                        last_child = Some(pid);
                        took
                    }
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
    // The last contender's clean-ups too, before whatever comes next.
    settle(engine_cli, last_child.take()).await;
    Ok(times.into_iter().map(|t| t.map(median)).collect())
}

/// A warm pool's one-shot `true` beside the anchor process `anchor`,
/// taking turns (the order swapped every round), after one unmeasured
/// round. Each contender starts once the pool is full again and the
/// previous run's container is gone ([`pool_settled`]): the refill and the
/// removal are the engine's work between runs, not part of either. Medians
/// in ms: the pool's and the anchor's.
pub(super) async fn warm_pool_rounds(
    pooled: &cleanroom::EngineBackend,
    spec: &SandboxSpec,
    engine_cli: &str,
    anchor: &(dyn Fn() -> std::result::Result<Command, String> + Sync),
    runs: usize,
) -> Result<(f64, std::result::Result<f64, String>)> {
    let backend: Arc<dyn Backend> = Arc::new(pooled.clone());
    let size = pooled.warm_pool_size();
    let mut ours = Vec::with_capacity(runs);
    let mut theirs: std::result::Result<Vec<f64>, String> = Ok(Vec::with_capacity(runs));
    // The first run fills the pool.
    time_true(&backend, spec).await?;
    for round in 0..=runs {
        for anchor_turn in [round % 2 == 1, round % 2 == 0] {
            pool_settled(pooled, engine_cli, size).await;
            if !anchor_turn {
                let took = time_true(&backend, spec).await?;
                if round > 0 {
                    ours.push(took);
                }
            } else if let Ok(list) = theirs.as_mut() {
                match anchor().and_then(|mut c| time_once(&mut c)) {
                    Ok((took, _)) if round > 0 => list.push(took),
                    Ok(_) => {}
                    Err(e) => theirs = Err(e),
                }
            }
        }
    }
    pool_settled(pooled, engine_cli, size).await;
    Ok((median(ours), theirs.map(median)))
}

/// Waits (up to 30 s) until `pooled` holds `size` warm containers and the
/// engine has no other container of this process's left.
async fn pool_settled(pooled: &cleanroom::EngineBackend, engine_cli: &str, size: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let cli = engine_cli.to_string();
        let ours = tokio::task::spawn_blocking(move || count_labelled(&cli, std::process::id()))
            .await
            .unwrap_or(usize::MAX);
        if pooled.warm_containers() >= size && ours <= size {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many containers labelled as made by `pid` the engine has.
fn count_labelled(cli: &str, pid: u32) -> usize {
    Command::new(cli)
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=cleanroom.pid={pid}"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_or(usize::MAX, |o| {
            String::from_utf8_lossy(&o.stdout).lines().count()
        })
}

pub(super) fn bench_error(e: String) -> Error {
    Error::backend("bench", e)
}

/// Runs `c` once to completion with no input or output; its wall time in
/// ms and its pid.
pub(super) fn time_once(c: &mut Command) -> std::result::Result<(f64, u32), String> {
    let start = Instant::now();
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{:?}: {e}", c.get_program()))?;
    let pid = child.id();
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{:?}: {e}", c.get_program()))?;
    let took = ms(start.elapsed());
    if out.status.success() {
        Ok((took, pid))
    } else {
        Err(format!(
            "{:?} failed: {}",
            c.get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
